"""Time and memory of eval's bootstrap intervals alone, on synthetic scored rows (one process per size).

    python -m benchmarks.eval_intervals                      # 10,000 and 50,000 rows, 1,000 resamples, 3 models

Each size runs in a fresh interpreter: the rows are scored first (``score_row`` on generated finsight replies),
then ``headline_metrics`` + ``bootstrap`` + ``with_intervals`` are timed, with the peak RSS before and after them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def measure(rows: int, resamples: int, models: int) -> dict[str, float]:
    from data_gen.tasks.loader import load_task
    from eval.scoring import score_row
    from eval.stats import Draws, bootstrap, headline_metrics, with_intervals

    task = load_task("finsight")
    rng = np.random.default_rng(0)
    scored: dict[str, list[dict]] = {f"model{m}": [] for m in range(models)}
    for i in range(rows):
        gold = task.labels[i % 3]
        gold_answer = {"sentiment": gold, "risk_level": "Low", "entities": [{"name": "Acme", "sentiment": gold}]}
        for label in scored:
            said = task.labels[rng.integers(3)]
            answer = {"entities": [{"name": "Acme", "sentiment": said}], "sentiment": said, "risk_level": "Low"}
            reply = f"<thinking>\nConclusion: sentiment is {said}; risk is Low.\n</thinking>\n{json.dumps(answer)}"
            scored[label].append(score_row(task, task.inspect(reply), "stop", gold_answer))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    metrics = {label: headline_metrics(task, model_rows) for label, model_rows in scored.items()}
    flat = {(label, name): m for label, ms in metrics.items() for name, m in ms.items()}
    samples = bootstrap(flat, Draws(rows, resamples, 0))
    for label, ms in metrics.items():
        with_intervals(ms, {name: samples[label, name] for name in ms})
    return {
        "rows": rows,
        "resamples": resamples,
        "models": models,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_before_mb": round(before),
        "peak_rss_after_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,50000", help="comma-separated test-set sizes")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--models", type=int, default=3, help="models bootstrapped together (base, tuned, teacher)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.resamples, args.models)))
        return
    print("| rows | models | resamples | seconds | peak RSS before | peak RSS after |\n|---|---|---|---|---|---|")
    for rows in (int(r) for r in args.rows.split(",")):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.eval_intervals", "--one", str(rows), "--resamples",
             str(args.resamples), "--models", str(args.models)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        r = json.loads(out.stdout)
        print(f"| {r['rows']:,} | {r['models']} | {r['resamples']:,} | {r['seconds']} | {r['peak_rss_before_mb']} MB "
              f"| {r['peak_rss_after_mb']} MB |")  # fmt: skip


if __name__ == "__main__":
    main()
