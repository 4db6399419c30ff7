"""The whole offline run with the rules teacher: files, counts that add up, reruns, dry runs, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from data_gen.writers.training import SCHEMAS_DIR
from tests.conftest import ROOT, SAMPLES

NEWS = str(SAMPLES / "news.csv")
QUESTIONS = str(SAMPLES / "questions.jsonl")


def news_args(*extra: str) -> list[str]:
    return ["--input", NEWS, "--task", "finsight", "--id-column", "id", "--label-column", "label", *extra]


def test_offline_finsight_run_writes_everything(distill) -> None:
    run = distill(*news_args())
    assert run.code == 0, run.err
    manifest = run.manifest
    counts = manifest["counts"]
    assert counts["input"] == 300
    assert counts["accepted"] + counts["rejected"] == counts["input"]
    assert sum(counts["rejected_by_reason"].values()) == counts["rejected"]
    assert sum(counts["accepted_by_split"].values()) == counts["accepted"]
    assert counts["accepted_by_split"]["train"] > counts["accepted_by_split"]["test"] > 0

    info = json.loads((run.out_dir / "dataset_info.json").read_text())
    assert set(info) == {
        f"finsight_{fmt}_{split}" for fmt in ("sharegpt", "alpaca") for split in ("train", "validation", "test")
    }
    assert info["finsight_sharegpt_train"]["formatting"] == "sharegpt"
    assert info["finsight_sharegpt_train"]["tags"]["user_tag"] == "human"
    assert info["finsight_alpaca_test"]["columns"]["response"] == "output"
    for name, entry in info.items():  # every registered file exists and holds the counted rows
        rows = run.jsonl(entry["file_name"])
        split = name.rsplit("_", 1)[1]
        assert len(rows) == counts["accepted_by_split"][split] == manifest["files"][entry["file_name"]]

    sharegpt = Draft202012Validator(json.loads((SCHEMAS_DIR / "sharegpt.schema.json").read_text()))
    for row in run.jsonl("sharegpt_train.jsonl"):
        sharegpt.validate(row)
        assistant = row["conversations"][2]["value"]
        assert assistant.startswith("<thinking>\n") and "</thinking>\n{" in assistant

    examples = run.jsonl("examples.jsonl")
    assert len(examples) == counts["accepted"]
    assert {"request_key", "usage", "asks", "model", "endpoint"} <= set(examples[0]["provenance"])
    assert manifest["gold_agreement"]["n"] == counts["accepted"]
    assert 0.5 < manifest["gold_agreement"]["accuracy"] <= 1.0
    assert manifest["teacher"]["kind"] == "rules" and manifest["cost_usd"] == 0.0
    assert manifest["versions"]["openai"] and manifest["config_hash"]
    axolotl = yaml.safe_load((run.out_dir / "axolotl_sharegpt.yaml").read_text())
    assert axolotl["datasets"][0]["type"] == "chat_template"
    assert axolotl["datasets"][0]["field_messages"] == "conversations"
    assert "300 rows: " in run.out and "accuracy" in run.out


def test_split_assignment_and_files_are_stable_across_reruns(distill, tmp_path: Path) -> None:
    first = distill(*news_args(), out=tmp_path / "a")
    second = distill(*news_args(), out=tmp_path / "b")
    for name in ("sharegpt_train.jsonl", "alpaca_test.jsonl", "rejects.jsonl"):
        assert (first.out_dir / name).read_text() == (second.out_dir / name).read_text()


def test_changing_only_the_formats_keeps_the_same_examples(distill, tmp_path: Path) -> None:
    both = distill(*news_args(), out=tmp_path / "both")
    alpaca = distill(*news_args("--formats", "alpaca"), out=tmp_path / "alpaca")
    assert not (alpaca.out_dir / "sharegpt_train.jsonl").exists()
    assert (alpaca.out_dir / "alpaca_train.jsonl").read_text() == (both.out_dir / "alpaca_train.jsonl").read_text()
    assert set(json.loads((alpaca.out_dir / "dataset_info.json").read_text())) == {
        "finsight_alpaca_train",
        "finsight_alpaca_validation",
        "finsight_alpaca_test",
    }


def test_qa_task_from_the_design_card(distill) -> None:
    run = distill("--input", QUESTIONS, "--task", "qa", "--teacher", "rules")
    assert run.code == 0, run.err
    counts = run.manifest["counts"]
    assert counts["input"] == 200 and counts["accepted"] + counts["rejected"] == 200
    assert set(counts["rejected_by_reason"]) == {"declined"}  # questions the glossary does not cover
    row = run.jsonl("alpaca_train.jsonl")[0]
    assert set(row) == {"id", "instruction", "input", "output", "system"}
    assert "<thinking>" not in row["output"] and row["input"] == ""


def test_require_gold_agreement_rejects_disagreements(distill) -> None:
    loose = distill(*news_args())
    strict = distill(*news_args("--require-gold-agreement"), out=loose.out_dir.parent / "strict")
    disagreements = strict.manifest["counts"]["rejected_by_reason"]["gold_disagreement"]
    agreement = loose.manifest["gold_agreement"]
    assert disagreements == round(agreement["n"] * (1 - agreement["accuracy"]))
    assert strict.manifest["counts"]["accepted"] == loose.manifest["counts"]["accepted"] - disagreements
    for row in strict.jsonl("examples.jsonl"):
        assert row["answer"]["sentiment"] == row["gold"]


def test_config_file_with_flag_overrides(distill, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "finsight",
                "input": NEWS,
                "id_column": "id",
                "teacher": "rules",
                "formats": ["sharegpt"],
                "out": str(tmp_path / "from_yaml"),
            }
        )
    )
    run = distill("--config", str(config), "--limit", "40", "--out", str(tmp_path / "flag_out"))
    assert run.code == 0, run.err
    assert run.manifest["counts"]["input"] == 40
    assert run.manifest["config"]["out"] == str(tmp_path / "flag_out")
    assert not (tmp_path / "from_yaml").exists()


def test_shipped_configs_are_valid(distill) -> None:
    for name in ("finsight", "qa", "fpb", "tfns"):
        path = ROOT / "data_gen" / "configs" / f"{name}.yaml"
        run = distill(
            "--config",
            str(path),
            "--dry-run",
            *(["--input", NEWS] if name in ("fpb", "tfns") else []),
            *(["--input-format", "csv", "--text-column", "text"] if name == "fpb" else []),
        )
        assert run.code == 0, run.err
        assert "nothing was sent" in run.out


def test_dry_run_prints_requests_tokens_and_cost_and_writes_nothing(distill, tmp_path: Path) -> None:
    out = tmp_path / "dry"
    run = distill(
        "--input",
        NEWS,
        "--teacher",
        "openai",
        "--base-url",
        "https://api.deepseek.com/v1",
        "--model",
        "deepseek-chat",
        "--api-key-env",
        "DEEPSEEK_API_KEY",
        "--dry-run",
        "--out",
        str(out),
    )
    assert run.code == 0, run.err
    assert "requests to send         300 (0 already cached)" in run.out
    assert "prompt tokens (est.)" in run.out and "$" in run.out and "nothing was sent" in run.out
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "missing.csv"], "error: input not found: missing.csv"),
        (["--input", NEWS, "--text-column", "body"], "no text column 'body'; the columns are: id, text, label"),
        (
            ["--input", NEWS, "--label-column", "label", "--label-map", "positive=up"],
            "unknown gold label value(s) 'positive -> up' (105 rows)",
        ),
        (["--input", NEWS, "--task", "sentiment"], "unknown task 'sentiment'"),
        (
            [
                "--input",
                NEWS,
                "--teacher",
                "openai",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--model",
                "m",
                "--api-key-env",
                "MY_TEACHER_KEY",
            ],
            "the API key variable MY_TEACHER_KEY is not set",
        ),
        (["--input", QUESTIONS, "--task", "qa", "--label-column", "id"], "task qa has no label field"),
    ],
)
def test_bad_input_is_one_clear_line_before_any_spending(distill, args: list[str], message: str) -> None:
    run = distill(*args)
    assert run.code == 2
    assert message in run.err
    assert len(run.err.strip().splitlines()) == 1
    assert not (run.out_dir / "manifest.json").exists()


def test_bad_rows_are_accounted_for(distill, tmp_path: Path) -> None:
    rows = [
        {"text": "Acme Corp's net sales rose 12% to EUR 40 mn."},
        {"text": ""},
        {"text": "Acme Corp's net sales rose 12% to EUR 40 mn."},
        {"text": "x " * 30_000},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"text": broken\n')
    run = distill("--input", str(path))
    assert run.code == 0, run.err
    counts = run.manifest["counts"]
    assert counts == {**counts, "input": 5, "accepted": 1, "rejected": 4}
    assert counts["rejected_by_reason"] == {
        "empty_text": 1,
        "duplicate_text": 1,
        "text_too_long": 1,
        "malformed_input": 1,
    }
    rejects = run.jsonl("rejects.jsonl")
    assert [r["row"] for r in rejects] == [2, 3, 4, 5]
    assert all(r["detail"] for r in rejects)


def test_a_sampled_run_accounts_for_the_rows_it_left_out(distill) -> None:
    run = distill(*news_args("--sample", "0.5"))
    assert run.code == 0, run.err
    counts, facts = run.manifest["counts"], run.manifest["input"]
    assert 100 < counts["input"] < 200 and counts["input"] + facts["outside_sample"] == 300
    assert counts["accepted"] + counts["rejected"] == counts["input"]
    assert f"--sample 0.5: {facts['outside_sample']} rows of the file left out" in run.out


def test_shards_take_every_row_once_and_keep_each_rows_split(distill, tmp_path: Path) -> None:
    whole = distill(*news_args("--no-dedup"), out=tmp_path / "whole")
    parts = [distill(*news_args("--no-dedup", "--shard", f"{k}/2"), out=tmp_path / f"part{k}") for k in (1, 2)]
    assert all(part.code == 0 for part in parts), [part.err for part in parts]
    assert sum(part.manifest["counts"]["input"] for part in parts) == 300
    assert all(part.manifest["input"]["shard"] == [k, 2] for k, part in enumerate(parts, 1))

    def splits(run) -> dict[str, str]:
        return {row["id"]: row["split"] for row in run.jsonl("examples.jsonl")}

    first, second = splits(parts[0]), splits(parts[1])
    assert first | second == splits(whole) and not first.keys() & second.keys()
    bad = distill(*news_args("--shard", "3/2"))
    assert bad.code == 2 and "--shard 3/2: K must be between 1 and N" in bad.err
