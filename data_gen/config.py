"""Run configuration: one dataclass, loaded from YAML and overridden by command-line flags.

Every field is both a YAML key and a ``--flag`` (underscores become dashes); its help text lives here once.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration problem, reported as one line before anything is spent."""


def _opt(default: Any, help: str, **extra: Any) -> Any:
    meta = {"help": help, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SourceOptions:
    """How to read an input file: shared by ``data_gen.distill`` (teacher inputs) and ``eval.run`` (test sets)."""

    input_format: str = _opt(
        "auto",
        "input format; auto picks by extension",
        choices=["auto", "csv", "tsv", "jsonl", "json", "parquet", "hf", "fpb", "txt"],
    )
    text_column: str | None = _opt(None, "column holding the text (default: the task's input column)")
    id_column: str | None = _opt(None, "column holding a stable row id (default: a hash of the text)")
    label_column: str | None = _opt(None, "optional column with the gold label")
    label_map: dict[str, str] = _opt({}, "map raw gold labels to task labels, e.g. 0=negative,1=positive,2=neutral")
    encoding: str = _opt("auto", "text encoding of the input; auto tries UTF-8, then falls back to Latin-1")
    hf_split: str | None = _opt(None, "split to read when the input is a saved DatasetDict")
    max_chars: int = _opt(20_000, "texts longer than this are rejected as text_too_long")
    limit: int | None = _opt(None, "process only the first N input rows")

    def source(self, path: str | Path, text_column: str, control_characters: str = "reject") -> Any:
        """The streamed reader of ``path`` with these options (``text_column`` when none is configured; the task's
        rule for control characters)."""
        from data_gen.sources.readers import Source

        return Source(
            path,
            self.input_format,
            self.text_column or text_column,
            self.id_column,
            self.label_column,
            self.encoding,
            self.hf_split,
            self.max_chars,
            self.limit,
            control_characters=control_characters,
        )


@dataclass
class DistillConfig(SourceOptions):
    """Everything a distillation run needs. Secrets are never stored here: only the *name* of the key variable."""

    # --- what to distil ---
    task: str = _opt("finsight", "task name (a folder in data_gen/tasks/) or a path to a task folder")
    input: str | None = _opt(None, "input file or directory (CSV, TSV, JSONL, JSON, Parquet, FPB .txt, datasets dir)")

    # --- the teacher ---
    teacher: str = _opt(
        "rules",
        "rules (offline, deterministic baseline), openai (any OpenAI-compatible API) or local (a Hugging Face "
        "model folder given as --model, run in process on CPU or GPU)",
        choices=["rules", "openai", "local"],
    )
    base_url: str | None = _opt(None, "base URL of the OpenAI-compatible API, e.g. https://api.deepseek.com/v1")
    model: str | None = _opt(None, "teacher model name as the API knows it (--teacher local: the model folder)")
    api_key_env: str | None = _opt(
        "OPENAI_API_KEY",
        "NAME of the environment variable holding the API key "
        "(empty for keyless local servers); the key itself is never printed or stored",
    )
    concurrency: int = _opt(16, "requests in flight at most (adaptive concurrency moves below it)")
    adaptive_concurrency: bool = _opt(
        True,
        "per round of requests: halve the requests in flight when a fifth of them hit 429 / 5xx / timeouts or "
        "latency climbs 4x, else add one",
    )
    rpm: float | None = _opt(None, "requests per minute, never exceeded in any rolling minute (all attempts count)")
    tpm: float | None = _opt(None, "tokens per minute (prompt estimate + completion limit, corrected by usage)")
    timeout: float = _opt(120.0, "seconds before one request times out (then it is retried)")
    max_retries: int = _opt(6, "retries of one request on 408/409/429/5xx, timeouts and dropped connections")
    max_reasks: int = _opt(2, "times an answer that fails validation is re-asked, with the error, before rejection")
    temperature: float | None = _opt(None, "sampling temperature (default: the task's)")
    max_completion_tokens: int | None = _opt(
        None,
        "completion token limit per request, sent as max_tokens (default: the task's); a reply cut by it is "
        "asked once more with twice the limit, then rejected as truncated",
    )
    top_p: float | None = _opt(None, "nucleus sampling; omitted from the request when unset")
    seed: int | None = _opt(None, "sampling seed sent to the API when set")
    prices: str = _opt("data_gen/configs/prices.yaml", "price table (USD per million tokens) used for cost estimates")
    max_cost: float | None = _opt(
        None,
        "budget in USD over every call this output directory has made (retries and re-asks included); the run "
        "stops before a request that could exceed it, and a later run with a higher cap resumes",
    )
    max_tokens: int | None = _opt(None, "budget in tokens (prompt + completion), counted like --max-cost")
    tokenizer: str | None = _opt(
        None,
        "the teacher's tokenizer (a tokenizer.json file or a model folder): counts prompt tokens for reservations "
        "and the tokens of answers whose server reports no usage exactly; default: a conservative estimate (a "
        "token per 3 ASCII characters, one per other character)",
    )

    # --- checks ---
    require_gold_agreement: bool = _opt(False, "keep only examples whose answer agrees with the gold label")
    dedup: bool = _opt(True, "drop exact and near-duplicate texts before asking the teacher")
    near_dup_threshold: float = _opt(0.85, "estimated Jaccard similarity above which two texts are near-duplicates")
    decontaminate: list[str] = _opt(
        [],
        "evaluation sets the student will be tested on (files read with the same --text-column, or data_gen output "
        "directories: their test split); input rows equal or near-equal to one of their texts are rejected as "
        "contaminated before anything is asked",
    )

    # --- logit distillation ---
    kd_top_k: int = _opt(
        0,
        "also write kd_<split>.jsonl for Axolotl's KD trainer: the top-k next-token log-probabilities of the "
        "--kd-teacher at every position of each training reply (0: off)",
    )
    kd_teacher: str | None = _opt(
        None,
        "the model whose log-probabilities are distilled, of the student's family: a Hugging Face folder run in "
        "process, or the base URL of a `vllm serve` (http://HOST:8000/v1). Default: the teacher itself (--teacher "
        "local, or the --teacher openai server, which must then be vllm serve). The replies may come from any "
        "teacher: this one scores them",
    )
    kd_model: str | None = _opt(
        None,
        "the model name the --kd-teacher server serves (default: --model on the teacher's own server, else the "
        "first model the server lists)",
    )
    student_tokenizer: str | None = _opt(
        None,
        "the student's tokenizer (a model or tokenizer folder): logit distillation is refused unless the teacher "
        "tokenizes exactly like it (default for a teacher run in process: its own, i.e. a same-family student; "
        "required for a served teacher, whose tokenizer is checked through its /tokenize)",
    )
    min_label_confidence: float = _opt(
        0.0,
        "with --kd-top-k: reject examples whose teacher probability for their own label (renormalised over the "
        "classes) is below this, as low_confidence",
    )

    # --- outputs ---
    out: str | None = _opt(
        None,
        "output directory: new, empty, or an earlier output of the same task and input (which the run resumes)",
    )
    overwrite: bool = _opt(
        False,
        "replace a data_gen output of another task or input in --out (its stored teacher answers are kept; files "
        "data_gen did not write are never touched)",
    )
    name: str | None = _opt(None, "dataset name used in dataset_info.json (default: the task name)")
    formats: list[str] = _opt(["sharegpt", "alpaca"], "training file formats to write", choices=["sharegpt", "alpaca"])
    training_prompt: str = _opt(
        "student",
        "the system prompt in the training files (ShareGPT, Alpaca, KD rows): student (the task's short prompt, the "
        "output contract in a few lines, which eval asks the student with) or teacher (the full prompt the teacher "
        "was asked with: schema and few-shot examples)",
        choices=["student", "teacher"],
    )
    splits: dict[str, float] = _opt(
        {"train": 0.8, "validation": 0.1, "test": 0.1}, "split fractions, assigned by a hash of the row id"
    )
    split_salt: str = _opt("fin-distill", "salt of the split hash; change it to draw different splits")
    cache: bool = _opt(
        True,
        "reuse stored teacher responses (SQLite in the output directory); --no-cache asks everything again (new "
        "answers are still stored, and every call is still in the ledger)",
    )
    refresh_rejected: bool = _opt(
        False, "ask again, ignoring stored replies, for rows whose stored replies were rejected"
    )
    batch_write: bool = _opt(
        False,
        "write requests that have no stored answer as OpenAI Batch input files in <out>/batch/ instead of "
        "sending them (submit them to the Batch API or to `vllm run-batch`)",
    )
    batch_ingest: list[str] = _opt([], "batch output files (OpenAI Batch API or vllm run-batch) to store, then stop")
    dry_run: bool = _opt(False, "count requests, tokens and cost, then stop without calling the teacher")
    progress: bool = _opt(True, "show a progress bar")

    def hash(self) -> str:
        """A short hash of the settings that shape the data (not of cosmetic ones)."""
        cosmetic = {
            "progress", "dry_run", "batch_write", "batch_ingest", "max_cost", "max_tokens", "refresh_rejected",
            "overwrite", "tokenizer",
        }  # fmt: skip
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in cosmetic}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _base_type(annotation: Any) -> Any:
    """``str | None`` -> ``str``; ``list[str]`` -> ``list``; ``dict[str, float]`` -> ``dict``."""
    hint = annotation
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint, typing.get_args(hint)


