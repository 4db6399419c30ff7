"""eval's test sets come through data_gen's sources: FPB, TFNS, FinEntity, data_gen outputs, generic files; bad data
is one line before any server starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_gen.errors import InputError
from data_gen.options import build_parser, load_config
from data_gen.tasks.loader import load_task
from eval.config import EvalConfig, validate
from eval.data import load_eval_set
from eval.run import main

FINSIGHT = load_task("finsight")


def config(*argv: str) -> EvalConfig:
    args = build_parser(EvalConfig, "test").parse_args([*argv, "--teacher", "rules", "--out", "unused"])
    return load_config(args, EvalConfig, validate)


def test_fpb_latin1_lines_become_gold_sentiments(tmp_path: Path) -> None:
    path = tmp_path / "Sentences_AllAgree.txt"
    path.write_bytes("Profit rose @ Nokia to EUR 5 mn .@positive\nSales in Espoo fell .@negative\n".encode("latin-1"))
    evalset = load_eval_set(config("--data", str(path)), FINSIGHT)
    assert [(i.text, i.gold) for i in evalset.items] == [
        ("Profit rose @ Nokia to EUR 5 mn .", {"sentiment": "positive"}),
        ("Sales in Espoo fell .", {"sentiment": "negative"}),
    ]
    assert evalset.kind == "fpb" and evalset.facts()["gold_fields"] == ["sentiment"]


def test_tfns_codes_are_mapped_and_unknown_labels_stop_the_run(tmp_path: Path) -> None:
    path = tmp_path / "sent_valid.csv"
    path.write_text('text,label\n"$AAPL beats, raises",1\nFed holds rates,2\n"$XYZ misses",0\n', encoding="utf-8")
    evalset = load_eval_set(config("--data", str(path), "--label-column", "label", "--label-map",
                                   "0=negative,1=positive,2=neutral"), FINSIGHT)  # fmt: skip
    assert [i.gold["sentiment"] for i in evalset.items] == ["positive", "neutral", "negative"]
    with pytest.raises(InputError, match=r"'1' \(1 rows\).*'2' \(1 rows\).*--label-map"):
        load_eval_set(config("--data", str(path), "--label-column", "label", "--label-map", "0=negative"), FINSIGHT)


def test_finentity_annotations_become_gold_entities(tmp_path: Path) -> None:
    path = tmp_path / "FinEntity.json"
    rows = [
        {"content": "Johnson & Johnson shares gained, Pfizer fell.", "annotations": [
            {"start": 0, "end": 17, "value": "Johnson & Johnson", "tag": "Positive", "label": "Positive"},
            {"start": 33, "end": 39, "value": "Pfizer", "tag": "Negative", "label": "Negative"}]},
        {"content": "Markets were calm.", "annotations": []},
    ]  # fmt: skip
    path.write_text(json.dumps(rows), encoding="utf-8")
    evalset = load_eval_set(config("--data", str(path), "--text-column", "content", "--label-column", "annotations"),
                            FINSIGHT)  # fmt: skip
    assert evalset.items[0].gold == {"entities": [{"name": "Johnson & Johnson", "sentiment": "positive"},
                                                  {"name": "Pfizer", "sentiment": "negative"}]}  # fmt: skip
    assert evalset.items[1].gold == {"entities": []}


def test_a_data_gen_directory_gives_its_test_split(distilled: dict[str, Path]) -> None:
    examples = [json.loads(line) for line in (distilled["finsight"] / "examples.jsonl").open()]
    test = [e for e in examples if e["split"] == "test"]
    teacher = load_eval_set(config("--data", str(distilled["finsight"])), FINSIGHT)
    assert [i.id for i in teacher.items] == [e["id"] for e in test]
    assert teacher.items[0].gold == {k: test[0]["answer"][k] for k in ("entities", "sentiment", "risk_level")}
    assert teacher.not_selected == len(examples) - len(test)
    gold = load_eval_set(config("--data", str(distilled["finsight"]), "--reference", "gold"), FINSIGHT)
    assert [i.gold for i in gold.items] == [{"sentiment": e["gold"]} for e in test]
    with pytest.raises(InputError, match=r"no examples in split 'dev'; the splits are: test \(\d+\), train"):
        load_eval_set(config("--data", str(distilled["finsight"]), "--split", "dev"), FINSIGHT)
    with pytest.raises(InputError, match="distilled for task 'qa', not 'finsight'"):
        load_eval_set(config("--data", str(distilled["qa"])), FINSIGHT)


def test_rows_without_a_label_are_rejected_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    lines = [{"text": "Profit rose.", "label": "positive"}, {"text": "Sales fell.", "label": ""},
             {"text": ""}, {"text": "Profit rose.", "label": "positive"}]  # fmt: skip
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    evalset = load_eval_set(config("--data", str(path), "--label-column", "label"), FINSIGHT)
    facts = evalset.facts()
    assert facts["evaluated"] == 1 and facts["rows_read"] == 4
    assert facts["rejected_reasons"] == {"no_gold": 1, "empty_text": 1, "duplicate_text": 1}


def test_bad_data_is_one_line_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    never = str(tmp_path / "no-such-llamafactory-cli")  # a server start would fail differently
    base = ["--backend", "llamafactory", "--llamafactory-cli", never, "--model", str(tmp_path), "--out", str(tmp_path)]
    assert main(["--data", str(tmp_path / "missing.csv"), *base]) == 2
    assert capsys.readouterr().err.strip() == f"error: test data not found: {tmp_path / 'missing.csv'}"
    path = tmp_path / "news.csv"
    path.write_text("text,label\nProfit rose.,bullishh\n", encoding="utf-8")
    assert main(["--data", str(path), "--label-column", "label", *base]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'bullishh' (1 rows)" in err and "positive, negative, neutral" in err


def test_help_explains_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    printed = capsys.readouterr().out
    assert exit_info.value.code == 0 and printed.startswith("usage: python -m eval.run")
    assert "95% intervals" in printed and "--constrained" in printed and "exit status: 0 done" in printed
