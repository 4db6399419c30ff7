"""One markdown table across evaluation runs: a row per run and model, the chosen metrics with their intervals.

python -m eval.table reports/fpb/results.json reports/tfns/results.json
python -m eval.table reports/*/results.json --metrics sentiment.accuracy,format.schema_valid
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval.markdown import md_table, with_interval

DEFAULT_METRICS = (
    "sentiment.accuracy",
    "sentiment.macro_f1",
    "sentiment.weighted_f1",
    "sentiment.missing_rate",
    "format.parsed",
    "format.schema_valid",
)


def table(paths: list[Path], metrics: list[str]) -> list[str]:
    rows = []
    for path in paths:
        results = json.loads(path.read_text(encoding="utf-8"))
        run = path.parent.name if path.parent.name != "report" else path.parent.parent.name
        for model, values in results["intervals"].items():
            rows.append(
                [run, model, str(results["data"]["evaluated"]), *(with_interval(values.get(m)) for m in metrics)]
            )
    return md_table(["run", "model", "rows", *metrics], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("results", nargs="+", type=Path, help="results.json files written by python -m eval.run")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metric names")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        print(f"error: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    print("\n".join(table(args.results, [m.strip() for m in args.metrics.split(",") if m.strip()])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
