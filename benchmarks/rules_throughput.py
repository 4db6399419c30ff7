"""End-to-end speed of the offline run: `python -m data_gen.distill` with the rules teacher, as a user runs it.

    python -m benchmarks.rules_throughput [--input ../shared/data/fpb/Sentences_AllAgree.txt] [--repeats 5]

Wall time covers everything: interpreter start, imports, reading, dedup, the teacher, validation of every answer
and every written record, and writing all files. Reported against the 500 rows/s target as a ratio, with the
median of several runs (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_ROWS_PER_S = 500.0
DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fpb" / "Sentences_AllAgree.txt"


def run_once(input_path: Path, out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "data_gen.distill",
            "--input",
            str(input_path),
            "--task",
            "finsight",
            "--out",
            str(out),
            "--no-progress",
        ],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    return wall, json.loads((out / "manifest.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="FPB AllAgree (or any input file)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.input.exists():
        raise SystemExit(f"input not found: {args.input} (pass --input PATH to Sentences_AllAgree.txt)")

    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import data_gen.run.pipeline, data_gen.teachers.rules, datasketch, tqdm"], check=True
    )
    startup = time.perf_counter() - start
    walls, inner = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            wall, manifest = run_once(args.input, Path(tmp) / f"run{i}")
            walls.append(wall)
            inner.append(manifest["rows_per_second"])
    rows = manifest["counts"]["input"]
    median_wall = statistics.median(walls)
    result = {
        "input": str(args.input),
        "rows": rows,
        "accepted": manifest["counts"]["accepted"],
        "repeats": args.repeats,
        "wall_s": [round(w, 3) for w in walls],
        "median_wall_s": round(median_wall, 3),
        "rows_per_s_end_to_end": round(rows / median_wall, 1),
        "rows_per_s_inside_the_run": statistics.median(inner),
        "python_start_and_imports_s": round(startup, 3),
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "ratio_to_target": round(rows / median_wall / TARGET_ROWS_PER_S, 2),
        "machine": f"{platform.machine()}, {platform.python_version()}, {__import__('os').cpu_count()} cores",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
