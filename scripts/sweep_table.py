"""Collect a sweep's runs into a table: python scripts/sweep_table.py saves/sweeps/RECIPE

Reads each run's ``all_results.json`` (written by LLaMA-Factory) and writes ``results.csv`` and ``results.md``
(learning rate, LoRA rank, final train loss, validation loss), best validation loss first; prints the table. Runs
that ``SWEEP_EVAL`` scored (``eval_run_results.json``, eval.run's results) add the student's sentiment accuracy and
JSON-valid rate with their 95% intervals, and the table is sorted by accuracy instead.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path


def student_scores(results: dict) -> dict[str, float]:
    """The fine-tuned model's sentiment accuracy (with its interval) and JSON-valid rate from eval.run's results."""
    values = results["intervals"]["tuned"]
    accuracy = values["sentiment.accuracy"]
    return {
        "accuracy": round(accuracy["value"], 4),
        "accuracy_low": round(accuracy["low"], 4),
        "accuracy_high": round(accuracy["high"], 4),
        "json_valid": round(values["format.schema_valid"]["value"], 4),
        "rows": results["data"]["evaluated"],
    }


def main() -> int:
    sweep = Path(sys.argv[1])
    rows = []
    for run in sorted(p for p in sweep.iterdir() if p.is_dir()):
        match = re.fullmatch(r"lr(.+)_r(\d+)", run.name)
        results = run / "all_results.json"
        if not match or not results.exists():
            continue
        data = json.loads(results.read_text())
        row = {
            "learning_rate": match.group(1),
            "lora_rank": int(match.group(2)),
            "train_loss": round(data["train_loss"], 4),
            "eval_loss": round(data["eval_loss"], 4) if "eval_loss" in data else None,
        }
        if (scored := run / "eval_run_results.json").exists():
            row |= student_scores(json.loads(scored.read_text()))
        rows.append(row | {"output_dir": str(run)})
    if not rows:
        print(f"error: no finished runs in {sweep}", file=sys.stderr)
        return 2
    scored = all("accuracy" in r for r in rows)
    if scored:
        rows.sort(key=lambda r: (-r["accuracy"], r["train_loss"]))
    else:
        rows.sort(key=lambda r: (r["eval_loss"] is None, r["eval_loss"] or 0.0, r["train_loss"]))
    with (sweep / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    head = ["learning rate", "LoRA rank", "train loss", "validation loss"]
    head += ["accuracy [95% CI]", "JSON valid", "rows"] if scored else []
    lines = ["| " + " | ".join([*head, "output"]) + " |", "|" + "---|" * (len(head) + 1)]
    for r in rows:
        cells = [r["learning_rate"], r["lora_rank"], r["train_loss"], r["eval_loss"]]
        if scored:
            cells += [f"{r['accuracy']:.3f} [{r['accuracy_low']:.3f}, {r['accuracy_high']:.3f}]", r["json_valid"],
                      r["rows"]]  # fmt: skip
        lines.append("| " + " | ".join(str(cell) for cell in [*cells, r["output_dir"]]) + " |")
    (sweep / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"written: {sweep / 'results.md'}, {sweep / 'results.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
