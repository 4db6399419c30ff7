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
class EvalConfig(SourceOptions):
    """Everything an evaluation run needs. Secrets are never stored: only the *names* of key variables."""

    # --- what to evaluate on ---
    task: str = option("finsight", "task name (a folder in data_gen/tasks/) or a path to a task folder")
    data: str | None = option(
        None,
        "test data: a data_gen output directory (its --split is read), an FPB .txt, or a CSV / TSV / JSONL / JSON / "
        "Parquet file or saved dataset with --text-column and --label-column",
    )
    split: str = option("test", "split of a data_gen output directory to evaluate on")
    reference: str = option(
        "teacher",
        "for a data_gen output directory: score against the teacher's answers (teacher) or the input's gold labels "
        "(gold)",
        choices=["teacher", "gold"],
    )
    train_data: str | None = option(
        None,
        "training data to look for the test texts in (exact and near duplicates): a data_gen output directory (its "
        "train and validation splits) or a file; default: the --data directory itself when it is a data_gen "
        "output; none: no check",
    )

    # --- the models ---
    backend: str = option(
        "auto",
        "vllm (starts `vllm serve`, a GPU), llamacpp (starts llama.cpp's `llama-server`: the fast CPU engine, GGUF), "
        "llamafactory (starts `llamafactory-cli api`, Hugging Face generate) or endpoint (a server that is already "
        "running); auto: endpoint when --endpoint is given, else vllm",
        choices=list(BACKENDS),
    )
    model: str | None = option(
        None, "base model: a Hugging Face id or folder (vllm, llamafactory) or the name the --endpoint serves it as"
    )
    adapter: str | None = option(
        None,
        "LoRA adapter folder (vllm, llamafactory) or the name the --endpoint serves it as; with --model, base and "
        "fine-tuned are both evaluated on the same prompts",
    )
    endpoint: str | None = option(None, "base URL of a running OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = option(None, "NAME of the environment variable holding the --endpoint's API key")
    template: str | None = option(
        None, "LLaMA-Factory chat template (qwen, llama3, ...); default: the tokenizer's own chat template"
    )
    teacher: str | None = option(
        None,
        "also evaluate a teacher as a reference: rules (the offline baseline) or openai (--teacher-base-url, "
        "--teacher-model, --teacher-api-key-env)",
        choices=["rules", "openai"],
    )
    teacher_base_url: str | None = option(None, "base URL of the teacher's OpenAI-compatible API")
    teacher_model: str | None = option(None, "teacher model name as its API knows it")
    teacher_api_key_env: str | None = option(
        "OPENAI_API_KEY", "NAME of the environment variable with the teacher's key"
    )

    # --- generation (recorded in results.json) ---
    prompt: str = option(
        "auto",
        "the system prompt base and fine-tuned models are asked with: student (the task's short prompt), teacher "
        "(the teacher's full prompt), or auto: what the training files of a data_gen --data folder carry, else "
        "student. The teacher is always asked with its own",
        choices=["auto", "student", "teacher"],
    )
    temperature: float = option(0.0, "sampling temperature (0: greedy)")
    top_p: float | None = option(None, "nucleus sampling; omitted from requests when unset")
    max_tokens: int | None = option(None, "completion token limit per request (default: the task's limit)")
    seed: int = option(0, "sampling seed, sent with every request and given to vllm serve")
    constrained: str = option(
        "none",
        "send the task's JSON Schema as a constraint: json_schema (OpenAI response_format, also vLLM), "
        "structured_outputs (vLLM >= 0.10 extra field), guided_json (older vLLM); answers are validated either way",
        choices=list(CONSTRAINED),
    )
    logprobs: int = option(
        0,
        "ask the served models for their top-K log-probabilities per token (OpenAI logprobs / top_logprobs, as vLLM "
        "returns them) and report how well calibrated each model's label is: ECE and a reliability plot; 0: off",
    )
    concurrency: int = option(8, "requests in flight per model")
    timeout: float = option(300.0, "seconds before one request times out")
    max_retries: int = option(2, "retries of a request on 429 / 5xx / timeouts / dropped connections")

    # --- servers ---
    vllm_bin: str = option(_engine_bin("vllm", "vllm"), "the vllm executable")
    llamafactory_cli: str = option(_engine_bin("llamafactory", "llamafactory-cli"), "the llamafactory-cli executable")
    llama_server: str = option(_engine_bin("llamacpp", "llama-server"), "llama.cpp's server executable (make llamacpp)")
    converter_python: str = option(
        _engine_bin("llamafactory", "python"),
        "llamacpp: the Python (with torch, transformers, gguf) that runs llama.cpp's GGUF converters",
    )
    parallel: int = option(4, "llamacpp: requests decoded together (server slots, continuous batching)")
    threads: int | None = option(None, "llamacpp: CPU threads (default: all cores)")
    tensor_parallel_size: int = option(1, "vllm: GPUs per model replica")
    data_parallel_size: int = option(1, "vllm: model replicas")
    max_model_len: int | None = option(None, "vllm: context length (default: the model's)")
    gpu_memory_utilization: float | None = option(None, "vllm: share of GPU memory to use (default: vLLM's 0.9)")
    max_lora_rank: int | None = option(None, "vllm: largest LoRA rank to serve (default: the adapter's rank)")
    server_args: list[str] = option(
        [],
        "extra arguments for the server command, comma-separated, e.g. --server-args=--enforce-eager,--max-num-seqs,64",
    )
    startup_timeout: float = option(900.0, "seconds to wait for a started server to answer")

    # --- statistics and outputs ---
    bootstrap: int = option(1000, "bootstrap resamples for the 95% confidence intervals")
    examples: int = option(10, "before / after examples in report.md where two models disagree")
    out: str | None = option(
        None,
        "output directory: results.json, predictions.jsonl, report.md, plots; new, empty, or an earlier evaluation "
        "of the same task and data (which the run resumes)",
    )
    overwrite: bool = option(
        False,
        "replace an eval.run output of another task or data in --out (its stored answers are kept; files eval.run "
        "did not write are never touched)",
    )
    cache: bool = option(True, "store every answer in <out>/cache.sqlite; a rerun asks only what is missing")
    dry_run: bool = option(False, "check the data and models, print what would run, then stop")
    progress: bool = option(True, "show a progress bar")

    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        return "endpoint" if self.endpoint else "vllm"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate(config: EvalConfig) -> None:
    """Cross-field checks, each a one-line ConfigError before anything starts."""
    check_finite(config)
    check_key_variable("--api-key-env", config.api_key_env)
    check_key_variable("--teacher-api-key-env", config.teacher_api_key_env)
    if not config.data:
        raise ConfigError("no test data: pass --data PATH (or set `data:` in the --config file)")
    if not config.out and not config.dry_run:
        raise ConfigError("no output directory: pass --out DIR (or set `out:` in the --config file)")
    backend = config.resolved_backend()
    if not config.model and not config.teacher:
        raise ConfigError("nothing to evaluate: pass --model (and --adapter), or --teacher")
    if config.adapter and not config.model:
        raise ConfigError("--adapter needs --model, the base model it was trained on")
    if backend == "endpoint" and config.model and not config.endpoint:
        raise ConfigError("--backend endpoint needs --endpoint URL (e.g. http://127.0.0.1:8000/v1)")
    if backend != "endpoint" and config.endpoint:
        raise ConfigError(f"--endpoint is for --backend endpoint; --backend {backend} starts its own server")
    if config.teacher == "openai" and not (config.teacher_base_url and config.teacher_model):
        raise ConfigError("--teacher openai needs --teacher-base-url and --teacher-model")
    if config.train_data not in (None, "none") and not Path(config.train_data).exists():
        raise ConfigError(f"--train-data: not found: {config.train_data}")
    if config.max_tokens is not None and config.max_tokens < 1:
        raise ConfigError("--max-tokens must be at least 1")
    if not 0 <= config.logprobs <= 20:
        raise ConfigError("--logprobs must be between 0 (off) and 20 (the OpenAI API's limit)")
    for name in ("concurrency", "bootstrap", "tensor_parallel_size", "data_parallel_size", "parallel"):
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
