"""eval.run end to end against scripted servers on 127.0.0.1: the three outputs, settings on the wire, the cache,
constrained mode, a server that dies / hangs / is interrupted, the vllm command line, checks before serving.
(The real-engine run is tests/test_eval_llamafactory.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from data_gen.options import build_parser, load_config
from data_gen.tasks.loader import load_task
from data_gen.teachers.rules import RulesTeacher
from eval.backends import ModelSpec, vllm_command
from eval.config import EvalConfig, validate
from eval.generate import generation_params
from eval.run import main
from tests.fake_server import FakeOpenAI, Reply, answer, finsight_reply, user_text

from .conftest import ROOT, free_port

FINSIGHT = load_task("finsight")
RULES = RulesTeacher(FINSIGHT)
SERVED = ("base", "tuned")  # what the scripted endpoints list at /models


def base_and_tuned(body: dict[str, Any], count: int) -> Reply:
    """`tuned` answers as the rules teacher does; `base` always says neutral, and every fifth answer is prose."""
    text = user_text(body)
    if body["model"] == "tuned":
        return answer(RULES.engine.reply(text))
    if len(text) % 5 == 0:
        return answer("I think this is good news for the company.")
    return answer(finsight_reply("neutral", "Low", "Acme"))


def run_eval(*argv: str) -> int:
    return main([*argv, "--no-progress", "--bootstrap", "200"])


def test_endpoint_run_writes_results_predictions_and_report(distilled: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "report"
    args = ["--data", str(distilled["finsight"]), "--model", "base", "--adapter", "tuned", "--out", str(out)]
    port = free_port()  # the same endpoint both times: the cache knows answers by endpoint and request
    with FakeOpenAI(base_and_tuned, port=port, models=SERVED) as server:
        assert run_eval(*args, "--endpoint", server.base_url) == 0
        bodies = list(server.requests)
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    n = results["data"]["evaluated"]
    assert n > 10 and len(bodies) == 2 * n
    # generation settings: explicit on the wire and recorded
    assert {(b["temperature"], b["max_tokens"], b["seed"]) for b in bodies} == {(0.0, 1024, 0)}
    assert results["generation"] | {"schema_sha256": None} == {
        "temperature": 0.0, "max_tokens": 1024, "seed": 0, "top_p": None, "constrained": "none", "schema_sha256": None,
        "system_prompt": {"models": "student", "teacher": "teacher"},  # what the data_gen folder's training files carry
    }  # fmt: skip
    student = FINSIGHT.student_system_prompt
    assert {b["messages"][0]["content"] for b in bodies} == {student}  # base and tuned, asked like the student
    assert results["models"]["tuned"]["served_name"] == "tuned" and results["models"]["base"]["answers"] == n
    tuned, base = results["metrics"]["tuned"], results["metrics"]["base"]
    assert tuned["fields"]["sentiment"]["accuracy"] == 1.0 and tuned["format"]["schema_valid"] == 1.0
    assert base["fields"]["sentiment"]["accuracy"] < 0.7 and base["format"]["parsed"] < 1.0
    comparison = results["comparisons"][0]
    assert (comparison["a"], comparison["b"]) == ("base", "tuned")
    assert comparison["differences"]["sentiment.accuracy"]["low"] > 0
    assert comparison["mcnemar"]["sentiment.accuracy"]["p_value"] < 0.05
    assert any("hold no usable JSON" in w for w in results["warnings"])
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").open()]
    assert len(predictions) == 2 * n and {p["model"] for p in predictions} == {"base", "tuned"}
    prose = next(p for p in predictions if p["model"] == "base" and not p["format"]["parsed"])
    assert prose["answer"] is None and prose["fields"]["sentiment"]["predicted"] is None  # missing, not neutral
    assert prose["raw"].startswith("I think") and prose["gold"]["sentiment"] in FINSIGHT.labels
    report = (out / "report.md").read_text()
    for heading in ("## Headline metrics", "## Comparisons", "## Format ladder", "## `sentiment`", "## Before / after"):
        assert heading in report
    for plot in ("headline", "confusion_sentiment", "per_class_f1_sentiment"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 5000 and f"plots/{plot}.png" in report
    assert printed.splitlines()[0] == f"report: {out / 'report.md'} (results.json, predictions.jsonl, plots/ beside it)"
    assert len(printed.splitlines()) == 5 and "1 warning(s), see the report" in printed  # path, data, 2 models, diff
    assert printed.splitlines()[-1].startswith("tuned - base: sentiment.accuracy 0.")
    # the same command again: every answer comes from the cache, the numbers are identical
    with FakeOpenAI(base_and_tuned, port=port, models=SERVED) as server:
        assert run_eval(*args, "--endpoint", server.base_url) == 0
        assert server.requests == []
    again = json.loads((out / "results.json").read_text())
    assert again["metrics"] == results["metrics"] and again["intervals"] == results["intervals"]
    assert again["models"]["tuned"]["from_cache"] == n


def test_constraint_forms_and_a_constraint_the_server_ignores(distilled: dict[str, Path], tmp_path: Path) -> None:
    def config(mode: str) -> EvalConfig:
        args = build_parser(EvalConfig, "t").parse_args(["--data", "x", "--teacher", "rules", "--constrained",
                                                              mode, "--out", "x"])  # fmt: skip
        return load_config(args, EvalConfig, validate)

    schema = FINSIGHT.schema_for_prompt
    assert generation_params(config("json_schema"), FINSIGHT)["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "finsight", "schema": schema, "strict": True}
    }  # fmt: skip
    assert generation_params(config("guided_json"), FINSIGHT)["guided_json"] == schema
    assert "response_format" not in generation_params(config("none"), FINSIGHT)
    out = tmp_path / "constrained"
    with FakeOpenAI(
        base_and_tuned, models=SERVED
    ) as server:  # like an old server, it ignores the field and answers in prose
        assert run_eval("--data", str(distilled["finsight"]), "--endpoint", server.base_url, "--model", "base",
                        "--constrained", "structured_outputs", "--out", str(out)) == 0  # fmt: skip
        assert all(body["structured_outputs"] == {"json": schema} for body in server.requests)
    warnings = json.loads((out / "results.json").read_text())["warnings"]
    assert any("--constrained structured_outputs was sent, yet" in w and "not schema-valid" in w for w in warnings)


def fake_cli(tmp_path: Path) -> Path:
    """A stand-in for `llamafactory-cli api`: the fake server on $API_PORT, its pid appended to $FAKE_PIDS."""
    script = tmp_path / "fake-llamafactory-cli"
    script.write_text(
        "#!/bin/sh\n"
        'echo $$ >> "$FAKE_PIDS"\n'
        f'exec "{sys.executable}" -m tests.fake_server --port "$API_PORT" --latency "${{FAKE_LATENCY:-0}}" '
        '${EXIT_AFTER:+--exit-after "$EXIT_AFTER"}\n'
    )
    script.chmod(0o755)
    return script


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is not running
        return handle.read().split()[2] != "Z"


def test_a_server_that_dies_mid_run_is_reported_and_the_rerun_resumes(
    distilled: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pids = tmp_path / "pids"
    monkeypatch.setenv("FAKE_PIDS", str(pids))
    monkeypatch.setenv("EXIT_AFTER", "5")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "run"
    args = ["--data", str(distilled["finsight"]), "--backend", "llamafactory", "--llamafactory-cli",
            str(fake_cli(tmp_path)), "--model", str(model), "--concurrency", "1", "--out", str(out)]  # fmt: skip
    assert run_eval(*args) == 3
    err = capsys.readouterr().err
    assert "the 'base' server died after 5 of" in err and "exit status 1" in err
    assert "fake OpenAI-compatible server on" in err  # the tail of its log
    assert "rerun the same command to resume" in err and not (out / "results.json").exists()
    monkeypatch.delenv("EXIT_AFTER")
    assert run_eval(*args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["models"]["base"]["from_cache"] == 5  # the five answers before the crash were not asked again
    assert results["models"]["base"]["answers"] == results["data"]["evaluated"]
    assert results["models"]["base"]["backend"] == "llamafactory"
    assert not any(alive(int(pid)) for pid in pids.read_text().split())  # both servers are gone


def test_a_hung_server_is_a_clear_error(distilled: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    def hangs_after_three(body: dict[str, Any], count: int) -> Reply:
        return answer(finsight_reply(), delay=0 if len(server.requests) <= 3 else 5)

    with FakeOpenAI(hangs_after_three, models=("m",)) as server:
        started = time.monotonic()
        limits = ["--concurrency", "1", "--timeout", "0.5", "--max-retries", "0"]
        rc = run_eval("--data", str(distilled["finsight"]), "--endpoint", server.base_url, "--model", "m", *limits,
                      "--out", str(tmp_path))  # fmt: skip
        assert rc == 3 and time.monotonic() - started < 4
    err = capsys.readouterr().err
    assert "error: model 'base': request timed out" in err and "after 3 of" in err


def test_ctrl_c_stops_the_started_server(distilled: dict[str, Path], tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    model = tmp_path / "model"
    model.mkdir()
    env = {**os.environ, "FAKE_PIDS": str(pids), "FAKE_LATENCY": "30"}  # no answer before the Ctrl-C
    proc = subprocess.Popen(
        [sys.executable, "-m", "eval.run", "--data", str(distilled["finsight"]), "--backend", "llamafactory",
         "--llamafactory-cli", str(fake_cli(tmp_path)), "--model", str(model), "--out", str(tmp_path / "run"),
         "--no-progress"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a suite started in the background by a non-interactive shell inherits SIGINT ignored: undo that for the run
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "run" / "cache.sqlite").exists() or not pids.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        time.sleep(1.0)  # requests in flight
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in err
    assert [alive(int(pid)) for pid in pids.read_text().split()] == [False]


def test_vllm_command_line(tmp_path: Path) -> None:
    adapter = tmp_path / "finsight-qlora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 24, "base_model_name_or_path": "Qwen/Qwen2.5-7B"}))
    args = build_parser(EvalConfig, "t").parse_args([
        "--data", "x", "--out", "x", "--model", "Qwen/Qwen2.5-7B", "--adapter", str(adapter), "--backend", "vllm",
        "--seed", "7", "--tensor-parallel-size", "2", "--data-parallel-size", "2", "--max-model-len", "4096",
        "--server-args=--enforce-eager", "--vllm-bin", "vllm",
    ])  # fmt: skip
    config = load_config(args, EvalConfig, validate)
    specs = [ModelSpec("base", "Qwen/Qwen2.5-7B"), ModelSpec("tuned", "Qwen/Qwen2.5-7B", str(adapter))]
    assert vllm_command(config, specs, 8123) == [
        "vllm",
        "serve",
        "Qwen/Qwen2.5-7B",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--served-model-name",
        "base",
        "--seed",
        "7",
        "--generation-config",
        "vllm",
        "--tensor-parallel-size",
        "2",
        "--data-parallel-size",
        "2",
        "--max-model-len",
        "4096",
        "--enable-lora",
        "--max-lora-rank",
        "32",
        "--max-loras",
        "1",
        "--lora-modules",
        f"tuned={adapter}",
        "--enforce-eager",
    ]  # fmt: skip   (rank 24 -> 32, the next rank vLLM accepts)


def test_serve_sh_takes_its_vllm_lora_flags_from_the_eval_backend(tmp_path: Path) -> None:
    adapter = tmp_path / "my adapter"  # a space in the path: one flag or value per printed line
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 32}))
    command = [sys.executable, "-m", "eval.backends", f"fin={adapter}"]
    printed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert printed.splitlines() == ["--enable-lora", "--max-lora-rank", "32", "--max-loras", "1", "--lora-modules",
                                    f"fin={adapter}"]  # fmt: skip
    assert '-m eval.backends "$NAME=$ADAPTER"' in (ROOT / "scripts" / "serve.sh").read_text()
    missing = subprocess.run([*command[:3], f"fin={tmp_path / 'none'}"], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("error: adapter not found:")


def test_model_problems_are_one_line_before_serving(distilled: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "base_model_name_or_path": "Qwen/Qwen2.5-7B"}))
    base = ["--data", str(distilled["finsight"]), "--backend", "vllm", "--vllm-bin", str(tmp_path / "no-vllm"),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert run_eval(*base, "--model", "meta-llama/Llama-3.1-8B", "--adapter", str(adapter)) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: adapter {adapter} was trained on 'Qwen/Qwen2.5-7B', not on --model 'meta-llama/Llama-3.1-8B': "
        "pass the base model it was trained on"
    )
    assert run_eval(*base, "--model", "Qwen/Qwen2.5-7B", "--adapter", str(tmp_path / "nothing")) == 2
    assert "adapter not found" in capsys.readouterr().err
    assert run_eval(*base, "--model", "./my-model") == 2
    assert "model not found: ./my-model" in capsys.readouterr().err
    assert run_eval(*base, "--model", "Qwen/Qwen2.5-7B") == 2
    assert (
        capsys.readouterr().err.strip() == f"error: {tmp_path / 'no-vllm'} not found: create its environment with "
        "sh scripts/setup_env.sh vllm"
    )
    base[base.index("--vllm-bin") + 1] = sys.executable  # any program: a dry run starts nothing
    assert run_eval(*base, "--model", "Qwen/Qwen2.5-7B", "--adapter", str(adapter), "--dry-run") == 0
    printed = capsys.readouterr().out
    assert "requests: " in printed and "--enable-lora --max-lora-rank 8" in printed
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_an_openai_compatible_teacher_is_a_reference_with_the_same_settings(
    distilled: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-test-" + os.urandom(8).hex()  # made up per run, like a real key it must never be written
    monkeypatch.setenv("TEACHER_KEY", key)
    with FakeOpenAI(base_and_tuned, api_key=key, models=SERVED) as server:
        assert run_eval("--data", str(distilled["finsight"]), "--limit", "5", "--teacher", "openai",
                        "--teacher-base-url", server.base_url, "--teacher-model", "tuned", "--teacher-api-key-env",
                        "TEACHER_KEY", "--seed", "3", "--out", str(tmp_path)) == 0  # fmt: skip
        assert {(b["model"], b["temperature"], b["seed"]) for b in server.requests} == {("tuned", 0.0, 3)}
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["models"]) == ["teacher"] and results["models"]["teacher"]["answers"] == 5
    assert results["metrics"]["teacher"]["fields"]["sentiment"]["accuracy"] == 1.0
    written = "".join(
        p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.suffix in (".json", ".md", ".jsonl")
    )
    assert key not in written  # only the variable's name is recorded
