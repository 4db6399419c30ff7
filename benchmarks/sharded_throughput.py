"""Scaling past one process: `python -m data_gen.distill --workers 2` against one process, on the work that is
CPU-bound in one process, and the cost of `python -m data_gen.merge`.

    python -m benchmarks.sharded_throughput                       # rules teacher, 100,000 rows; KD, 4,000 replies
    python -m benchmarks.sharded_throughput --skip-kd --rows 20000                # or --skip-rules: KD only

- rules: the offline pipeline (rules teacher, duplicate detection on, ShareGPT files) over generated distinct
  sentences, as one process and as `--workers 2`; whole-process wall time (imports, reading, asking, writing and,
  for the workers, the merge). Each shard checks every row for duplicates (global detection), so that part is not
  divided: the manifest timings of one shard show how much of its time it is.
- kd: KD scoring through the stand-in vLLM server of `benchmarks.kd_scoring` (500 ms per answer, C = 64 per
  process, client-bound at about 30 replies/s a core), one process against `--workers 2`.
- merge: `python -m data_gen.merge` of the two shards of the rules run into a fresh folder, per million rows.
- ceiling: each shard's rows written to a file of their own and run as two independent one-process jobs side by
  side (no duplicate pass over the other shard's rows, no merge): what 2 processes give on this machine at this
  time, measured between the other runs, since two busy processes here slow each other by a varying amount.
  ``efficiency`` is the speedup over that ceiling.
Runs alternate (1, 2, ceiling, 1, 2, ...) and the median of --repeats is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.distill_throughput import run_client, write_rows
from data_gen.sources.splits import shard_of
from eval.backends import free_port

ROOT = Path(__file__).resolve().parents[1]


def distill_command(args: list[str], out: Path) -> list[str]:
    """The `python -m data_gen.distill` command line for ``args`` into a fresh ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    return [sys.executable, "-m", "data_gen.distill", *args, "--no-progress", "--out", str(out)]


def distill(args: list[str], out: Path, workers: int) -> tuple[float, dict[str, Any]]:
    command = distill_command(args, out)
    if workers > 1:
        command += ["--workers", str(workers)]
    _, wall, _ = run_client(command, dict(os.environ))
    return wall, json.loads((out / "manifest.json").read_text())


def split_by_shard(path: Path, shards: int) -> list[Path]:
    """The rows of a JSON Lines file (with an ``id``) that each ``--shard K/N`` takes, a file per shard."""
    parts = [path.with_name(f"{path.stem}-{k}-of-{shards}.jsonl") for k in range(1, shards + 1)]
    handles = [part.open("w", encoding="utf-8") for part in parts]
    with path.open(encoding="utf-8") as rows:
        for line in rows:
            handles[shard_of(json.loads(line)["id"], shards) - 1].write(line)
    for handle in handles:
        handle.close()
    return parts


