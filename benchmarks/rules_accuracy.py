"""Quality of the offline rules teacher against gold labels, through the real pipeline (dedup included).

    python -m benchmarks.rules_accuracy [--data ../shared/data]

FPB Sentences_AllAgree was never looked at while the lexicon was written (development used the 50Agree
sentences that are not in AllAgree, and every fifth TFNS row). TFNS is reported on all of its train split and on
the 80% of rows (index % 5 != 0) that were not looked at.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from data_gen.tasks.metrics import classification_report

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LABELS = ["positive", "negative", "neutral"]


def distill(config: str, input_path: Path, out: Path) -> list[dict]:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "data_gen.distill",
            "--config",
            config,
            "--input",
            str(input_path),
            "--out",
            str(out),
            "--no-progress",
        ],
        check=True,
        capture_output=True,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    examples = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert manifest["counts"]["accepted"] == len(examples)
    return examples


def score(examples: list[dict]) -> dict:
    gold = [e["gold"] for e in examples]
    report = classification_report(gold, [e["answer"]["sentiment"] for e in examples], LABELS)
    result = {
        k: round(report[k], 4) if isinstance(report[k], float) else report[k]
        for k in ("n", "accuracy", "macro_f1", "weighted_f1", "missing")
    }
    result["majority_class_accuracy"] = round(max(gold.count(label) for label in LABELS) / len(gold), 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with fpb/ and tfns/")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        fpb = distill("data_gen/configs/fpb.yaml", args.data / "fpb" / "Sentences_AllAgree.txt", Path(tmp) / "fpb")
        results["FPB Sentences_AllAgree"] = score(fpb)
        tfns = distill("data_gen/configs/tfns.yaml", args.data / "tfns" / "sent_train.csv", Path(tmp) / "tfns")
        results["TFNS train (all)"] = score(tfns)
        results["TFNS train (80% not used in development)"] = score([e for e in tfns if (e["row"] - 1) % 5 != 0])
    for name, r in results.items():
        print(
            f"{name:45s} n={r['n']:5d}  accuracy {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}"
            f"  weighted-F1 {r['weighted_f1']:.3f}  (always 'neutral': accuracy {r['majority_class_accuracy']:.3f})"
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
