"""The README's first command on a smaller slice: scripts/demo.sh distils, trains the real SmolLM2 (two steps),
serves base and student with llama.cpp, evaluates against gold labels and reports, in a folder of its own, and
leaves no process behind."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

from .conftest import ROOT, engine_env, need_engine
from .test_eval_llamafactory import processes_mentioning


def test_the_demo_pipeline_on_a_small_slice(tmp_path: Path) -> None:
    need_engine()
    work = tmp_path / "demo"
    env = engine_env(DEMO_WORK=str(work), TRAIN_ARGS="max_steps=2 max_samples=8 warmup_ratio=0", DEMO_LIMIT="4")
    result = subprocess.run(["sh", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"report: {work / 'report' / 'report.md'}") and len(lines) == 6  # path + five lines
    assert [line.split(":")[0] for line in lines[1:]] == ["data", "base", "tuned", "teacher", "tuned - base"]
    assert "== [" in result.stderr and "done in" in result.stderr  # the stages and the wall time
    results = json.loads((work / "report" / "results.json").read_text())
    assert list(results["models"]) == ["base", "tuned", "teacher"] and results["data"]["evaluated"] == 4
    assert results["models"]["tuned"]["adapter"] == str(work / "student")
    assert results["config"]["reference"] == "gold" and results["models"]["base"]["backend"] == "llamacpp"
    for model in ("base", "tuned", "teacher"):
        values = results["intervals"][model]
        # against gold labels: the samples label sentiment only
        for name in ("sentiment.accuracy", "sentiment.weighted_f1", "sentiment.macro_f1", "format.schema_valid"):
            assert math.isfinite(values[name]["value"]), (model, name)
    assert (work / "report" / "report.md").exists() and (work / "student" / "adapter_model.safetensors").exists()
    assert (work / "datasets" / "finsight" / "manifest.json").exists()
    # trained on the gold-agreeing answers only, evaluated on every row of the test split
    gold = json.loads((work / "datasets" / "finsight-gold" / "manifest.json").read_text())
    assert gold["config"]["require_gold_agreement"] and gold["counts"]["rejected"] > 0
    assert processes_mentioning(str(work)) == []

    # RESUME (what scripts/results.sh uses for its hours-long trainings): a training killed after a checkpoint
    # continues from it, and a finished student is kept while the evaluation takes every answer from its store
    resumed = work / "resumed"
    data = str(work / "datasets" / "finsight")
    argv = ["sh", "scripts/pipeline.sh", data, str(resumed), "--reference", "gold", "--limit", "2"]
    resume_env = {**env, "RESUME": "1", "SAVE_STEPS": "1", "TRAIN_ARGS": "max_steps=3 max_samples=12 warmup_ratio=0"}
    first = subprocess.Popen(argv, cwd=ROOT, env=resume_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not list((resumed / "student").glob("checkpoint-*/trainer_state.json")):
            assert first.poll() is None and time.monotonic() < deadline, "no checkpoint was saved"
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # as a lost machine would
        first.wait(timeout=60)
    again = subprocess.run(argv, cwd=ROOT, env=resume_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    student = resumed / "student"
    state = json.loads((student / "trainer_state.json").read_text())
    assert "Resuming training from" in again.stderr and state["global_step"] == 3
    assert (student / ".finished").exists() and not list(student.glob("checkpoint-*"))
    adapter = student / "adapter_model.safetensors"
    trained = adapter.stat().st_mtime_ns
    kept = subprocess.run(argv, cwd=ROOT, env=resume_env, capture_output=True, text=True, timeout=600)
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert "kept (RESUME)" in kept.stderr and adapter.stat().st_mtime_ns == trained
    models = json.loads((resumed / "report" / "results.json").read_text())["models"]
    assert models["base"]["from_cache"] == models["tuned"]["from_cache"] == 2
    assert processes_mentioning(str(work)) == []


def test_results_script_checks_its_inputs_before_anything_runs(tmp_path: Path) -> None:
    def results(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        argv = ["sh", "scripts/results.sh", *args]
        run_env = engine_env(RESULTS_WORK=str(tmp_path / "work"), **env)
        return subprocess.run(argv, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=60)

    unknown = results("fpb", "nasdaq")
    expected = "error: unknown data set 'nasdaq' (choose: fpb, tfns, teacher)"
    assert unknown.returncode == 2 and unknown.stderr.strip() == expected
    missing = results("tfns", SHARED_DATA=str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "tfns/sent_train.csv not found" in missing.stderr
    assert not (tmp_path / "work").exists()  # nothing ran
    pipeline = subprocess.run(["sh", "scripts/pipeline.sh", str(tmp_path), str(tmp_path / "w")], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    assert pipeline.returncode == 2 and "is not a data_gen output directory" in pipeline.stderr
