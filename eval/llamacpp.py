"""The CPU engine: llama.cpp's ``llama-server`` (built by ``make llamacpp``) serves GGUF models and LoRA adapters.

What it is given is turned into GGUF files first, with llama.cpp's own converters, once (kept in ``.cache/gguf/``
under a hash of what they were made from):

- ``--model``: a ``.gguf`` file; a folder made by ``scripts/get_model.py`` (the GGUF it was dequantised from is
  served: the weights are the same, the file is four times smaller and llama.cpp's fastest format); a folder holding
  one ``.gguf``; or any Hugging Face folder (``convert_hf_to_gguf.py``, f32).
- ``--adapter``: a ``.gguf`` LoRA adapter, or a PEFT folder (``convert_lora_to_gguf.py`` against its base).

Each model gets its own server process (``--parallel`` slots with continuous batching, ``--threads`` threads),
greedy and seeded like the other backends.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from data_gen.errors import ConfigError
from data_gen.provenance import fingerprint
from eval.config import ROOT, ModelOptions

GGUF_CACHE = ROOT / ".cache" / "gguf"
MODEL_STAMP = ".fin-distill-model.json"  # written by scripts/get_model.py
CONTEXT_PER_SLOT = 4096


def share(config: ModelOptions) -> Path:
    """llama.cpp's converters, installed beside the server by scripts/get_llamacpp.py."""
    return Path(config.llama_server).resolve().parent.parent / "share" / "llama.cpp"


def _convert(config: ModelOptions, script: str, source: Path, args: list[str], what: str) -> Path:
    """Run one of llama.cpp's converters (in the LLaMA-Factory environment: torch, transformers, gguf), once."""
    digest = hashlib.sha256(json.dumps([script, fingerprint(str(source)), args]).encode()).hexdigest()[:16]
    target = GGUF_CACHE / f"{source.name}-{digest}.gguf"
    if target.is_file():
        return target
    converter = share(config) / script
    if not converter.is_file():
        raise ConfigError(
            f"{converter} not found: build llama.cpp with make llamacpp (sh scripts/setup_env.sh llamacpp)"
        )
    GGUF_CACHE.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # the converters use their own gguf-py
    command = [config.converter_python, str(converter), *args, "--outfile", str(partial), str(source)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not partial.is_file():
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise ConfigError(f"cannot convert {what} {source} to GGUF with {script}: {last}")
    partial.replace(target)
    return target


def model_gguf(config: ModelOptions, model: str) -> Path:
    """The GGUF file that serves ``model`` (see the module docstring)."""
    path = Path(model)
    if path.is_file() and path.suffix == ".gguf":
        return path
    if not path.is_dir():
        raise ConfigError(f"--model {model}: the llamacpp backend serves a .gguf file or a model folder")
    stamp = path / MODEL_STAMP
    if stamp.is_file():
        original = path.parent / Path(json.loads(stamp.read_text())["member"]).name
        if original.is_file():
            return original
    inside = sorted(path.glob("*.gguf"))
    if len(inside) == 1:
        return inside[0]
    return _convert(config, "convert_hf_to_gguf.py", path, ["--outtype", "f32"], "the model")


def adapter_gguf(config: ModelOptions, adapter: str, model: str) -> Path:
    """The GGUF LoRA adapter for ``adapter`` (a .gguf file, or a PEFT folder converted against its base)."""
    path = Path(adapter)
    if path.is_file() and path.suffix == ".gguf":
        return path
    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path") or model
    if not (Path(base) / "config.json").is_file():
        raise ConfigError(f"--adapter {adapter}: its base {base} is not a local Hugging Face folder, which "
                          "convert_lora_to_gguf.py needs; give the adapter as .gguf")  # fmt: skip
    return _convert(config, "convert_lora_to_gguf.py", path, ["--base", str(base), "--outtype", "f32"], "the adapter")


def threads(config: ModelOptions) -> int:
    return config.threads or os.cpu_count() or 2


def command(config: ModelOptions, label: str, model: Path, adapter: Path | None, port: int) -> list[str]:
    """``llama-server`` for one model: 127.0.0.1, the label as its model name, greedy-ready, seeded."""
    argv = [
        config.llama_server, "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--alias", label,
        "--threads", str(threads(config)), "--parallel", str(config.parallel),
        "--ctx-size", str(CONTEXT_PER_SLOT * config.parallel), "--seed", str(config.seed), "--no-webui",
    ]  # fmt: skip
    if adapter is not None:
        argv += ["--lora", str(adapter)]
    return argv + list(config.server_args)


def identity(config: ModelOptions, model: Path, adapter: Path | None) -> dict[str, Any]:
    """What decides the answers: the files served, and the slots and threads (batching changes the arithmetic)."""
    found: dict[str, Any] = {"gguf": fingerprint(str(model)), "parallel": config.parallel, "threads": threads(config)}
    if adapter is not None:
        found["adapter_gguf"] = fingerprint(str(adapter))
    return found
