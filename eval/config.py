"""Evaluation run configuration: one dataclass, loaded from YAML and overridden by flags (as in ``data_gen``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_gen.errors import ConfigError
from data_gen.options import check_finite, check_key_variable, option
from data_gen.sources.options import SourceOptions

BACKENDS = ("auto", "vllm", "llamacpp", "llamafactory", "endpoint")
CONSTRAINED = ("none", "json_schema", "structured_outputs", "guided_json")
ROOT = Path(__file__).resolve().parents[1]


def _engine_bin(env: str, name: str) -> str:
    """The engine environment's executable when ``scripts/setup_env.sh`` made one, else the name on PATH."""
    local = ROOT / ".venvs" / env / "bin" / name
    return str(local) if local.exists() else name


@dataclass
class ModelOptions:
    """The models to ask and how: the task, the served models and their engines, a reference teacher, generation.
    Shared by ``eval.run`` and ``eval.chat``. Secrets are never stored: only the *names* of key variables."""

    task: str = option("finsight", "task name (data_gen/tasks/) or task folder", group="models")
    backend: str = option("auto", "vllm, llamacpp, llamafactory or endpoint; auto: endpoint if --endpoint",
                          metavar="NAME", choices=list(BACKENDS))  # fmt: skip
    model: str | None = option(None, "base model: a hub id or folder, or its name on the --endpoint", metavar="NAME")
    adapter: str | None = option(None, "LoRA adapter folder, or its name on the --endpoint", metavar="PATH")
    endpoint: str | None = option(None, "a running OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
                                  metavar="URL")  # fmt: skip
    api_key_env: str | None = option(None, "NAME of the variable with the --endpoint's key", metavar="VAR")
    template: str | None = option(None, "llamafactory: chat template (default: the tokenizer's)", metavar="NAME")
    prompt: str = option("auto", "system prompt for base and tuned: student, teacher or auto (as trained)",
                         metavar="WHICH", choices=["auto", "student", "teacher"])  # fmt: skip

    # a reference teacher
    teacher: str | None = option(None, "also evaluate a teacher: rules or openai", group="teacher reference",
                                 metavar="KIND", choices=["rules", "openai"])  # fmt: skip
    teacher_base_url: str | None = option(None, "the teacher's API base URL", metavar="URL")
    teacher_model: str | None = option(None, "teacher model name as its API knows it", metavar="NAME")
    teacher_api_key_env: str | None = option("OPENAI_API_KEY", "NAME of the variable with the teacher's key",
                                             metavar="VAR")  # fmt: skip

    # generation (recorded in results.json)
    temperature: float = option(0.0, "sampling temperature (0: greedy)", group="generation")
    top_p: float | None = option(None, "nucleus sampling (omitted when unset)")
    max_tokens: int | None = option(None, "completion limit per request (default: the task's)")
    seed: int = option(0, "sampling seed, sent with every request")
    constrained: str = option("none", "send the JSON Schema as json_schema, structured_outputs or guided_json",
                              metavar="HOW", choices=list(CONSTRAINED))  # fmt: skip
    logprobs: int = option(0, "ask for top-K log-probabilities and report calibration; 0: off")
    concurrency: int = option(8, "requests in flight per model")
    timeout: float = option(300.0, "seconds before a request times out")
    max_retries: int = option(2, "retries on 429 / 5xx / timeouts / dropped connections")

    # the engines
    vllm_bin: str = option(_engine_bin("vllm", "vllm"), "the vllm executable", group="engines", metavar="PATH")
    llamafactory_cli: str = option(_engine_bin("llamafactory", "llamafactory-cli"), "the llamafactory-cli executable",
                                   metavar="PATH")  # fmt: skip
    llama_server: str = option(_engine_bin("llamacpp", "llama-server"), "llama.cpp's server (make llamacpp)",
                               metavar="PATH")  # fmt: skip
    converter_python: str = option(_engine_bin("llamafactory", "python"), "llamacpp: Python for the GGUF converters",
                                   metavar="PATH")  # fmt: skip
    parallel: int = option(4, "llamacpp: requests decoded together (server slots)")
    threads: int | None = option(None, "llamacpp: CPU threads (default: all cores)")
    tensor_parallel_size: int = option(1, "vllm: GPUs per model replica")
    data_parallel_size: int = option(1, "vllm: model replicas")
    max_model_len: int | None = option(None, "vllm: context length (default: the model's)")
    gpu_memory_utilization: float | None = option(None, "vllm: share of GPU memory (default: vLLM's 0.9)")
    max_lora_rank: int | None = option(None, "vllm: largest LoRA rank (default: the adapter's)")
    server_args: list[str] = option([], "extra server arguments, e.g. --server-args=--enforce-eager")
    startup_timeout: float = option(900.0, "seconds to wait for a started server")

    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        return "endpoint" if self.endpoint else "vllm"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EvalConfig(ModelOptions, SourceOptions):
    """Everything an evaluation run needs: the models (``ModelOptions``), the test data and the outputs."""

    # what to evaluate on (the input section, after SourceOptions' options)
    data: str | None = option(None, "test data: a data_gen output folder, an FPB .txt, or a table file",
                              group="input", metavar="PATH")  # fmt: skip
    split: str = option("test", "split of a data_gen output folder to evaluate on", metavar="NAME")
    reference: str = option("teacher", "compare with the teacher's answers (teacher) or gold labels (gold)",
                            metavar="WHICH", choices=["teacher", "gold"])  # fmt: skip
    train_data: str | None = option(None, "training data to find test texts in (default: --data's; none: skip)",
                                    metavar="PATH")  # fmt: skip

    # statistics and outputs
    bootstrap: int = option(1000, "bootstrap resamples for the 95% intervals", group="output")
    examples: int = option(10, "examples in report.md where two models disagree")
    out: str | None = option(None, "output folder: new, empty, or an earlier one to resume", metavar="DIR")
    overwrite: bool = option(False, "replace an eval.run output of another task or data in --out")
    cache: bool = option(True, "store answers in <out>/cache.sqlite; a rerun asks only what is missing")
    dry_run: bool = option(False, "check data and models, print what would run; start nothing")
    progress: bool = option(True, "progress bar")


