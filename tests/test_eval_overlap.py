"""The evaluation report says how many test rows are in the training data (exact and near duplicates), and how
many rows data_gen removed before splitting."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from data_gen.sources.dedup import Deduplicator
from eval.run import main

from .test_decontaminate import sample_texts


def write_texts(path: Path, texts: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([text] for text in texts)
    return path


def evaluate(tmp_path: Path, *argv: str) -> tuple[int, dict, str]:
    out = tmp_path / "report"
    code = main(["--teacher", "rules", "--out", str(out), "--no-progress", *argv])
    if code != 0:
        return code, {}, ""
    return code, json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


def test_looking_up_does_not_register() -> None:
    index = Deduplicator()
    assert index.check("a", "Shares of Acme rose 5% after earnings beat estimates.", register=False) is None
    assert index.check("b", "Shares of Acme rose 5% after earnings beat estimates.") is None  # not there before
    assert index.check("c", "SHARES of Acme rose 5% after  earnings beat estimates.", register=False)[0] == (
        "duplicate_text"
    )


def test_test_rows_found_in_a_training_file_are_counted_named_and_warned_about(tmp_path: Path, capsys) -> None:
    texts = sample_texts()
    train = write_texts(tmp_path / "train.csv", texts[:50])
    test = write_texts(
        tmp_path / "test.csv",
        [
            texts[2].upper(),  # exact, other case
            texts[3].replace("states.", "state."),  # near
            "Gold futures were unchanged in thin holiday trading.",  # new, and a near copy of it: test rows are
            "Gold futures were unchanged in thin holiday trade.",  # looked up in the training data, not in each other
            texts[120],  # a sample text that is not in the training file
        ],
    )
    code, results, report = evaluate(tmp_path, "--data", str(test), "--train-data", str(train))
    assert code == 0
    overlap = results["data"]["overlap"]
    assert (overlap["exact"], overlap["near"], overlap["train_rows"], overlap["test_rows"]) == (1, 1, 50, 5)
    assert overlap["removed_before_training"] is None  # a plain file keeps no record of removals
    assert overlap["matches"][0].startswith("test row 1 (") and f"{train} row 3" in overlap["matches"][0]
    assert f"{train} row 4" in overlap["matches"][1]
    assert "## Test rows in the training data" in report and "1 exact and 1 near duplicates of 50" in report
    assert any(w.startswith("2 of 5 test rows (40.0%) are in the training data") for w in results["warnings"])
    assert "in training data: 1 exact + 1 near duplicates" in capsys.readouterr().out.splitlines()[1]


def test_a_data_gen_directory_is_checked_against_its_own_training_splits(
    distilled: dict[str, Path], tmp_path: Path
) -> None:
    data = distilled["finsight"]
    manifest = json.loads((data / "manifest.json").read_text())
    code, results, report = evaluate(tmp_path, "--data", str(data))
    assert code == 0
    overlap = results["data"]["overlap"]
    splits = manifest["counts"]["accepted_by_split"]
    assert overlap["train_rows"] == splits["train"] + splits["validation"]
    assert overlap["test_rows"] == splits["test"] and overlap["exact"] == overlap["near"] == 0
    assert overlap["removed_before_training"] == {"duplicate_text": 0, "near_duplicate_text": 0, "contaminated": 0}
    assert "data_gen removed 0 exact and 0 near duplicates and 0 contaminated rows" in report
    assert not results["warnings"]

    code, results, report = evaluate(tmp_path, "--data", str(data), "--train-data", "none")
    assert code == 0 and results["data"]["overlap"] is None and "## Test rows in the training data" not in report
    assert main(["--teacher", "rules", "--data", str(data), "--train-data", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "x")]) == 2  # fmt: skip


def test_scoring_the_validation_split_does_not_count_its_own_rows_as_seen(
    distilled: dict[str, Path], tmp_path: Path
) -> None:
    data = distilled["finsight"]
    splits = json.loads((data / "manifest.json").read_text())["counts"]["accepted_by_split"]
    code, results, _ = evaluate(tmp_path, "--data", str(data), "--split", "validation")
    assert code == 0
    overlap = results["data"]["overlap"]
    assert overlap["train_rows"] == splits["train"] and overlap["test_rows"] == splits["validation"]
    assert overlap["exact"] == overlap["near"] == 0 and not results["warnings"]
