"""Backends: get every model under test behind an OpenAI-compatible endpoint, then get out of the way.

- ``vllm``: one ``vllm serve`` process serves the base model and the LoRA adapter (``--enable-lora
  --lora-modules``), with an explicit ``--generation-config vllm`` (the model's own generation_config.json would
  silently change sampling), the seed, and tensor / data parallel sizes from the config;
- ``llamacpp``: llama.cpp's ``llama-server`` per model, on GGUF files (the model's, and the LoRA adapter converted
  with llama.cpp's own ``convert_lora_to_gguf.py``): the fast CPU engine (``eval/llamacpp.py``);
- ``llamafactory``: ``llamafactory-cli api`` per model (Hugging Face ``generate``; CPU works);
- ``endpoint``: a server that is already running (a hosted teacher, or ``vllm serve`` started by the user); the
  adapter is then the name the server knows it by.

Started servers run in their own session on 127.0.0.1 and are stopped with everything they started when the
``with`` block ends: normally, on an error, or on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data_gen import redact
from data_gen.client.types import normalize_endpoint
from data_gen.errors import ConfigError, ServiceError
from data_gen.provenance import fingerprint
from eval import llamacpp
from eval.config import ModelOptions

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's LoRAConfig accepts only these max_lora_rank values


class ServerError(ServiceError):
    """A server that would not start, died or stopped answering; the message is one line plus its log's tail."""


@dataclass
class ModelSpec:
    """A model under test: ``label`` names it in reports (base, tuned)."""

    label: str
    model: str
    adapter: str | None = None


@dataclass
class Served:
    """A model reachable through the OpenAI API."""

    label: str
    base_url: str
    name: str  # the model name requests carry
    identity: dict[str, Any]  # what it is, for results.json and the cache
    process: ServerProcess | None = None
    api_key: str | None = None

    @property
    def cache_endpoint(self) -> str:
        """A stable stand-in for the URL in cache keys: a started server gets a new port every run, but the same
        model, adapter and settings give the same answers."""
        if self.process is None:
            return normalize_endpoint(self.base_url)
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:16]
        return f"{self.identity['backend']}://{digest}"


def model_specs(config: ModelOptions) -> list[ModelSpec]:
    """base (and tuned, when an adapter is given)."""
    if not config.model:
        return []
    specs = [ModelSpec("base", config.model)]
    if config.adapter:
        specs.append(ModelSpec("tuned", config.model, config.adapter))
    return specs