def _parse_pairs(text: str, value_type: type) -> dict[str, Any]:
    """``a=1,b=2`` -> {"a": 1, "b": 2}."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"expected key=value pairs separated by commas, got {item!r}")
        try:
            out[key.strip()] = value_type(value.strip())
        except ValueError:
            kind = "a number" if value_type in (int, float) else value_type.__name__
            raise argparse.ArgumentTypeError(f"{item!r}: {value.strip()!r} is not {kind}") from None
    return out


def _parse_list(text: str) -> list[str]:
    """``a, b,c`` -> ["a", "b", "c"]."""
    return [v.strip() for v in text.split(",") if v.strip()]


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Check and convert a YAML value to the field's type, with a one-line error naming the key."""
    base, args = _base_type(typing.get_type_hints(cls)[name])
    if value is None:
        return None
    try:
        if base is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            return [str(v).strip() for v in items if str(v).strip()]
        if base is dict:
            if isinstance(value, str):
                return _parse_pairs(value, args[1] if args else str)
            if not isinstance(value, dict):
                raise TypeError("expected a mapping")
            value_type = args[1] if args else str
            return {str(k): value_type(v) for k, v in value.items()}
        if base is bool:
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            return value
        if base is int:
            if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip()
                                                                          .lstrip("+-").isdigit())):  # fmt: skip
                raise TypeError("expected a whole number")  # 4.7 must not quietly become 4
            return int(value)
        if base is float and isinstance(value, bool):
            raise TypeError("expected a number")
        return base(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key {name!r}: {exc} (got {value!r})") from None


def build_parser(
    description: str, epilog: str = "", cls: type = DistillConfig, prog: str | None = None
) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of the config dataclass ``cls``; every default is None so that
    YAML can fill in."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML file with any of the keys below; flags given here override it")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        base, args = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{f.metadata['help']} (default: {_show(default)})".replace("%", "%%")  # argparse formats it
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif base is list:
            parser.add_argument(flag, type=_parse_list, metavar="A,B", **kwargs)
        elif base is dict:
            pairs = functools.partial(_parse_pairs, value_type=args[1] if args else str)
            pairs.__name__ = "key=value list"  # type: ignore[attr-defined]  # argparse names the type in errors
            parser.add_argument(flag, type=pairs, metavar="K=V,...", **kwargs)
        else:
            parser.add_argument(flag, type=base, choices=f.metadata.get("choices"), **kwargs)
    return parser


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def load_config(args: argparse.Namespace, cls: type = DistillConfig, check: Callable[[Any], None] | None = None) -> Any:
    """Merge: dataclass defaults < YAML file (``--config``) < command-line flags; then ``check`` (default: the
    distillation checks) the result."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
        unknown = sorted(set(loaded) - fields)
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}")
        values.update({k: _coerce(cls, k, v) for k, v in loaded.items()})
    values.update({k: v for k, v in vars(args).items() if k in fields and v is not None})
    config = cls(**values)
    (check or validate)(config)
    return config


def kd_server(config: DistillConfig) -> str | None:
    """The base URL of the server that scores replies for logit distillation, if a server does."""
    if config.kd_teacher:
        return config.kd_teacher if config.kd_teacher.startswith(("http://", "https://")) else None
    return config.base_url if config.kd_top_k and config.teacher == "openai" else None


def check_finite(config: Any) -> None:
    """Every number of a config is a real number: ``nan`` and ``inf`` are refused (``--max-cost nan`` would
    disable the cap and write a bare NaN into manifest.json)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
        if isinstance(value, dict) and any(isinstance(v, float) and not math.isfinite(v) for v in value.values()):
            raise ConfigError(f"--{f.name.replace('_', '-')}: every value must be a finite number")


def check_key_variable(flag: str, name: str | None) -> None:
    """``--api-key-env`` takes a variable's NAME; a key given in its place is refused without repeating it."""
    from data_gen.redact import looks_like_a_key

    if name and looks_like_a_key(name):
        raise ConfigError(
            f"{flag} takes the NAME of an environment variable that holds the key (e.g. DEEPSEEK_API_KEY), and "
            "the value given is not a variable name (it may be a key itself: keys never go on the command line "
            f"or in a config file); export KEY_VARIABLE=... and pass {flag} KEY_VARIABLE"
        )


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
        raise ConfigError(f"--splits must be non-negative fractions that sum to 1, got {_show(config.splits)}")
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
