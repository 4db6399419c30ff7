"""The whole process against the peer, in one run: `python -m data_gen.distill` (its whole process and its asking
pass), curator and a bare `AsyncOpenAI` loop, the same requests to the same stand-in server.

    sh scripts/setup_env.sh curator                       # curator 0.1.31 in its own environment, once
    python -m benchmarks.peer_throughput                  # 4,000 distinct rows, 200 ms, C = 64, median of 3

Every run gets a fresh `tests.fake_server` (fixed latency, a valid finsight answer to every request) and sends the
same 4,000 requests: the finsight task's system prompt and each row's user prompt, as `data_gen.distill` builds them.

- bare: `AsyncOpenAI` with its aiohttp transport, a semaphore of C, nothing cached, validated or written; timed
  around the requests (benchmarks/peers/bare_client.py).
- curator: `curator.LLM` with the openai backend, `max_concurrent_requests` C; timed around its call, so its imports,
  start-up and the input dataset are excluded (benchmarks/peers/curator_run.py); its whole process is shown too.
- distill: the real CLI (`--teacher openai`, ShareGPT files), with and without duplicate detection; the whole
  process (interpreter start, imports, reading, connecting, asking, validating, writing) and its asking pass
  (manifest `timings.ask_s`).

Runs alternate (bare, curator, distill, distill --no-dedup, ...) and the median of --repeats is reported, with
rows/s and the share of the ceiling C / latency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.distill_throughput import run_client, write_rows
from eval.backends import free_port

ROOT = Path(__file__).resolve().parents[1]
CURATOR = ROOT / ".venvs" / "curator" / "bin" / "python"


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.fake_server", "--port", str(port), "--latency", str(latency)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert server.stdout is not None
    server.stdout.readline()  # "fake OpenAI-compatible server on ..."
    return server, f"http://127.0.0.1:{port}/v1"


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)


def peer(python: Path | str, script: str, requests: Path, url: str, concurrency: int) -> dict[str, Any]:
    """A peer's run: its own JSON line (``in_call_s``) and the wall time of its whole process."""
    started = time.perf_counter()
    done = subprocess.run([str(python), str(ROOT / "benchmarks" / "peers" / script), str(requests), url,
                           str(concurrency)], capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{script} failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["answered"] == result["rows"], result
    return {"in_call_s": result["in_call_s"], "whole_s": round(wall, 3)}


def distill(rows: Path, url: str, concurrency: int, dedup: bool, out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "data_gen.distill", "--input", str(rows), "--id-column", "id", "--teacher",
               "openai", "--base-url", url, "--model", "fake", "--api-key-env", "", "--concurrency",
               str(concurrency), "--no-progress", "--formats", "sharegpt", "--out", str(out),
               "--timeout", "30"]  # fmt: skip
    if not dedup:
        command.append("--no-dedup")
    _, wall, _ = run_client(command, {**os.environ, "PYTHONUNBUFFERED": "1"})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["accepted"] == manifest["counts"]["input"], manifest["counts"]
    return {"in_call_s": manifest["timings"]["ask_s"], "whole_s": round(wall, 3), "timings": manifest["timings"]}


def summary(runs: list[dict[str, Any]], rows: int, ceiling: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("in_call_s", "whole_s"):
        seconds = statistics.median(run[key] for run in runs)
        out[key] = round(seconds, 2)
        out[key.replace("_s", "_rows_per_s")] = round(rows / seconds, 1)
        out[key.replace("_s", "_of_ceiling")] = round(rows / seconds / ceiling, 3)
    out["runs"] = [{k: v for k, v in run.items() if k != "timings"} for run in runs]
    if "timings" in runs[0]:
        out["timings_of_median_run"] = sorted(runs, key=lambda run: run["whole_s"])[len(runs) // 2]["timings"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000, help="distinct input rows (one request each)")
    parser.add_argument("--latency", type=float, default=0.2, help="the server's seconds per answer")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight, for every client")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; the median is reported")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from data_gen.tasks.loader import load_task

    work = Path(tempfile.mkdtemp(prefix="fin-distill-peers-"))
    rows, requests = work / "rows.jsonl", work / "requests.jsonl"
    write_rows(rows, args.rows)
    task = load_task("finsight")
    with rows.open(encoding="utf-8") as source, requests.open("w", encoding="utf-8") as sink:
        for line in source:
            sink.write(json.dumps({"messages": task.messages(json.loads(line)["text"])}) + "\n")
    clients: dict[str, Any] = {
        "bare AsyncOpenAI + aiohttp": lambda url: peer(
            sys.executable, "bare_client.py", requests, url, args.concurrency
        ),
        "curator 0.1.31": lambda url: peer(CURATOR, "curator_run.py", requests, url, args.concurrency),
        "data_gen.distill --no-dedup": lambda url: distill(rows, url, args.concurrency, False, work / "out"),
        "data_gen.distill": lambda url: distill(rows, url, args.concurrency, True, work / "out"),
    }
    if not CURATOR.exists():
        print(f"no {CURATOR.relative_to(ROOT)}: sh scripts/setup_env.sh curator (curator is left out)", file=sys.stderr)
        del clients["curator 0.1.31"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
    try:
        for repeat in range(args.repeats):
            for name, run in clients.items():
                server, url = start_server(args.latency)
                try:
                    runs[name].append(run(url))
                finally:
                    stop(server)
                print(f"run {repeat + 1}/{args.repeats} {name}: {runs[name][-1]['whole_s']} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ceiling = args.concurrency / args.latency
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "started": time.ctime(),
        "rows": args.rows,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "ceiling_per_s": ceiling,
        "clients": {name: summary(found, args.rows, ceiling) for name, found in runs.items()},
    }
    if "curator 0.1.31" in results["clients"]:
        curator = results["clients"]["curator 0.1.31"]["in_call_rows_per_s"]
        results["distill_whole_process_over_curator_in_call"] = {
            name: round(results["clients"][name]["whole_rows_per_s"] / curator, 3)
            for name in ("data_gen.distill --no-dedup", "data_gen.distill")
        }
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