# ---------------------------------------------------------------- checks before anything starts
def adapter_config(path: str) -> dict[str, Any]:
    """The adapter's ``adapter_config.json``; ConfigError when the folder is not a PEFT adapter."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"adapter not found: {path} (train one first, e.g. sh scripts/train_qwen.sh)")
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise ConfigError(f"{path} has no adapter_config.json: not a LoRA adapter (a merged model goes in --model)")
    return json.loads(config_file.read_text(encoding="utf-8"))


def same_model(a: str, b: str) -> bool:
    """Two references to one base model: the same folder, or the same hub id / last path component."""
    if Path(a).exists() and Path(b).exists():
        return Path(a).resolve() == Path(b).resolve()
    return a.rstrip("/").split("/")[-1].casefold() == b.rstrip("/").split("/")[-1].casefold()


def check_models(config: ModelOptions) -> None:
    """One line for a missing model folder or an adapter trained on another base, before serving anything."""
    if config.resolved_backend() == "endpoint":
        return
    model = config.model or ""
    if model and not Path(model).exists() and not re.fullmatch(r"\w[\w.-]*/[\w.-]+", model):
        raise ConfigError(f"model not found: {model} (neither a folder nor a hub id like Qwen/Qwen2.5-7B-Instruct)")
    if config.adapter:
        trained_on = adapter_config(config.adapter).get("base_model_name_or_path") or ""
        if trained_on and not same_model(trained_on, model):
            raise ConfigError(
                f"adapter {config.adapter} was trained on {trained_on!r}, not on --model {model!r}: "
                "pass the base model it was trained on"
            )
    if model:
        backend = config.resolved_backend()
        program = {"vllm": config.vllm_bin, "llamacpp": config.llama_server}.get(backend, config.llamafactory_cli)
        if shutil.which(program) is None:
            raise ConfigError(f"{program} not found: create its environment with sh scripts/setup_env.sh {backend}")


# ---------------------------------------------------------------- server processes
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """A server started in its own session with output to ``log``."""

    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as handle:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **self.env},
                    start_new_session=True,  # Ctrl-C reaches us, not it: we stop it, with all its children
                )
            except FileNotFoundError:
                raise ServerError(f"cannot start {self.argv[0]}: not found (see scripts/setup_env.sh)") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def died(self, what: str) -> ServerError:
        code = self.proc.returncode if self.proc is not None else None
        return ServerError(f"{what} (exit status {code}); its log is {self.log}; last lines:\n{self.tail()}")

    def wait_ready(self, base_url: str, timeout: float, api_key: str | None = None) -> None:
        """Poll ``GET /models`` until it answers; a server that exits or never answers is a ServerError."""
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        while True:
            if not self.alive():
                raise self.died(f"{Path(self.argv[0]).name} exited before it was ready")
            with contextlib.suppress(OSError):
                request = urllib.request.Request(base_url + "/models", headers=headers)
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{Path(self.argv[0]).name} did not answer within {timeout:.0f} s (raise --startup-timeout); "
                    f"its log is {self.log}; last lines:\n{self.tail()}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            stop_session(self.proc)


def stop_session(proc: subprocess.Popen[Any]) -> None:
    """Stop a process started in its own session, with everything it started: SIGTERM to the whole session,
    SIGKILL after 20 s, then SIGKILL to whatever its children left behind."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- commands
def vllm_command(config: ModelOptions, specs: list[ModelSpec], port: int) -> list[str]:
    """``vllm serve`` for the base model and every adapter of ``specs`` (served under their labels)."""
    base = specs[0]
    argv = [
        config.vllm_bin,
        "serve",
        base.model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        base.label,
        "--seed",
        str(config.seed),
        "--generation-config",
        "vllm",
        "--tensor-parallel-size",
        str(config.tensor_parallel_size),
        "--data-parallel-size",
        str(config.data_parallel_size),
    ]
    if config.max_model_len:
        argv += ["--max-model-len", str(config.max_model_len)]
    if config.gpu_memory_utilization:
        argv += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    adapters = {spec.label: spec.adapter for spec in specs if spec.adapter}
    return argv + vllm_lora_args(adapters, config.max_lora_rank) + list(config.server_args)


def vllm_lora_args(adapters: dict[str, str], max_rank: int | None = None) -> list[str]:
    """``vllm serve`` flags for LoRA modules (name -> adapter folder): the smallest rank vLLM accepts that holds
    every adapter's ``r``, unless ``max_rank`` is given. ``scripts/serve.sh`` prints them with ``python -m
    eval.backends NAME=ADAPTER``."""
    if not adapters:
        return []
    needed = max(int(adapter_config(path).get("r", 16)) for path in adapters.values())
    rank = max_rank or next((r for r in VLLM_LORA_RANKS if r >= needed), needed)
    modules = [f"{name}={path}" for name, path in adapters.items()]
    return [
        "--enable-lora",
        "--max-lora-rank",
        str(rank),
        "--max-loras",
        str(len(adapters)),
        "--lora-modules",
        *modules,
    ]


def llamafactory_config(config: ModelOptions, spec: ModelSpec) -> dict[str, Any]:
    """The YAML that ``llamafactory-cli api`` reads for one model."""
    settings: dict[str, Any] = {
        "model_name_or_path": spec.model,
        "infer_backend": "huggingface",
        "trust_remote_code": True,
    }
    if config.template:
        settings["template"] = config.template
    if spec.adapter:
        settings.update(adapter_name_or_path=spec.adapter, finetuning_type="lora")
    return settings


