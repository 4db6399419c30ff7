"""Client throughput and memory of `python -m data_gen.distill` against a local OpenAI-compatible server.

    python -m benchmarks.distill_throughput                      # 2,000 rows, 200 ms latency, C = 4, 16, 64, 128
    python -m benchmarks.distill_throughput --rpm 600 --rows 1200 --concurrency 64      # a rate-limited run
    python -m benchmarks.distill_throughput --fail-429 0.05 --concurrency 64            # with random 429s
    python -m benchmarks.distill_throughput --stream-rows 1000000                        # memory, 1M-row input

The server (``python -m tests.fake_server``) runs in its own process with a fixed latency and answers every
request validly; the client is the real CLI in its own process, with the cache, validation and all writing. For
each run: requests/s over the asking pass (after the one-time connect: SDK import, connection pool, GET /models),
the ceiling min(C / latency, rate limit), their ratio, the same for the middle 80% of requests as the server saw
them (steady state), the client's and the server's CPU time per request, the rate that one core each can drive at
that cost, the share of a core the client needs to run at the ceiling, the client's peak RSS, and, with a rate
limit, the most requests the server saw in any rolling minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eval.backends import free_port
from tests.fake_server import max_in_window

VOCABULARY = (
    "sales profit revenue orders margin guidance outlook demand costs debt dividend shares bank insurer retailer "
    "miner shipper airline utility telecom chipmaker automaker brewer pharma biotech rose fell jumped slipped grew "
    "declined doubled halved beat missed raised cut lowered lifted narrowed widened quarter year month region unit "
    "plant contract deal merger lawsuit probe recall strike upgrade downgrade target estimate consensus analysts "
    "investors euro dollar krona yen oil copper wheat steel freight rates inflation jobs housing exports imports "
    "Nordic Asian European American German Finnish Swedish Japanese Chinese Indian Brazilian Canadian record weak "
    "strong stable volatile cheaper pricier delayed early late higher lower new old major minor partial full"
)


def write_rows(path: Path, rows: int) -> None:
    """Distinct, dissimilar short financial sentences (random words: near-duplicates are rare, as in real news)."""
    import random

    rng = random.Random(0)
    vocabulary = VOCABULARY.split()
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            words = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(12, 24)))
            text = f"Company {i} said {words} by {rng.randint(1, 99)}.{rng.randint(0, 9)} percent."
            handle.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")


def run_client(argv: list[str], env: dict[str, str]) -> tuple[int, float, dict]:
    """Run the CLI as a child; returns (exit code, wall seconds, its rusage as a dict)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"client failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    return proc.returncode, wall, {"max_rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}


