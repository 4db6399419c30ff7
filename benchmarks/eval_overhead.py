"""The evaluation harness's own overhead: `python -m eval.run --endpoint` against a local OpenAI-compatible server.

    python -m benchmarks.eval_overhead                               # 2,000 rows, 200 ms latency, C = 4, 16, 64, 3 runs
    python -m benchmarks.eval_overhead --concurrency 64 --repeats 5  # one C, more runs
    python -m benchmarks.eval_overhead --rows 10000 --concurrency 64 --bootstrap 200

The server (``python -m tests.fake_server``) runs in its own process with a fixed latency and answers every
request with a valid ``finsight`` answer; the client is the real CLI in its own process, as a user runs it: a CSV
with gold labels, the request cache on (a fresh output folder per run, so every row is asked), scoring, bootstrap
intervals, plots and all output files. For each run, on one clock (CLOCK_MONOTONIC is shared by processes):

- generation pass: first to last request arrival as the server saw them, plus one latency (the last answer);
  predictions/s over it against the ceiling C / latency;
- whole CLI: predictions/s over the CLI's wall time, from its start to its exit, against the same ceiling;
- before generation: interpreter start, imports, reading the data, ``GET /models`` (CLI start to first arrival);
- after generation: scoring, bootstrap and McNemar, plots, results.json / predictions.jsonl / report.md and the
  interpreter's exit (last answer to CLI exit), also per 1,000 rows.

Each figure in the table is the median over ``--repeats`` runs; every run is in the JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.distill_throughput import VOCABULARY
from eval.backends import free_port

LABELS = ("positive", "negative", "neutral")
TARGET_RATIO = 0.9


def write_csv(path: Path, rows: int) -> None:
    """``rows`` distinct short financial sentences with a random gold label: columns id, text, label."""
    rng = random.Random(0)
    vocabulary = VOCABULARY.split()
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        for i in range(rows):
            words = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(12, 24)))
            text = f"Company {i} said {words} by {rng.randint(1, 99)}.{rng.randint(0, 9)} percent."
            writer.writerow([f"r{i}", text, rng.choice(LABELS)])


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM ``proc`` (both children stop cleanly on it) and wait; SIGKILL after ``grace`` s or a second interrupt."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def run_cli(argv: list[str], log: Path) -> tuple[float, float, float, float]:
    """Run the CLI as a child, stopped if we are; returns (start, end) on CLOCK_MONOTONIC, its CPU s, peak RSS MB."""
    with log.open("wb") as stderr:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            stop(proc)  # eval.run treats SIGTERM as Ctrl-C: it stops cleanly
            raise
        end = time.monotonic()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"eval.run failed ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}")
    return start, end, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def one_run(args: argparse.Namespace, concurrency: int, repeat: int, work: Path) -> dict[str, Any]:
    port = free_port()
    name = f"c{concurrency}-{repeat}"
    times_file = work / f"times-{name}.json"
    server_cmd = [sys.executable, "-m", "tests.fake_server", "--port", str(port), "--latency", str(args.latency)]
    server = subprocess.Popen(
        [*server_cmd, "--times", str(times_file)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    out = work / f"out-{name}"
    client = [
        sys.executable,
        "-m",
        "eval.run",
        "--data",
        str(work / "rows.csv"),
        "--text-column",
        "text",
        "--label-column",
        "label",
        "--id-column",
        "id",
        "--endpoint",
        f"http://127.0.0.1:{port}/v1",
        "--model",
        "m1",
        "--out",
        str(out),
        "--concurrency",
        str(concurrency),
        "--bootstrap",
        str(args.bootstrap),
        "--no-progress",
        "--cache" if args.cache else "--no-cache",
    ]
    try:
        if not server.stdout or not server.stdout.readline():  # "fake OpenAI-compatible server on ..."
            raise SystemExit("the fake server did not start")
        start, end, cpu_s, rss_mb = run_cli(client, work / f"stderr-{name}.log")
    finally:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)  # the client is already waited for: only the server's
        stop(server)  # it writes the arrival times on SIGTERM
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    arrivals = sorted(json.loads(times_file.read_text())["times"])
    results = json.loads((out / "results.json").read_text())
    rows = results["data"]["evaluated"]
    if len(arrivals) != rows or results["models"]["base"]["from_cache"]:
        raise SystemExit(f"{name}: {len(arrivals)} requests for {rows} rows ({results['models']['base']})")
    ceiling = concurrency / args.latency
    generation_s = arrivals[-1] - arrivals[0] + args.latency
    answered = arrivals[-1] + args.latency  # the last answer leaves the server
    low, high = len(arrivals) // 10, 9 * len(arrivals) // 10  # the middle 80% of requests (steady state)
    steady = (high - low) / (arrivals[high] - arrivals[low]) if high > low else float("nan")
    return {
        "concurrency": concurrency,
        "repeat": repeat,
        "rows": rows,
        "ceiling_per_s": ceiling,
        "generation_s": round(generation_s, 3),
        "generation_per_s": round(rows / generation_s, 1),
        "generation_ratio": round(rows / generation_s / ceiling, 3),
        "steady_ratio": round(steady / ceiling, 3),
        "wall_s": round(end - start, 3),
        "wall_per_s": round(rows / (end - start), 1),
        "wall_ratio": round(rows / (end - start) / ceiling, 3),
        "before_s": round(arrivals[0] - start, 3),
        "after_s": round(end - answered, 3),
        "after_s_per_1000_rows": round((end - answered) / rows * 1000, 3),
        "client_cpu_s": round(cpu_s, 2),
        "client_peak_rss_mb": round(rss_mb, 1),
        "server_cpu_ms_per_request": round(1000 * server_cpu_s / len(arrivals), 2),
        "run_seconds_in_results": results["seconds"],
    }


def commit() -> str:
    """The checked-out commit, marked when the tree differs from it."""
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    return head.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every measured field over the runs of one C."""
    keys = [k for k in runs[0] if k not in ("concurrency", "repeat", "rows", "ceiling_per_s")]
    first = runs[0]
    return {
        "concurrency": first["concurrency"],
        "rows": first["rows"],
        "ceiling_per_s": first["ceiling_per_s"],
        "runs": len(runs),
        **{k: round(statistics.median(r[k] for r in runs), 3) for k in keys},
    }


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "| C | ceiling/s | generation pass | predictions/s | ratio | steady ratio | whole CLI | predictions/s | ratio "
        "| before generation | after generation | after, per 1,000 rows | client CPU | peak RSS |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['concurrency']} | {r['ceiling_per_s']:g} | {r['generation_s']:.2f} s | {r['generation_per_s']:.1f} "
            f"| {r['generation_ratio']:.3f} | {r['steady_ratio']:.3f} | {r['wall_s']:.2f} s | {r['wall_per_s']:.1f} "
            f"| {r['wall_ratio']:.3f} | {r['before_s']:.2f} s | {r['after_s']:.2f} s "
            f"| {r['after_s_per_1000_rows']:.2f} s | {r['client_cpu_s']:.1f} s | {r['client_peak_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2, help="server latency in seconds")
    parser.add_argument("--concurrency", default="4,16,64", help="comma-separated values of C")
    parser.add_argument("--repeats", type=int, default=3, help="runs per C (the table shows medians)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="eval.run --bootstrap (its default: 1000)")
    parser.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="eval.run's request cache (its default; a fresh output folder per run, so nothing is cached)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill stops the children like Ctrl-C does
    work = Path(tempfile.mkdtemp(prefix="fin-distill-eval-bench-"))
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "commit": commit(),
        "rows": args.rows,
        "latency_s": args.latency,
        "bootstrap": args.bootstrap,
        "cache": args.cache,
        "target_generation_ratio": TARGET_RATIO,
        "medians": [],
        "runs": [],
    }
    try:
        write_csv(work / "rows.csv", args.rows)
        for c in (int(x) for x in args.concurrency.split(",") if x):
            runs = []
            for repeat in range(args.repeats):
                run = one_run(args, c, repeat, work)
                runs.append(run)
                print(json.dumps(run), flush=True)
            results["runs"] += runs
            results["medians"].append(median_row(runs))
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    print(table(results["medians"]))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