def groups(config: ModelOptions) -> list[list[ModelSpec]]:
    """Models served together: vLLM serves base and adapter from one process; LLaMA-Factory serves one model
    per process (one at a time: a CPU has room for one)."""
    specs = model_specs(config)
    if not specs:
        return []
    return [[spec] for spec in specs] if config.resolved_backend() in ("llamafactory", "llamacpp") else [specs]


def identity(config: ModelOptions, spec: ModelSpec, backend: str) -> dict[str, Any]:
    found: dict[str, Any] = {"backend": backend, "model": spec.model}
    if backend == "endpoint":
        found.update(endpoint=normalize_endpoint(config.endpoint or ""), served_name=spec.adapter or spec.model)
        return found
    found["model_files"] = fingerprint(spec.model)
    if spec.adapter:
        found["adapter"] = spec.adapter
        found["adapter_files"] = fingerprint(spec.adapter)
    if backend == "llamafactory":
        found["template"] = config.template
    if backend in ("vllm", "llamacpp"):
        found.update(seed=config.seed, max_model_len=config.max_model_len, server_args=list(config.server_args))
    return found


@contextlib.contextmanager
def serve(config: ModelOptions, specs: list[ModelSpec], workdir: Path) -> Iterator[list[Served]]:
    """Start what ``specs`` need (nothing for an endpoint), yield them as Served, stop on the way out."""
    backend = config.resolved_backend()
    if backend == "endpoint":
        api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        redact.register(api_key)
        if config.api_key_env and not api_key:
            raise ConfigError(f"the API key variable {config.api_key_env} is not set")
        yield [
            Served(s.label, config.endpoint or "", s.adapter or s.model, identity(config, s, backend), None, api_key)
            for s in specs
        ]
        return
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    files: dict[str, dict[str, Any]] = {}  # llamacpp: the GGUF files served, which decide the answers
    if backend == "vllm":
        process = ServerProcess(vllm_command(config, specs, port), workdir / "vllm.log")
        names = {s.label: s.label for s in specs}
    elif backend == "llamacpp":
        spec = specs[0]
        gguf = llamacpp.model_gguf(config, spec.model)
        lora = llamacpp.adapter_gguf(config, spec.adapter, spec.model) if spec.adapter else None
        argv = llamacpp.command(config, spec.label, gguf, lora, port)
        process = ServerProcess(argv, workdir / f"llamacpp_{spec.label}.log")
        names = {spec.label: spec.label}
        files = {spec.label: llamacpp.identity(config, gguf, lora)}
    else:
        spec = specs[0]
        api_yaml = workdir / f"llamafactory_{spec.label}.yaml"
        api_yaml.parent.mkdir(parents=True, exist_ok=True)
        api_yaml.write_text(yaml.safe_dump(llamafactory_config(config, spec), sort_keys=False))
        env = {"API_HOST": "127.0.0.1", "API_PORT": str(port), "API_MODEL_NAME": spec.label}
        process = ServerProcess(
            [config.llamafactory_cli, "api", str(api_yaml)], workdir / f"llamafactory_{spec.label}.log", env
        )
        names = {spec.label: spec.label}
    try:
        process.start()
        process.wait_ready(base_url, config.startup_timeout)
        yield [Served(s.label, base_url, names[s.label], {**identity(config, s, backend), **files.get(s.label, {})},
                      process) for s in specs]  # fmt: skip
    finally:
        process.stop()


if __name__ == "__main__":  # python -m eval.backends NAME=ADAPTER ...: the vLLM LoRA flags, one per line
    import sys

    try:
        flags = vllm_lora_args(dict(arg.split("=", 1) for arg in sys.argv[1:]))
    except (ConfigError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    print("\n".join(flags))
