"""Logit-level distillation end to end on tiny local models (CPU, offline): a tiny teacher (the smoke twin's
tokenizer, briefly trained so its distributions are peaked) scores the distilled replies in process; data_gen writes
Axolotl's KD format; the KD recipe trains the 4-bit student through the launcher with the loss terms in the log;
and a student identical to the teacher starts at zero KL, which proves the rows line up with the tokens Axolotl
trains on. Also: the label belief, the confidence filter, the refusals before anything is asked, and the local
teacher's own generation with its cache."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from data_gen.distill import main as distill
from data_gen.kd.rows import check_rows, label_belief
from data_gen.teachers.local import Scored

from .conftest import LF_PYTHON, ROOT, SAMPLES, need_engine, recipe_module
from .test_recipes_axolotl import AX_ENV, AX_PYTHON

pytestmark = [pytest.mark.engine, pytest.mark.slow]

RECIPE = "recipes/axolotl/qwen2.5-7b-instruct_finsight_kd.yaml"
TOP_K = 32  # wide enough that the tiny teacher's top-k holds the classes' first tokens
LOGGED = re.compile(r"\{'loss'.*?\}")


@pytest.fixture(scope="module")
def kd(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The student twin (what smoke mode trains), a fitted teacher sharing its tokenizer, and KD data."""
    need_engine("axolotl")
    work = tmp_path_factory.mktemp("kd")
    python = str(LF_PYTHON if LF_PYTHON.exists() else AX_PYTHON)
    student = Path(recipe_module().tiny_twin("qwen2", python))
    sft = work / "sft"
    assert distill(["--config", "data_gen/configs/finsight.yaml", "--input", str(SAMPLES / "news.csv"),
                    "--limit", "4", "--out", str(sft), "--no-progress"]) == 0  # fmt: skip
    teacher = work / "teacher"
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "scripts/build_tiny_model.py", "--arch", "qwen2",
                    "--out", str(teacher), "--fit", str(sft / "sharegpt_train.jsonl")],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)  # fmt: skip
    data = work / "data"
    argv = ["--config", "data_gen/configs/finsight.yaml", "--input", str(SAMPLES / "news.csv"), "--limit", "12",
            "--kd-teacher", str(teacher), "--student-tokenizer", str(student), "--kd-top-k", str(TOP_K)]  # fmt: skip
    assert distill([*argv, "--out", str(data), "--no-progress"]) == 0
    return {"student": student, "teacher": teacher, "data": data, "work": work, "argv": argv}  # type: ignore[dict-item]


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_kd_files_hold_one_row_per_reply_token(kd: dict[str, Any]) -> None:
    from transformers import AutoTokenizer

    data = kd["data"]
    manifest = json.loads((data / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["accepted"] + counts["rejected"] == counts["input"] == 12
    assert manifest["kd"]["scored"] == counts["accepted"] and manifest["kd"]["top_k"] == TOP_K
    tokenizer = AutoTokenizer.from_pretrained(kd["student"])
    rows = [row for split in ("train", "validation", "test") if (data / f"kd_{split}.jsonl").exists()
            for row in jsonl(data / f"kd_{split}.jsonl")]  # fmt: skip
    sharegpt = {row["id"]: row for row in jsonl(data / "sharegpt_train.jsonl")}
    assert len(rows) == counts["accepted"]
    for row in rows:
        full = tokenizer.apply_chat_template(row["messages"], return_dict=True)["input_ids"]
        prompt = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, return_dict=True)
        reply_positions = len(full) - len(prompt["input_ids"])  # content, <|im_end|>, "\n": Axolotl's alignment
        assert len(row["logprobs"]) == len(row["target_token_ids"]) == reply_positions
        assert all(len(r) == TOP_K for r in row["logprobs"]) and all(len(r) == TOP_K for r in row["target_token_ids"])
        assert all(-50.0 <= v <= 0 for r in row["logprobs"] for v in r)
        if row["id"] in sharegpt:  # the same conversation as the SFT file
            assert row["messages"][-1]["content"] == sharegpt[row["id"]]["conversations"][-1]["value"]
    entry = yaml.safe_load((data / "axolotl_kd.yaml").read_text())["datasets"][0]
    assert entry["type"] == "axolotl.integrations.kd.chat_template" and entry["logprobs_field"] == "logprobs"
    beliefs = [e["label_belief"] for e in jsonl(data / "examples.jsonl")]
    assert len(beliefs) == counts["accepted"]
    for example, belief in zip(jsonl(data / "examples.jsonl"), beliefs, strict=True):
        assert math.isclose(sum(belief["probs"].values()), 1.0, abs_tol=1e-4) and 0 < belief["mass"] <= 1
        assert belief["confidence"] == belief["probs"][example["answer"]["sentiment"]]


def test_the_confidence_filter_rejects_exactly_the_doubted_examples(kd: dict[str, Any], tmp_path: Path) -> None:
    confidences = [e["label_belief"]["confidence"] for e in jsonl(kd["data"] / "examples.jsonl")]
    threshold = (min(confidences) + max(confidences)) / 2
    assert distill([*kd["argv"], "--min-label-confidence", str(threshold), "--out", str(tmp_path / "f"),
                    "--no-progress"]) == 0  # fmt: skip
    manifest = json.loads((tmp_path / "f" / "manifest.json").read_text())
    doubted = sum(c < threshold for c in confidences)
    assert manifest["counts"]["rejected_by_reason"].get("low_confidence") == doubted > 0
    assert manifest["counts"]["accepted"] == len(confidences) - doubted
    rejects = [r for r in jsonl(tmp_path / "f" / "rejects.jsonl") if r["reason"] == "low_confidence"]
    assert all("teacher probability of its label" in r["detail"] for r in rejects)


def test_refusals_come_before_anything_is_asked(kd: dict[str, Any], tmp_path: Path, capsys) -> None:
    base = ["--input", str(SAMPLES / "news.csv"), "--limit", "3", "--no-progress"]
    assert distill([*base, "--kd-top-k", "8", "--out", str(tmp_path / "a")]) == 2
    assert "--kd-top-k needs log-probabilities over the student's tokens" in capsys.readouterr().err
    llama = Path(recipe_module().tiny_twin("llama", str(LF_PYTHON if LF_PYTHON.exists() else AX_PYTHON)))
    argv = [*base, "--kd-teacher", str(kd["teacher"]), "--kd-top-k", "8", "--student-tokenizer", str(llama)]
    assert distill([*argv, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "does not tokenize like the KD teacher" in err and "hard-label distillation" in err
    assert not (tmp_path / "b" / "examples.jsonl").exists()  # nothing was asked or written


def test_the_local_teacher_generates_and_caches(kd: dict[str, Any], tmp_path: Path) -> None:
    argv = ["--input", str(SAMPLES / "news.csv"), "--limit", "3", "--teacher", "local", "--model",
            str(kd["teacher"]), "--max-completion-tokens", "24", "--max-reasks", "0", "--out", str(tmp_path / "g"),
            "--no-progress"]  # fmt: skip
    assert distill(argv) == 0
    first = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert first["counts"]["input"] == first["counts"]["accepted"] + first["counts"]["rejected"] == 3
    assert first["teacher"]["kind"] == "local" and first["requests"]["sent"] >= 3
    assert first["usage"]["completion_tokens"] > 0
    assert distill(argv) == 0  # the rerun asks nothing
    second = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert second["requests"]["sent"] == 0 and second["counts"] == first["counts"]


def train(kd: dict[str, Any], name: str, *overrides: str) -> tuple[int, str, list[dict[str, float]]]:
    data = kd["data"] / "kd_train.jsonl"
    entry = {"path": str(data), "ds_type": "json", "type": "axolotl.integrations.kd.chat_template",
             "field_messages": "messages", "logprobs_field": "logprobs", "temperature": 1.0}  # fmt: skip
    out = kd["work"] / name
    argv = ["sh", "scripts/train_kd.sh", RECIPE, "--smoke", f"datasets={json.dumps([entry])}",
            f"output_dir={out / 'out'}", f"dataset_prepared_path={out / 'prepared'}", *overrides]  # fmt: skip
    env = {**os.environ, **AX_ENV}
    env.pop("PYTHONPATH")  # the launcher puts the plugins folder on it itself
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    logs = [{k: float(v) for k, v in yaml.safe_load(m).items() if k in ("loss", "kd_loss", "ce_loss")}
            for m in LOGGED.findall(output)]  # fmt: skip
    return result.returncode, output, logs


def test_the_kd_recipe_trains_the_4bit_student_with_both_loss_terms(kd: dict[str, Any]) -> None:
    code, output, logs = train(kd, "recipe")
    assert code == 0, output[-4000:]
    assert "prepare_model_for_kbit_training" in output  # the recipe's QLoRA path
    recipe = yaml.safe_load((ROOT / RECIPE).read_text())
    assert len(logs) == 2, logs  # smoke mode: two steps, each logged
    for step in logs:
        assert set(step) == {"loss", "kd_loss", "ce_loss"} and all(math.isfinite(v) for v in step.values())
        combined = recipe["kd_alpha"] * step["kd_loss"] + recipe["kd_ce_alpha"] * step["ce_loss"]
        assert math.isclose(step["loss"], combined, rel_tol=0.02), (step, combined)  # our terms = Axolotl's loss
        assert step["kd_loss"] > 0 and step["ce_loss"] > 0
    assert (kd["work"] / "recipe" / "out" / "adapter_model.safetensors").exists()


def test_a_student_identical_to_the_teacher_starts_at_zero_kl(kd: dict[str, Any]) -> None:
    """Rows misaligned by one position, or scored over other tokens, would give a clearly positive KL here."""
    code, output, logs = train(kd, "same", f"base_model={kd['teacher']}", "load_in_4bit=false", "adapter=lora",
                               "max_steps=1")  # fmt: skip
    assert code == 0, output[-4000:]
    assert len(logs) == 1 and logs[0]["kd_loss"] < 1e-3 < logs[0]["ce_loss"], logs


def test_label_belief_reads_the_classes_at_the_label_position() -> None:
    class Tokens:  # a character-level tokenizer: one token per character, id = code point
        def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
            return {"input_ids": [ord(c) for c in text]}

    reply = '<thinking>up</thinking>{"sentiment": "positive"}'
    ids = [ord(c) for c in reply]
    start = reply.index("positive")
    rows = [[-0.1, -3.0] for _ in ids]
    tokens = [[i, 0] for i in [*ids[1:], 0]]
    tokens[start - 1] = [ord("p"), ord("n")]  # the row before the label: "p"ositive 0.6, "n"egative 0.2 (neutral too)
    rows[start - 1] = [math.log(0.6), math.log(0.2)]
    scored = Scored([1, 2, *ids], 2, rows, tokens)
    assert check_rows(scored, 2) is None
    assert label_belief(Tokens(), scored, reply, "sentiment", ["positive", "negative", "neutral"]) is None  # n = n
    belief = label_belief(Tokens(), scored, reply, "sentiment", ["positive", "negative", "mixed"])
    assert belief is not None
    assert math.isclose(belief.confidence, 0.75) and math.isclose(belief.probs["negative"], 0.25)
    assert belief.probs["mixed"] == 0.0 and math.isclose(belief.mass, 0.8)
    short = Scored(scored.input_ids, 2, rows[:-1], tokens[:-1])
    assert check_rows(short, 2) == f"{len(ids) - 1} rows for {len(ids)} reply positions"