def validate(config: EvalConfig) -> None:
    """Cross-field checks, each a one-line ConfigError before anything starts."""
    if not config.data:
        raise ConfigError("no test data: pass --data PATH (or set `data:` in the --config file)")
    if not config.out and not config.dry_run:
        raise ConfigError("no output directory: pass --out DIR (or set `out:` in the --config file)")
    if not config.model and not config.teacher:
        raise ConfigError("nothing to evaluate: pass --model (and --adapter), or --teacher")
    if config.train_data not in (None, "none") and not Path(config.train_data).exists():
        raise ConfigError(f"--train-data: not found: {config.train_data}")
    if config.bootstrap < 1:
        raise ConfigError("--bootstrap must be at least 1")
    validate_models(config)


def validate_models(config: ModelOptions) -> None:
    """The checks of the models, engines and generation settings (eval.run and eval.chat)."""
    check_finite(config)
    check_key_variable("--api-key-env", config.api_key_env)
    check_key_variable("--teacher-api-key-env", config.teacher_api_key_env)
    backend = config.resolved_backend()
    if config.adapter and not config.model:
        raise ConfigError("--adapter needs --model, the base model it was trained on")
    if backend == "endpoint" and config.model and not config.endpoint:
        raise ConfigError("--backend endpoint needs --endpoint URL (e.g. http://127.0.0.1:8000/v1)")
    if backend != "endpoint" and config.endpoint:
        raise ConfigError(f"--endpoint is for --backend endpoint; --backend {backend} starts its own server")
    if config.teacher == "openai" and not (config.teacher_base_url and config.teacher_model):
        raise ConfigError("--teacher openai needs --teacher-base-url and --teacher-model")
    if config.max_tokens is not None and config.max_tokens < 1:
        raise ConfigError("--max-tokens must be at least 1")
    if not 0 <= config.logprobs <= 20:
        raise ConfigError("--logprobs must be between 0 (off) and 20 (the OpenAI API's limit)")
    for name in ("concurrency", "tensor_parallel_size", "data_parallel_size", "parallel"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if config.threads is not None and config.threads < 1:
        raise ConfigError("--threads must be at least 1 (leave it out for all cores)")
    if config.temperature < 0:
        raise ConfigError("--temperature must be 0 or more")
    for name in ("timeout", "startup_timeout"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")
    if config.max_retries < 0:
        raise ConfigError("--max-retries must be 0 or more")