def online_run(args: argparse.Namespace, concurrency: int, work: Path) -> dict:
    port = free_port()
    times_file = work / f"times-{concurrency}.json"
    server_cmd = [
        sys.executable,
        "-m",
        "tests.fake_server",
        "--port",
        str(port),
        "--latency",
        str(args.latency),
        "--times",
        str(times_file),
        "--fail-429",
        str(args.fail_429),
    ]
    if args.rpm:
        server_cmd += ["--rpm-limit", str(int(args.rpm))]  # the server refuses what exceeds the limit
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    server.stdout.readline()  # "fake OpenAI-compatible server on ..."
    out = work / f"out-{concurrency}"
    client = [
        sys.executable,
        "-m",
        "data_gen.distill",
        "--input",
        str(work / "rows.jsonl"),
        "--id-column",
        "id",
        "--teacher",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--model",
        "fake",
        "--api-key-env",
        "",
        "--concurrency",
        str(concurrency),
        "--no-dedup",
        "--no-progress",
        "--formats",
        "sharegpt",
        "--out",
        str(out),
        "--timeout",
        "30",
    ]
    if args.rpm:
        client += ["--rpm", str(args.rpm)]
    if not args.adaptive:
        client += ["--no-adaptive-concurrency"]
    try:
        _, wall, usage = run_client(client, {**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        server.send_signal(signal.SIGTERM)
        _, status, server_usage = os.wait4(server.pid, 0)
        server.returncode = os.waitstatus_to_exitcode(status)
    manifest = json.loads((out / "manifest.json").read_text())
    seen = json.loads(times_file.read_text())
    calls = len(seen["times"])
    ask_s = manifest["timings"]["ask_s"]
    ceiling = concurrency / args.latency
    if args.rpm:
        ceiling = min(ceiling, args.rpm / 60)
    rate = manifest["requests"]["sent"] / ask_s
    cpu_ms = 1000 * manifest["timings"]["ask_cpu_s"] / max(1, calls)
    server_cpu_ms = 1000 * (server_usage.ru_utime + server_usage.ru_stime) / max(1, calls)
    # each process is one interpreter, so at most one core: the slower of the two bounds what this machine drives
    cpu_limit = 1000 / max(cpu_ms, server_cpu_ms)
    arrivals = sorted(seen["times"])
    low, high = len(arrivals) // 10, 9 * len(arrivals) // 10  # the middle 80% of requests, as the server saw them
    steady = (high - low) / (arrivals[high] - arrivals[low]) if high > low else float("nan")
    return {
        "concurrency": concurrency,
        "rows": manifest["counts"]["input"],
        "accepted": manifest["counts"]["accepted"],
        "http_calls": calls,
        "ask_s": ask_s,
        "requests_per_s": round(rate, 1),
        "ceiling_per_s": round(ceiling, 1),
        "ratio": round(rate / ceiling, 3),
        "steady_requests_per_s": round(steady, 1),
        "steady_ratio": round(steady / ceiling, 3),
        "client_cpu_ms_per_request": round(cpu_ms, 2),
        "server_cpu_ms_per_request": round(server_cpu_ms, 2),
        "cpu_limit_per_s": round(cpu_limit, 1),
        "client_core_share_at_ceiling": round(ceiling * cpu_ms / 1000, 2),
        "connect_s": manifest["timings"].get("connect_s"),
        "client_peak_rss_mb": round(usage["max_rss_mb"], 1),
        "client_wall_s": round(wall, 2),
        "max_requests_in_any_60s": max_in_window(seen["times"], 60.0),
        "server_429_for_exceeding_the_limit": seen["rejected_by_limit"],
        "final_concurrency": manifest["limits"]["final_concurrency"],
        "concurrency_decreases": manifest["limits"]["concurrency_decreases"],
    }


def stream_run(rows: int, work: Path) -> dict:
    """The whole offline pipeline (rules teacher, duplicate detection on) over a generated input of ``rows``."""
    path = work / f"stream-{rows}.jsonl"
    write_rows(path, rows)
    out = work / f"stream-{rows}"
    client = [
        sys.executable,
        "-m",
        "data_gen.distill",
        "--input",
        str(path),
        "--id-column",
        "id",
        "--no-progress",
        "--formats",
        "sharegpt",
        "--out",
        str(out),
    ]
    _, wall, usage = run_client(client, dict(os.environ))
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "rows": rows,
        "accepted": manifest["counts"]["accepted"],
        "wall_s": round(wall, 1),
        "rows_per_s": round(rows / wall, 1),
        "peak_rss_mb": round(usage["max_rss_mb"], 1),
        "timings": manifest["timings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2, help="server latency in seconds")
    parser.add_argument("--concurrency", default="4,16,64,128", help="comma-separated values of C")
    parser.add_argument("--rpm", type=float, default=None, help="client --rpm (and the server's enforced limit)")
    parser.add_argument("--fail-429", type=float, default=0.0, help="share of requests the server answers 429")
    parser.add_argument(
        "--adaptive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="adaptive concurrency in the client (its default); --no-adaptive keeps C fixed",
    )
    parser.add_argument("--stream-rows", default="", help="comma-separated input sizes for the memory runs")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fin-distill-bench-"))
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "latency_s": args.latency,
        "rpm": args.rpm,
        "fail_429": args.fail_429,
        "adaptive": args.adaptive,
        "online": [],
        "streaming": [],
    }
    if args.concurrency:
        write_rows(work / "rows.jsonl", args.rows)
        for c in (int(x) for x in args.concurrency.split(",")):
            result = online_run(args, c, work)
            results["online"].append(result)
            print(json.dumps(result), flush=True)
    for rows in (int(x) for x in args.stream_rows.split(",") if x):
        result = stream_run(rows, work)
        results["streaming"].append(result)
        print(json.dumps(result), flush=True)
    print(json.dumps(results, indent=2))
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
