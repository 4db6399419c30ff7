"""--decontaminate: input rows equal or near-equal to an evaluation text are rejected before anything is asked."""

from __future__ import annotations

import csv
from pathlib import Path

from .conftest import SAMPLES


def sample_texts() -> list[str]:
    with (SAMPLES / "news.csv").open(encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def test_rows_like_an_evaluation_text_are_rejected_as_contaminated(distill, tmp_path: Path) -> None:
    texts = sample_texts()
    evaluation = tmp_path / "heldout.csv"
    with evaluation.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerow([texts[2].upper()])  # the same text, other case
        writer.writerow([texts[3].replace("states.", "state.")])  # a near-duplicate
        writer.writerow(["Gold futures were unchanged in thin holiday trading."])  # not in the input
    run = distill("--input", str(SAMPLES / "news.csv"), "--text-column", "text", "--id-column", "id",
                  "--decontaminate", str(evaluation))  # fmt: skip
    assert run.code == 0, run.err
    counts = run.manifest["counts"]
    assert counts["rejected_by_reason"]["contaminated"] == 2
    assert counts["accepted"] + counts["rejected"] == counts["input"] == len(texts)
    contaminated = [r for r in run.jsonl("rejects.jsonl") if r["reason"] == "contaminated"]
    assert [r["row"] for r in contaminated] == [3, 4]
    assert f"same text as {evaluation} row 1" in contaminated[0]["detail"]  # rows count data rows, from 1
    assert f"similar to {evaluation} row 2" in contaminated[1]["detail"]
    assert not any(e["text"] in (texts[2], texts[3]) for e in run.jsonl("examples.jsonl"))


def test_a_data_gen_directory_contaminates_with_its_test_split(distill, tmp_path: Path) -> None:
    args = ["--input", str(SAMPLES / "news.csv"), "--text-column", "text", "--id-column", "id"]
    first = distill(*args, out=tmp_path / "first")
    test_split = [e for e in first.jsonl("examples.jsonl") if e["split"] == "test"]
    second = distill(*args, "--decontaminate", str(tmp_path / "first"), out=tmp_path / "second")
    assert second.code == 0, second.err
    assert second.manifest["counts"]["rejected_by_reason"]["contaminated"] == len(test_split) > 0
    kept = {e["text"] for e in second.jsonl("examples.jsonl")}
    assert not kept & {e["text"] for e in test_split}
    assert distill(*args, "--decontaminate", str(tmp_path / "nowhere")).code == 2
