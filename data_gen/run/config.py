"""A distillation run's configuration: one dataclass (every field a YAML key and a ``--flag``), and the cross-field
checks argparse cannot express."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_gen.errors import ConfigError
from data_gen.options import check_finite, check_key_variable, option, show
from data_gen.sources.options import SourceOptions
from data_gen.teachers import TeacherSpec


@dataclass
class DistillConfig(SourceOptions):
    """Everything a distillation run needs. Secrets are never stored here: only the *name* of the key variable."""

    # --- what to distil ---
    task: str = option("finsight", "task name (a folder in data_gen/tasks/) or a path to a task folder")
    input: str | None = option(None, "input file or directory (CSV, TSV, JSONL, JSON, Parquet, FPB .txt, datasets dir)")

    # --- the teacher ---
    teacher: str = option(
        "rules",
        "rules (offline, deterministic baseline), openai (any OpenAI-compatible API) or local (a Hugging Face "
        "model folder given as --model, run in process on CPU or GPU)",
        choices=["rules", "openai", "local"],
    )
    base_url: str | None = option(None, "base URL of the OpenAI-compatible API, e.g. https://api.deepseek.com/v1")
    model: str | None = option(None, "teacher model name as the API knows it (--teacher local: the model folder)")
    api_key_env: str | None = option(
        "OPENAI_API_KEY",
        "NAME of the environment variable holding the API key "
        "(empty for keyless local servers); the key itself is never printed or stored",
    )
    concurrency: int = option(16, "requests in flight at most (adaptive concurrency moves below it)")
    adaptive_concurrency: bool = option(
        True,
        "per round of requests: halve the requests in flight when a fifth of them hit 429 / 5xx / timeouts or "
        "latency climbs 4x, else add one",
    )
    rpm: float | None = option(None, "requests per minute, never exceeded in any rolling minute (all attempts count)")
    tpm: float | None = option(None, "tokens per minute (prompt estimate + completion limit, corrected by usage)")
    timeout: float = option(120.0, "seconds before one request times out (then it is retried)")
    max_retries: int = option(6, "retries of one request on 408/409/429/5xx, timeouts and dropped connections")
    max_reasks: int = option(2, "times an answer that fails validation is re-asked, with the error, before rejection")
    temperature: float | None = option(None, "sampling temperature (default: the task's)")
    max_completion_tokens: int | None = option(
        None,
        "completion token limit per request, sent as max_tokens (default: the task's); a reply cut by it is "
        "asked once more with twice the limit, then rejected as truncated",
    )
    top_p: float | None = option(None, "nucleus sampling; omitted from the request when unset")
    seed: int | None = option(None, "sampling seed sent to the API when set")
    prices: str = option("data_gen/configs/prices.yaml", "price table (USD per million tokens) used for cost estimates")
    max_cost: float | None = option(
        None,
        "budget in USD over every call this output directory has made (retries and re-asks included); the run "
        "stops before a request that could exceed it, and a later run with a higher cap resumes",
    )
    max_tokens: int | None = option(None, "budget in tokens (prompt + completion), counted like --max-cost")
    tokenizer: str | None = option(
        None,
        "the teacher's tokenizer (a tokenizer.json file or a model folder): counts prompt tokens for reservations "
        "and the tokens of answers whose server reports no usage exactly; default: a conservative estimate (a "
        "token per 3 ASCII characters, one per other character)",
    )

    # --- checks ---
    require_gold_agreement: bool = option(False, "keep only examples whose answer agrees with the gold label")
    dedup: bool = option(True, "drop exact and near-duplicate texts before asking the teacher")
    near_dup_threshold: float = option(0.85, "estimated Jaccard similarity above which two texts are near-duplicates")
    decontaminate: list[str] = option(
        [],
        "evaluation sets the student will be tested on (files read with the same --text-column, or data_gen output "
        "directories: their test split); input rows equal or near-equal to one of their texts are rejected as "
        "contaminated before anything is asked",
    )

    # --- logit distillation ---
    kd_top_k: int = option(
        0,
        "also write kd_<split>.jsonl for Axolotl's KD trainer: the top-k next-token log-probabilities of the "
        "--kd-teacher at every position of each training reply (0: off)",
    )
    kd_teacher: str | None = option(
        None,
        "the model whose log-probabilities are distilled, of the student's family: a Hugging Face folder run in "
        "process, or the base URL of a `vllm serve` (http://HOST:8000/v1). Default: the teacher itself (--teacher "
        "local, or the --teacher openai server, which must then be vllm serve). The replies may come from any "
        "teacher: this one scores them",
    )
    kd_model: str | None = option(
        None,
        "the model name the --kd-teacher server serves (default: --model on the teacher's own server, else the "
        "first model the server lists)",
    )
    student_tokenizer: str | None = option(
        None,
        "the student's tokenizer (a model or tokenizer folder): logit distillation is refused unless the teacher "
        "tokenizes exactly like it (default for a teacher run in process: its own, i.e. a same-family student; "
        "required for a served teacher, whose tokenizer is checked through its /tokenize)",
    )
    min_label_confidence: float = option(
        0.0,
        "with --kd-top-k: reject examples whose teacher probability for their own label (renormalised over the "
        "classes) is below this, as low_confidence",
    )

    # --- outputs ---
    out: str | None = option(
        None,
        "output directory: new, empty, or an earlier output of the same task and input (which the run resumes)",
    )
    overwrite: bool = option(
        False,
        "replace a data_gen output of another task or input in --out (its stored teacher answers are kept; files "
        "data_gen did not write are never touched)",
    )
    name: str | None = option(None, "dataset name used in dataset_info.json (default: the task name)")
    formats: list[str] = option(
        ["sharegpt", "alpaca"], "training file formats to write", choices=["sharegpt", "alpaca"]
    )
    training_prompt: str = option(
        "student",
        "the system prompt in the training files (ShareGPT, Alpaca, KD rows): student (the task's short prompt, the "
        "output contract in a few lines, which eval asks the student with) or teacher (the full prompt the teacher "
        "was asked with: schema and few-shot examples)",
        choices=["student", "teacher"],
    )
    splits: dict[str, float] = option(
        {"train": 0.8, "validation": 0.1, "test": 0.1}, "split fractions, assigned by a hash of the row id"
    )
    split_salt: str = option("fin-distill", "salt of the split hash; change it to draw different splits")
    cache: bool = option(
        True,
        "reuse stored teacher responses (SQLite in the output directory); --no-cache asks everything again (new "
        "answers are still stored, and every call is still in the ledger)",
    )
    refresh_rejected: bool = option(
        False, "ask again, ignoring stored replies, for rows whose stored replies were rejected"
    )
    batch_write: bool = option(
        False,
        "write requests that have no stored answer as OpenAI Batch input files in <out>/batch/ instead of "
        "sending them (submit them to the Batch API or to `vllm run-batch`)",
    )
    batch_ingest: list[str] = option([], "batch output files (OpenAI Batch API or vllm run-batch) to store, then stop")
    dry_run: bool = option(False, "count requests, tokens and cost, then stop without calling the teacher")
    progress: bool = option(True, "show a progress bar")

    def hash(self) -> str:
        """A short hash of the settings that shape the data (not of cosmetic ones)."""
        cosmetic = {
            "progress", "dry_run", "batch_write", "batch_ingest", "max_cost", "max_tokens", "refresh_rejected",
            "overwrite", "tokenizer",
        }  # fmt: skip
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in cosmetic}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def teacher_spec(self) -> TeacherSpec:
        """The teacher these settings name."""
        return TeacherSpec(
            self.teacher, self.base_url, self.model, self.api_key_env, self.concurrency, self.timeout,
            self.max_retries, self.tokenizer,
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def kd_server(config: DistillConfig) -> str | None:
    """The base URL of the server that scores replies for logit distillation, if a server does."""
    if config.kd_teacher:
        return config.kd_teacher if config.kd_teacher.startswith(("http://", "https://")) else None
    return config.base_url if config.kd_top_k and config.teacher == "openai" else None


def validate(config: DistillConfig) -> None:
    """Cross-field checks that argparse cannot express."""
    check_finite(config)
    check_key_variable("--api-key-env", config.api_key_env)
    if not config.input and not config.batch_ingest:
        raise ConfigError("no input: pass --input FILE (or set `input:` in the --config file)")
    if not config.out and not config.dry_run:
        raise ConfigError("no output directory: pass --out DIR (or set `out:` in the --config file)")
    if config.teacher == "openai" and not config.model:
        raise ConfigError("--teacher openai needs --model (the model name the API serves)")
    if config.teacher == "local" and not (config.model and (Path(config.model) / "config.json").is_file()):
        raise ConfigError(f"--teacher local needs --model MODEL_FOLDER (a folder with config.json), got {config.model}")
    if config.kd_top_k < 0:
        raise ConfigError("--kd-top-k must be 0 (off) or more")
    if config.kd_top_k and config.teacher == "rules" and not config.kd_teacher:
        raise ConfigError(
            "--kd-top-k needs log-probabilities over the student's tokens, which --teacher rules cannot give: pass "
            "--kd-teacher MODEL_FOLDER or URL (a model of the student's family, run here or behind vllm serve)"
        )
    served = kd_server(config)
    if config.kd_teacher and not served and not (Path(config.kd_teacher) / "config.json").is_file():
        raise ConfigError(f"--kd-teacher {config.kd_teacher} is neither a model folder (no config.json) nor a URL")
    if config.kd_top_k and served and not config.student_tokenizer:
        raise ConfigError(
            f"--kd-top-k with the served teacher {served} needs --student-tokenizer FOLDER: the conversations are "
            "tokenized with it, and the server's tokenizer is checked against it"
        )
    if config.min_label_confidence and not config.kd_top_k:
        raise ConfigError("--min-label-confidence needs --kd-top-k (the confidence comes from the log-probabilities)")
    if config.teacher == "openai" and not config.base_url:
        raise ConfigError("--teacher openai needs --base-url (e.g. https://api.openai.com/v1)")
    unknown = [f for f in config.formats if f not in ("sharegpt", "alpaca")]
    if unknown or not config.formats:
        raise ConfigError(f"--formats: unknown format(s) {unknown}; choose from sharegpt, alpaca")
    if not config.splits or any(v < 0 for v in config.splits.values()) or abs(sum(config.splits.values()) - 1) > 1e-6:
        raise ConfigError(f"--splits must be non-negative fractions that sum to 1, got {show(config.splits)}")
    for name in ("rpm", "tpm", "max_cost", "max_tokens", "max_completion_tokens", "timeout"):
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if (config.batch_write or config.batch_ingest) and (config.teacher != "openai" or not config.cache):
        raise ConfigError("batch mode needs --teacher openai and the cache (it stores answers by request key)")
    for name in ("concurrency", "max_chars"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("max_retries", "max_reasks"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more")
    if config.limit is not None and config.limit < 1:
        raise ConfigError("--limit must be at least 1")
    for path in config.decontaminate:
        if not Path(path).exists():
            raise ConfigError(f"--decontaminate: evaluation set not found: {path}")
    if not 0 < config.near_dup_threshold <= 1:
        raise ConfigError("--near-dup-threshold must be in (0, 1]")
