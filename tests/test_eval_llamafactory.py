"""eval.run with the real `llamafactory` backend: it starts `llamafactory-cli api` for a tiny local model and for
the same model with a LoRA adapter, generates, scores, writes its three outputs, and leaves no process behind."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LF_CLI, LF_PYTHON, ROOT, engine_env, need_engine


@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adapter") / "lora"
    subprocess.run([str(LF_PYTHON), str(ROOT / "tests" / "engines" / "lf_make_adapter.py"), str(tiny_model), str(out)],
                   check=True, env=engine_env(), capture_output=True, timeout=300)  # fmt: skip
    return out


def eval_run(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "eval.run", "--backend", "llamafactory", "--llamafactory-cli", str(LF_CLI),
            "--template", "qwen", "--no-progress", "--bootstrap", "200", *args]  # fmt: skip
    return subprocess.run(argv, cwd=ROOT, env=engine_env(), capture_output=True, text=True, timeout=600)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


def finite_or_none(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and math.isfinite(value))


def test_base_and_adapter_served_by_llamafactory(
    tiny_model: Path, adapter: Path, distilled: dict[str, Path], tmp_path: Path
) -> None:
    need_engine()
    out = tmp_path / "finsight"
    result = eval_run("--data", str(distilled["finsight"]), "--model", str(tiny_model), "--adapter", str(adapter),
                      "--limit", "4", "--max-tokens", "48", "--teacher", "rules", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["base", "tuned", "teacher"]
    tuned = results["models"]["tuned"]
    assert tuned["backend"] == "llamafactory" and tuned["adapter"] == str(adapter) and tuned["template"] == "qwen"
    assert len(tuned["adapter_files"]["sha256"]) == 64 and tuned["answers"] == 4
    for label, values in results["intervals"].items():
        for name, entry in values.items():
            assert all(finite_or_none(v) for v in entry.values()), (label, name, entry)
    assert results["metrics"]["teacher"]["fields"]["sentiment"]["accuracy"] == 1.0  # its own answers are the gold
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").open()]
    assert len(predictions) == 12
    raw = {label: [p["raw"] for p in predictions if p["model"] == label] for label in ("base", "tuned")}
    assert raw["base"] != raw["tuned"]  # the adapter was loaded and changes what the model says
    assert (out / "report.md").read_text().count("## ") >= 5
    assert "Loaded adapter(s)" in (out / "servers" / "llamafactory_tuned.log").read_text()
    assert processes_mentioning(str(out)) == []  # both servers stopped, with their children


def test_qa_answers_are_scored_with_rouge(tiny_model: Path, distilled: dict[str, Path], tmp_path: Path) -> None:
    need_engine()
    out = tmp_path / "qa"
    result = eval_run("--task", "qa", "--data", str(distilled["qa"]), "--model", str(tiny_model), "--limit", "3",
                      "--max-tokens", "24", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads((out / "results.json").read_text())["metrics"]["base"]["fields"]["answer"]
    assert answer["n"] == 3 and 0 <= answer["rougeL"] <= 1 and answer["words"]["reference_mean"] > 5
    assert processes_mentioning(str(out)) == []
