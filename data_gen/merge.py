"""Merge the outputs of one job's --shard K/N runs into one dataset directory: the training files, examples.jsonl,
rejects.jsonl, dataset_info.json, the Axolotl entries, README.md and one manifest, as one process would have
written them (records in input order, byte for byte; counts, tokens, cost and reasons added up).

    python -m data_gen.distill --config data_gen/configs/fpb.yaml --shard 1/2 --out runs/fpb.1   # on one machine
    python -m data_gen.distill --config data_gen/configs/fpb.yaml --shard 2/2 --out runs/fpb.2   # on another
    python -m data_gen.merge --out datasets/fpb runs/fpb.1 runs/fpb.2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_gen.errors import run_cli
from data_gen.run.merge import merge
from data_gen.run.report import summary_lines

EPILOG = """
The shards must be one job: the same task, input and settings (only --shard, --out and how fast each ran may
differ), every K of 1..N exactly once, each finished and not stopped by its budget; anything else is refused in
one line before a file is written. Each shard keeps its cache.sqlite (the teacher's answers it paid for) in its own
folder. Duplicates across shards need no step here: every shard checks every row of the input for duplicates and
asks only its own, so a near-duplicate of a row in another shard is already in rejects.jsonl.

exit status: 0 merged, 2 refused (the line says why).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_gen.merge", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("shards", nargs="+", type=Path, metavar="SHARD_DIR", help="the --out folder of each shard")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="the merged dataset's folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a data_gen output of another job in --out")
    args = parser.parse_args(argv)

    def work() -> int:
        command = ["python", "-m", "data_gen.merge", *(argv if argv is not None else sys.argv[1:])]
        manifest = merge(args.shards, args.out, args.overwrite, argv=command)
        for line in summary_lines(manifest, str(args.out)):
            print(line)
        print(f"merged {len(manifest['shards'])} shards in {manifest['seconds']:.1f} s")
        return 0

    return run_cli(work, stored="each shard's folder is unchanged")


if __name__ == "__main__":
    sys.exit(main())
