"""Collect a sweep's runs into a table: python scripts/sweep_table.py saves/sweeps/RECIPE

Reads each run's ``all_results.json`` (written by LLaMA-Factory) and writes ``results.csv`` and ``results.md``
(learning rate, LoRA rank, final train loss, validation loss), best validation loss first; prints the table.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path


def main() -> int:
    sweep = Path(sys.argv[1])
    rows = []
    for run in sorted(p for p in sweep.iterdir() if p.is_dir()):
        match = re.fullmatch(r"lr(.+)_r(\d+)", run.name)
        results = run / "all_results.json"
        if not match or not results.exists():
            continue
        data = json.loads(results.read_text())
        rows.append(
            {
                "learning_rate": match.group(1),
                "lora_rank": int(match.group(2)),
                "train_loss": round(data["train_loss"], 4),
                "eval_loss": round(data["eval_loss"], 4) if "eval_loss" in data else None,
                "output_dir": str(run),
            }
        )
    if not rows:
        print(f"error: no finished runs in {sweep}", file=sys.stderr)
        return 2
    rows.sort(key=lambda r: (r["eval_loss"] is None, r["eval_loss"] or 0.0, r["train_loss"]))
    with (sweep / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| learning rate | LoRA rank | train loss | validation loss | output |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['learning_rate']} | {r['lora_rank']} | {r['train_loss']} | {r['eval_loss']} | {r['output_dir']} |"
        for r in rows
    ]
    (sweep / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"written: {sweep / 'results.md'}, {sweep / 'results.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
