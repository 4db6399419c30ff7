"""Writers: record schemas, dataset_info.json entries, Axolotl snippets, atomic files, robust JSON lines."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from data_gen.writers.atomic import AtomicFiles, atomic_write_text, jsonl_line
from data_gen.writers.training import (
    Example,
    TrainingWriter,
    alpaca_record,
    dataset_info_entry,
    kd_record,
    record_errors,
    sharegpt_record,
)

EXAMPLE = Example(
    id="r1",
    split="train",
    system="You are an analyst.",
    user="Text: Sales rose.",
    assistant='<thinking>\nSales rose.\n</thinking>\n{"sentiment": "positive"}',
)


def test_records_match_their_schemas_and_the_engines_columns() -> None:
    sharegpt, alpaca = sharegpt_record(EXAMPLE), alpaca_record(EXAMPLE)
    assert record_errors("sharegpt", sharegpt) is None and record_errors("alpaca", alpaca) is None
    entry = dataset_info_entry("sharegpt", "f.jsonl")
    roles = [turn[entry["tags"]["role_tag"]] for turn in sharegpt[entry["columns"]["messages"]]]
    assert roles == [entry["tags"]["system_tag"], entry["tags"]["user_tag"], entry["tags"]["assistant_tag"]]
    columns = dataset_info_entry("alpaca", "f.jsonl")["columns"]
    assert {alpaca[c] for c in columns.values()} == {EXAMPLE.user, "", EXAMPLE.assistant, EXAMPLE.system}


@pytest.mark.parametrize(
    ("fmt", "mutate", "where"),
    [
        ("sharegpt", lambda r: r["conversations"].reverse(), "was expected"),
        ("sharegpt", lambda r: r["conversations"][2].update(value="  "), "$.conversations[2].value"),
        ("sharegpt", lambda r: r["conversations"].pop(), "$.conversations"),
        ("alpaca", lambda r: r.update(output=""), "$.output"),
        ("alpaca", lambda r: r.pop("instruction"), "'instruction' is a required property"),
    ],
)
def test_records_the_engines_would_skip_are_caught(fmt: str, mutate, where: str) -> None:
    record = sharegpt_record(EXAMPLE) if fmt == "sharegpt" else alpaca_record(EXAMPLE)
    mutate(record)
    assert where in (record_errors(fmt, record) or "")


def test_kd_records_are_checked_on_their_structure_and_end_rows() -> None:
    """The schema sees the first and last rows (every row's values are checked when scored: kd.check_rows)."""
    rows = 5
    example = Example(**{**EXAMPLE.__dict__, "kd": {"logprobs": [[-0.1, -2.0]] * rows,
                                                    "target_token_ids": [[3, 7]] * rows}})  # fmt: skip
    record = kd_record(example)
    assert record_errors("kd", record) is None
    for field, row, value, where in [("logprobs", 0, [0.5, -1.0], "logprobs"), ("target_token_ids", -1, [3, -1],
                                     "target_token_ids"), ("logprobs", -1, [], "logprobs")]:  # fmt: skip
        bad = json.loads(json.dumps(record))
        bad[field][row] = value
        assert where in (record_errors("kd", bad) or ""), (field, row, value)
    assert "messages" in (record_errors("kd", {**record, "messages": record["messages"][:2]}) or "")
    assert record_errors("kd", {k: v for k, v in record.items() if k != "logprobs"})  # a field missing


def test_training_files_dataset_info_and_axolotl_snippets(tmp_path: Path) -> None:
    examples = [EXAMPLE, Example(**{**EXAMPLE.__dict__, "id": "r2", "split": "validation"})]
    with AtomicFiles(tmp_path) as files:
        writer = TrainingWriter(files, ["sharegpt", "alpaca"])
        assert [writer.add(e) for e in examples] == [None, None]
        assert "$.conversations[2].value" in writer.add(Example(**{**EXAMPLE.__dict__, "assistant": " "}))
        written = writer.finish("fin", "datasets/x", ["train", "validation", "test"])
        assert not (tmp_path / "dataset_info.json").exists()  # nothing is in place before the commit
    assert written["files"] == {
        "sharegpt_train.jsonl": 1,
        "sharegpt_validation.jsonl": 1,
        "alpaca_train.jsonl": 1,
        "alpaca_validation.jsonl": 1,
    }  # empty test split: no file
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert (
        sorted(info)
        == written["dataset_info"]
        == ["fin_alpaca_train", "fin_alpaca_validation", "fin_sharegpt_train", "fin_sharegpt_validation"]
    )
    axolotl = yaml.safe_load((tmp_path / "axolotl_sharegpt.yaml").read_text())
    assert axolotl["datasets"][0]["path"] == "datasets/x/sharegpt_train.jsonl"
    assert axolotl["datasets"][0]["message_property_mappings"] == {"role": "from", "content": "value"}
    assert axolotl["test_datasets"][0]["path"].endswith("sharegpt_validation.jsonl")
    assert yaml.safe_load((tmp_path / "axolotl_alpaca.yaml").read_text())["datasets"][0]["type"] == "alpaca"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_atomic_write_replaces_whole_files_with_normal_permissions(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["f.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_lone_surrogate_is_written_visibly_or_refused_with_the_old_file_whole(tmp_path: Path) -> None:
    """eval's report holds models' raw text; a lone surrogate (a broken reply) cannot be UTF-8."""
    path = tmp_path / "report.md"
    atomic_write_text(path, "old")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "broken \ud800 reply")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["report.md"]
    atomic_write_text(path, "broken \ud800 reply", errors="backslashreplace")
    assert path.read_text() == "broken \\ud800 reply"


def test_json_lines_survive_readers_that_split_on_unicode_line_breaks() -> None:
    row = {"text": "a\u2028b\u2029c\x85d\ne"}
    line = jsonl_line(row)
    assert line.splitlines() == [line] and json.loads(line) == row