def side_by_side(jobs_args: list[list[str]], work: Path) -> float:
    """Wall seconds of one one-process job per argument list, all started at once."""
    start = time.perf_counter()
    jobs = [subprocess.Popen(distill_command(args, work / f"ceiling-{k}"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for k, args in enumerate(jobs_args, 1)]  # fmt: skip
    for job in jobs:
        _, error = job.communicate()
        if job.returncode != 0:
            raise SystemExit(f"ceiling job failed ({job.returncode}): {error[-2000:]}")
    return time.perf_counter() - start


def compare(args: list[str], work: Path, rows: int, repeats: int) -> dict[str, Any]:
    """One process, two workers and the ceiling (the shards as independent jobs), alternating; the median wall of
    each, the speedup and how much of the ceiling it is."""
    walls: dict[str, list[float]] = {"1": [], "2": [], "ceiling": []}
    at = args.index("--input") + 1  # the ceiling's jobs: the same arguments, a shard's rows as the input
    ceiling_jobs = [[*args[:at], str(part), *args[at + 1 :]] for part in split_by_shard(Path(args[at]), 2)]
    shard_timings = None
    for _ in range(repeats):
        for workers in (1, 2):
            wall, manifest = distill(args, work / f"out-{workers}", workers)
            walls[str(workers)].append(wall)
            if workers == 2:
                shard = work / "out-2" / "shards" / "1-of-2" / "manifest.json"
                shard_timings = json.loads(shard.read_text())["timings"]
            assert manifest["counts"]["input"] == rows, manifest["counts"]
        walls["ceiling"].append(side_by_side(ceiling_jobs, work))
    one, two, ceiling = (statistics.median(walls[w]) for w in ("1", "2", "ceiling"))
    return {
        "rows": rows,
        "one_process_s": round(one, 2),
        "two_workers_s": round(two, 2),
        "ceiling_s": round(ceiling, 2),
        "one_process_rows_per_s": round(rows / one, 1),
        "two_workers_rows_per_s": round(rows / two, 1),
        "speedup": round(one / two, 3),
        "ceiling_speedup": round(one / ceiling, 3),
        "efficiency": round(ceiling / two, 3),
        "walls": {w: [round(x, 2) for x in v] for w, v in walls.items()},
        "shard_1_timings": shard_timings,
    }


def merge_cost(work: Path, rows: int, repeats: int) -> dict[str, Any]:
    shards = sorted(str(p) for p in (work / "out-2" / "shards").iterdir() if p.is_dir())
    walls = []
    for i in range(repeats):
        out = work / f"merged-{i}"
        _, wall, _ = run_client([sys.executable, "-m", "data_gen.merge", "--out", str(out), *shards], dict(os.environ))
        walls.append(wall)
        size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
        shutil.rmtree(out)
    wall = statistics.median(walls)
    return {"rows": rows, "merge_s": round(wall, 2), "merge_s_per_million_rows": round(wall * 1e6 / rows, 1),
            "merged_mb": round(size / 1e6, 1), "walls": [round(x, 2) for x in walls]}  # fmt: skip


def kd(work: Path, replies: int, repeats: int) -> dict[str, Any]:
    tokenizer = work / "student"
    subprocess.run([sys.executable, "scripts/build_tiny_model.py", "--arch", "qwen2", "--out", str(tokenizer)],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    write_rows(work / "kd-rows.jsonl", replies)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.kd_scoring", "--serve", str(port), "--tokenizer",
                               str(tokenizer), "--latency", "0.5", "--top-k", "20"], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)  # fmt: skip
    try:
        assert server.stdout is not None
        server.stdout.readline()
        args = ["--task", "finsight", "--input", str(work / "kd-rows.jsonl"), "--id-column", "id", "--no-dedup",
                "--formats", "sharegpt", "--kd-teacher", f"http://127.0.0.1:{port}/v1", "--kd-top-k", "20",
                "--student-tokenizer", str(tokenizer), "--concurrency", "64"]  # fmt: skip
        return compare(args, work / "kd", replies, repeats)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="input rows for the rules teacher")
    parser.add_argument("--kd-replies", type=int, default=4_000, help="replies to score for KD")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; the median is reported")
    parser.add_argument("--skip-kd", action="store_true", help="only the rules teacher and the merge")
    parser.add_argument("--skip-rules", action="store_true", help="only KD scoring")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "started": time.ctime()}
    with tempfile.TemporaryDirectory(prefix="shard-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_rules:
            write_rows(work / "rows.jsonl", args.rows)
            rules = ["--input", str(work / "rows.jsonl"), "--id-column", "id", "--formats", "sharegpt"]
            report["rules"] = compare(rules, work, args.rows, args.repeats)
            report["merge"] = merge_cost(work, args.rows, args.repeats)
        if not args.skip_kd:
            (work / "kd").mkdir()
            report["kd"] = kd(work, args.kd_replies, args.repeats)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
