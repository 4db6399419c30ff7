"""Shared fixtures: the repository paths, an in-process `distill` runner, the LLaMA-Factory environment,
a tiny locally built model, and a real `llamafactory-cli api` server on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eval.backends import free_port, stop_session

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "datasets" / "samples"
LF_ENV = ROOT / ".venvs" / "llamafactory"
LF_PYTHON = LF_ENV / "bin" / "python"
LF_CLI = LF_ENV / "bin" / "llamafactory-cli"
REQUIRE_ENGINES = os.environ.get("FIN_DISTILL_REQUIRE_ENGINES") == "1"
MODEL = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct"  # make model
LLAMA_SERVER = ROOT / ".venvs" / "llamacpp" / "bin" / "llama-server"  # make llamacpp
RECIPE = "recipes/llamafactory/smollm2-135m-instruct_finsight_lora.yaml"
# Offline, quiet engines: no hub, no telemetry, no version check.
ENGINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DISABLE_VERSION_CHECK": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "CUDA_VISIBLE_DEVICES": "",
    "WANDB_DISABLED": "true",
}


@dataclass
class Run:
    code: int
    out: str
    err: str
    out_dir: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.out_dir / "manifest.json").read_text())

    def jsonl(self, name: str) -> list[dict[str, Any]]:
        path = self.out_dir / name
        return [json.loads(line) for line in path.read_text().split("\n") if line] if path.exists() else []


@pytest.fixture
def distill(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    """Run `python -m data_gen.distill ARGS` in-process; `--out` defaults to a fresh temporary folder."""
    from data_gen.distill import main

    def run(*args: str, out: Path | None = None) -> Run:
        out_dir = out or tmp_path / "out"
        argv = [*args, "--no-progress"]
        if "--out" in args:
            out_dir = Path(args[args.index("--out") + 1])
        elif "--dry-run" not in args:
            argv += ["--out", str(out_dir)]
        code = main(argv)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err, out_dir)

    return run


def need_engine(engine: str = "llamafactory") -> None:
    """Skip (or, under `make test`, fail) when an engine's environment (llamafactory, axolotl) is missing."""
    cli = ROOT / ".venvs" / engine / "bin" / ("llamafactory-cli" if engine == "llamafactory" else engine)
    if cli.exists():
        return
    message = f"the {engine} environment is missing: run `make env-{engine}` (or `make test`)"
    if REQUIRE_ENGINES:
        pytest.fail(message)
    pytest.skip(message)


def engine_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **ENGINE_ENV, **extra}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-architecture chat model, built locally (never downloaded)."""
    need_engine()
    out = tmp_path_factory.mktemp("models") / "tiny-qwen2"
    subprocess.run(
        [str(LF_PYTHON), str(ROOT / "scripts" / "build_tiny_model.py"), "--arch", "qwen2", "--out", str(out)],
        check=True,
        env=engine_env(),
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture(scope="session")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """finsight and qa training files written by the offline pipeline from the shipped samples, one dataset_dir
    each (what `make demo` writes to datasets/finsight and datasets/finqa)."""
    need_engine()
    from data_gen.distill import main

    outs = {}
    for task, sample, extra in (
        ("finsight", "news.csv", ["--label-column", "label"]),
        ("qa", "questions.jsonl", ["--text-column", "question"]),
    ):
        out = tmp_path_factory.mktemp(task)
        argv = ["--input", str(SAMPLES / sample), "--task", task, "--id-column", "id", *extra, "--out", str(out)]
        assert main([*argv, "--no-progress"]) == 0
        outs[task] = out
    return outs


def need_real_model() -> None:
    """Skip (or, under `make test`, fail) without the real SmolLM2-135M-Instruct or llama.cpp's server."""
    checked = subprocess.run([sys.executable, str(ROOT / "scripts" / "get_model.py"), "--check"], capture_output=True)
    missing = [what for what, ok in (("make model", checked.returncode == 0), ("make llamacpp",
               LLAMA_SERVER.exists())) if not ok]  # fmt: skip
    if missing:
        message = f"the real model or the CPU engine is missing: run {' and '.join(missing)} (or make test)"
        pytest.fail(message) if REQUIRE_ENGINES else pytest.skip(message)


@pytest.fixture(scope="session")
def adapter(distilled: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six LoRA steps of the SmolLM2 recipe on the distilled samples: enough to move the answers."""
    need_engine()
    need_real_model()
    out = tmp_path_factory.mktemp("smollm2") / "lora"
    result = subprocess.run(
        ["sh", "scripts/train.sh", "llamafactory", RECIPE, f"dataset_dir={distilled['finsight']}", f"output_dir={out}",
         "max_steps=6", "logging_steps=1", "warmup_ratio=0"],
        cwd=ROOT, env=engine_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


stop_process = stop_session  # tests stop what they start exactly as eval.run does


def wait_until_answers(url: str, proc: subprocess.Popen[bytes], log: Path, what: str,
                       headers: dict[str, str] | None = None, timeout: float = 180.0) -> None:  # fmt: skip
    """Poll ``GET url`` until it answers 200; fail with the log's tail if ``proc`` exits, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def start_in_session(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a long-running command (a server) in its own session from the repository root, output to ``log``;
    stop it with ``stop_process``."""
    with log.open("wb") as handle:
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)  # fmt: skip


def recipe_module() -> Any:
    """scripts/recipe.py, the launchers' composition of recipe + smoke + overrides, as a module."""
    spec = importlib.util.spec_from_file_location("recipe", ROOT / "scripts" / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Server:
    base_url: str
    api_key: str
    log: Path
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def lf_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`llamafactory-cli api` serving the tiny model on 127.0.0.1 with an API key; stopped after the module."""
    work = tmp_path_factory.mktemp("lf_api")
    config = work / "api.yaml"
    config.write_text(f"model_name_or_path: {tiny_model}\ntemplate: qwen\ninfer_backend: huggingface\n")
    port = free_port()
    api_key = "sk-test-" + os.urandom(8).hex()
    log = work / "server.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [str(LF_CLI), "api", str(config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=engine_env(API_HOST="127.0.0.1", API_PORT=str(port), API_KEY=api_key),
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_answers(
            base_url + "/models", proc, log, "llamafactory-cli api", {"Authorization": f"Bearer {api_key}"}
        )
        yield Server(base_url, api_key, log, proc)
    finally:
        stop_process(proc)


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a real key from the developer's shell."""
    for name in ("OPENAI_API_KEY", "DEEPSEEK_API_KEY"):
        monkeypatch.delenv(name, raising=False)
