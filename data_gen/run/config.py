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
from data_gen.writers.training import TRAINING_FORMATS

# settings that do not shape the data: left out of the config hash, and free to differ between the shards of a job
COSMETIC = frozenset({
    "progress", "dry_run", "batch_write", "batch_ingest", "max_cost", "max_tokens", "refresh_rejected", "overwrite",
    "tokenizer", "workers",
})  # fmt: skip


@dataclass
class DistillConfig(SourceOptions):
    """Everything a distillation run needs. Secrets are never stored here: only the *name* of the key variable."""

    input: str | None = option(None, "input file or folder (CSV, TSV, JSONL, JSON, Parquet, FPB .txt, datasets)",
                               metavar="PATH")  # fmt: skip

    # the task and the teacher
    task: str = option("finsight", "task name (data_gen/tasks/) or task folder", group="task and teacher")
    teacher: str = option(
        "rules", "rules (offline), openai (a compatible API) or local (a model folder)",
        metavar="KIND", choices=["rules", "openai", "local"],
    )  # fmt: skip
    base_url: str | None = option(None, "the API's base URL, e.g. https://api.deepseek.com/v1", metavar="URL")
    model: str | None = option(None, "teacher model name as the API knows it (local: its folder)", metavar="NAME")
    api_key_env: str | None = option("OPENAI_API_KEY", "NAME of the variable with the API key (empty: no key)",
                                     metavar="VAR")  # fmt: skip
    temperature: float | None = option(None, "sampling temperature (default: the task's)")
    max_completion_tokens: int | None = option(None, "completion limit per request (default: the task's)")
    top_p: float | None = option(None, "nucleus sampling (omitted when unset)")
    seed: int | None = option(None, "sampling seed sent to the API")
    max_reasks: int = option(2, "re-asks, with the error, of an answer that fails validation")

    # how fast and how much
    concurrency: int = option(16, "requests in flight at most", group="limits and budget")
    adaptive_concurrency: bool = option(True, "fewer requests in flight on 429 / 5xx / timeouts / slow replies")
    rpm: float | None = option(None, "requests per minute (rolling, every attempt counts)")
    tpm: float | None = option(None, "tokens per minute (rolling)")
    timeout: float = option(120.0, "seconds before a request times out (then it is retried)")
    max_retries: int = option(6, "retries on 408/409/429/5xx, timeouts and dropped connections")
    prices: str = option("data_gen/configs/prices.yaml", "price table, USD per million tokens", metavar="PATH")
    max_cost: float | None = option(None, "budget in USD for this output folder, every call counted (--shard K/N: 1/N)")
    max_tokens: int | None = option(None, "budget in tokens, counted like --max-cost")
    tokenizer: str | None = option(None, "the teacher's tokenizer, for exact token counts", metavar="PATH")

    # which rows become examples
    require_gold_agreement: bool = option(False, "keep only answers that agree with the gold label", group="filters")
    dedup: bool = option(True, "drop exact and near-duplicate texts before asking")
    near_dup_threshold: float = option(0.85, "Jaccard similarity above which texts are near-duplicates")
    decontaminate: list[str] = option([], "evaluation sets whose texts are kept out of the training data")

    # logit distillation
    kd_top_k: int = option(
        0, "write kd_<split>.jsonl with the top-K log-probabilities; 0: off", group="logit distillation (KD)"
    )
    kd_teacher: str | None = option(None, "the scoring model: a folder, or a vllm serve URL (default: the teacher)",
                                    metavar="PATH|URL")  # fmt: skip
    kd_model: str | None = option(None, "model name on the --kd-teacher server", metavar="NAME")
    student_tokenizer: str | None = option(None, "the student's tokenizer, checked against the teacher's",
                                           metavar="PATH")  # fmt: skip
    min_label_confidence: float = option(0.0, "reject examples the teacher's own label probability is below")

    # what is written
    out: str | None = option(None, "output folder: new, empty, or an earlier one to resume", group="output",
                             metavar="DIR")  # fmt: skip
    overwrite: bool = option(False, "replace a data_gen output of another task or input in --out")
    name: str | None = option(None, "dataset name in dataset_info.json (default: the task's)", metavar="NAME")
    formats: list[str] = option(TRAINING_FORMATS, "training file formats", choices=TRAINING_FORMATS)
    training_prompt: str = option("student", "system prompt in the training files: student or teacher",
                                  metavar="WHICH", choices=["student", "teacher"])  # fmt: skip
    splits: dict[str, float] = option(
        {"train": 0.8, "validation": 0.1, "test": 0.1}, "split fractions, by a hash of the id"
    )
    split_salt: str = option("fin-distill", "salt of the split hash (change it for other splits)")

    # how the run goes
    cache: bool = option(True, "reuse stored answers (--no-cache asks again; still stores)", group="run")
    refresh_rejected: bool = option(False, "ask again for rows whose stored answers were rejected")
    batch_write: bool = option(False, "write OpenAI Batch input files instead of sending")
    batch_ingest: list[str] = option([], "store batch output files (OpenAI or vllm run-batch), then stop")
    workers: int = option(1, "N --shard processes here, merged into --out (CPU-bound work: rules, KD)", metavar="N")
    dry_run: bool = option(False, "count requests, tokens and cost; send nothing")
    progress: bool = option(True, "progress bar")

    def hash(self) -> str:
        """A short hash of the settings that shape the data (not of ``COSMETIC`` ones)."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in COSMETIC}
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
    unknown = [f for f in config.formats if f not in TRAINING_FORMATS]
    if unknown or not config.formats:
        raise ConfigError(f"--formats: unknown format(s) {unknown}; choose from {', '.join(TRAINING_FORMATS)}")
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
    config.shard_numbers()  # a malformed --shard is one line here, before anything is read
    if config.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if config.workers > 1 and (config.shard or config.batch_write or config.batch_ingest):
        raise ConfigError("--workers runs the --shard processes itself: drop --shard (or --batch-write / "
                          "--batch-ingest, which run in one process)")  # fmt: skip
    for path in config.decontaminate:
        if not Path(path).exists():
            raise ConfigError(f"--decontaminate: evaluation set not found: {path}")
    if not 0 < config.near_dup_threshold <= 1:
        raise ConfigError("--near-dup-threshold must be in (0, 1]")
