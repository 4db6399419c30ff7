"""Input loaders: every format, column mapping, stable ids, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data_gen.errors import InputError
from data_gen.sources.readers import read_source
from data_gen.sources.records import text_id
from data_gen.sources.splits import assign_split, parse_shard

ROWS = [
    {"id": "a1", "text": "Acme Corp's net sales rose 12% to EUR 40 mn.", "label": "positive"},
    {"id": "a2", "text": "Beta Oyj warned that profit will fall, citing weak demand.", "label": "negative"},
    {"id": "a3", "text": "Gamma, Inc. will publish results on 3 May.", "label": "neutral"},
]


def write_table(path: Path, rows: list[dict], fmt: str) -> Path:
    frame = pd.DataFrame(rows)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "parquet":
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_every_tabular_format_reads_the_same_records(tmp_path: Path, fmt: str) -> None:
    path = write_table(tmp_path / f"news.{fmt}", ROWS, fmt)
    report = read_source(path, text_column="text", id_column="id", label_column="label")
    assert report.format == fmt
    assert [(r.id, r.text, r.label) for r in report.records] == [(r["id"], r["text"], r["label"]) for r in ROWS]
    assert [r.row for r in report.records] == [1, 2, 3]
    assert report.rows == 3 and not report.rejected


def test_saved_datasets_directory_and_its_splits(tmp_path: Path) -> None:
    import datasets

    single = tmp_path / "single"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(single))
    report = read_source(single, text_column="text", label_column="label")
    assert report.format == "hf" and len(report.records) == 3

    both = tmp_path / "dict"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])}
    ).save_to_disk(str(both))
    with pytest.raises(InputError, match="splits train, test; choose one with --hf-split"):
        read_source(both, text_column="text")
    assert len(read_source(both, text_column="text", hf_split="test").records) == 1
    with pytest.raises(InputError, match="no split 'dev'"):
        read_source(both, text_column="text", hf_split="dev")


def test_fpb_splits_on_the_last_at_sign_in_latin1_and_utf8(tmp_path: Path) -> None:
    lines = [
        "Sales at Kone rose to EUR 5 mn from EUR 4 mn .@positive",
        "Contact us at ir@example.com for the report .@neutral",
        "Nestlé 's profit fell .@negative",
    ]
    for encoding in ("latin-1", "utf-8"):
        path = tmp_path / f"fpb_{encoding}.txt"
        path.write_bytes("\n".join(lines).encode(encoding) + b"\n")
        report = read_source(path)
        assert report.format == "fpb"
        assert [r.label for r in report.records] == ["positive", "neutral", "negative"]
        assert report.records[1].text == "Contact us at ir@example.com for the report ."
        assert report.records[2].text.startswith("Nestlé")  # decoded correctly either way
        assert (report.encoding == "latin-1") == (encoding == "latin-1")
        assert (len(report.notes) == 1) == (encoding == "latin-1")  # the fallback is said, not silent


def test_shared_fpb_file_reads_whole_when_present() -> None:
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "fpb" / "Sentences_AllAgree.txt"
    if not path.exists():
        pytest.skip("../shared/data is not present on this machine")
    report = read_source(path)
    assert report.format == "fpb" and report.encoding == "latin-1"
    assert report.rows == 2264
    assert len(report.records) + len(report.rejected) == 2264
    assert {r.label for r in report.records} == {"positive", "negative", "neutral"}


def test_plain_text_one_item_per_line(tmp_path: Path) -> None:
    path = tmp_path / "questions.txt"
    path.write_text("What is EBITDA?\n\nWhat is a bond?\n")
    report = read_source(path)
    assert report.format == "txt"
    assert [r.text for r in report.records] == ["What is EBITDA?", "What is a bond?"]
    assert [r.row for r in report.records] == [1, 3]  # line numbers


def test_ids_are_given_or_a_stable_hash_of_the_text(tmp_path: Path) -> None:
    path = write_table(tmp_path / "n.csv", ROWS, "csv")
    hashed = read_source(path, text_column="text")
    assert [r.id for r in hashed.records] == [text_id(r["text"]) for r in ROWS]
    assert hashed.records[0].id == read_source(path, text_column="text").records[0].id
    given = read_source(path, text_column="text", id_column="id")
    assert [r.id for r in given.records] == ["a1", "a2", "a3"]


def test_missing_file_unknown_format_and_missing_column(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"input not found: .*nope\.csv"):
        read_source(tmp_path / "nope.csv")
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(InputError, match=r"unknown input format '\.xlsx'"):
        read_source(tmp_path / "data.xlsx")
    path = write_table(tmp_path / "n.csv", ROWS, "csv")
    with pytest.raises(InputError, match="no text column 'body'; the columns are: id, text, label"):
        read_source(path, text_column="body")
    with pytest.raises(InputError, match="no label column 'gold'"):
        read_source(path, text_column="text", label_column="gold")


def test_bad_rows_are_rejected_with_reasons_and_counts_add_up(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "text": "Fine row."},
        {"id": "2", "text": "   "},
        {"id": "3", "text": "x" * 1_000_000},
        {"id": "1", "text": "Same id as the first row."},
        {"id": "5", "text": None},
    ]
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, '{"id": "broken", "text": "unterminated')
    lines.insert(4, '["not", "an", "object"]')
    path.write_text("\n".join(lines) + "\n")
    report = read_source(path, text_column="text", id_column="id", max_chars=20_000)
    reasons = {r.row: r.reason for r in report.rejected}
    assert reasons == {
        2: "empty_text",
        3: "malformed_input",
        4: "text_too_long",
        5: "malformed_input",
        6: "duplicate_id",
        7: "empty_text",
    }
    assert "line 3" in next(r.detail for r in report.rejected if r.row == 3)
    assert len(report.records) == 1 and report.rows == 7
    assert len(report.records) + len(report.rejected) == report.rows


def test_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "good"}\n{"text": "caf\xe9"}\n')
    strict = read_source(path, text_column="text", encoding="utf-8")
    assert [r.reason for r in strict.rejected] == ["undecodable_text"]
    assert "row 2" in strict.rejected[0].detail and "byte 0xe9" in strict.rejected[0].detail
    auto = read_source(path, text_column="text")  # no line decodes as non-ASCII UTF-8: the file is Latin-1
    assert [r.text for r in auto.records] == ["good", "café"] and auto.notes

    csv_path = tmp_path / "bad.csv"  # a tabular file loses the row, not the file
    csv_path.write_bytes(b"text\ncaf\xe9\nfine\n")
    table = read_source(csv_path, text_column="text", encoding="utf-8")
    assert [r.text for r in table.records] == ["fine"] and [r.reason for r in table.rejected] == ["undecodable_text"]


def test_quoted_csv_fields_with_commas_and_cashtags(tmp_path: Path) -> None:
    path = tmp_path / "tweets.csv"
    path.write_text('text,label\n"$CX - Cemex cut at Credit Suisse, J.P. Morgan",0\n$ESS: cuts to Neutral,0\n')
    report = read_source(path, text_column="text", label_column="label")
    assert [r.text for r in report.records] == [
        "$CX - Cemex cut at Credit Suisse, J.P. Morgan",
        "$ESS: cuts to Neutral",
    ]
    assert [r.label for r in report.records] == ["0", "0"]  # strings: mapping to labels is the task's job


def test_limit_and_empty_file(tmp_path: Path) -> None:
    path = write_table(tmp_path / "n.jsonl", ROWS, "jsonl")
    assert len(read_source(path, text_column="text", limit=2).records) == 2
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        read_source(empty, text_column="text")


def test_a_sample_is_stable_spread_over_a_sorted_file_and_independent_of_its_order(tmp_path: Path) -> None:
    labels = ["negative", "neutral", "positive"]
    rows = [{"id": f"r{i}", "text": f"Row {i}, sorted by label.", "label": labels[i // 1000]} for i in range(3000)]
    sorted_file = write_table(tmp_path / "sorted.csv", rows, "csv")
    shuffled_file = write_table(tmp_path / "shuffled.jsonl", rows[::-1][1::2] + rows[::-1][::2], "jsonl")
    taken = read_source(sorted_file, text_column="text", id_column="id", label_column="label", sample=0.1)
    ids = {r.id for r in taken.records}
    assert 240 <= len(ids) <= 360 and taken.rows == len(ids)
    assert taken.rows + taken.outside_sample == 3000  # every row of the file is taken or left out, none lost
    per_label = {label: sum(r.label == label for r in taken.records) for label in labels}
    assert all(70 <= n <= 130 for n in per_label.values()), per_label  # --limit 300 would take one label only
    again = read_source(shuffled_file, text_column="text", id_column="id", sample=0.1)
    assert {r.id for r in again.records} == ids  # by id, not by position
    assert ids < {r.id for r in read_source(sorted_file, text_column="text", id_column="id", sample=0.2).records}
    first = read_source(sorted_file, text_column="text", id_column="id", sample=0.1, limit=50).records
    assert [r.id for r in first] == [r.id for r in taken.records[:50]]  # --limit counts rows of the sample
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    test_share = sum(assign_split(i, fractions) == "test" for i in ids) / len(ids)
    assert 0.05 <= test_share <= 0.15  # the sample's hash is not the split's: a sample keeps every split
    with pytest.raises(InputError, match="--sample must be a fraction"):
        read_source(sorted_file, text_column="text", sample=1.5)
    with pytest.raises(InputError, match="--sample 1e-06 took none of its 3,000 rows; take a larger fraction"):
        read_source(sorted_file, text_column="text", id_column="id", sample=1e-6)


def test_shards_split_the_rows_exactly_and_evenly(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "text": f"Row {i}."} for i in range(2000)]
    path = write_table(tmp_path / "rows.jsonl", rows, "jsonl")
    taken = [read_source(path, text_column="text", id_column="id", shard=(k, 3)) for k in (1, 2, 3)]
    ids = [{r.id for r in part.records} for part in taken]
    assert set().union(*ids) == {r["id"] for r in rows} and sum(len(i) for i in ids) == 2000  # all, none twice
    assert all(600 <= len(i) <= 734 for i in ids)
    assert all(part.rows + part.outside_shard == 2000 for part in taken)
    one = write_table(tmp_path / "one.jsonl", rows[:1], "jsonl")
    counts = [read_source(one, text_column="text", id_column="id", shard=(k, 5)).rows for k in range(1, 6)]
    assert sorted(counts) == [0, 0, 0, 0, 1]  # an empty shard is no error


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("2/8", {}, (2, 8)),
        ("slurm", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, (1, 4)),
        ("slurm", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, (4, 4)),
        ("0/4", {}, "K must be between 1 and N"),
        ("5/4", {}, "K must be between 1 and N"),
        ("2of8", {}, "--shard takes K/N"),
        ("slurm", {}, "needs SLURM_ARRAY_TASK_ID"),
    ],
)
def test_shard_numbers_and_their_errors(text: str, env: dict[str, str], expected: object) -> None:
    if isinstance(expected, tuple):
        assert parse_shard(text, env) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            parse_shard(text, env)
