"""The distillation run: rows -> requests -> replies -> checks -> accepted examples | rejections -> files.

Every input row ends in exactly one of ``accepted`` or ``rejected`` (with a reason); the manifest's counts are
checked to add up before it is written.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import shlex
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from data_gen.cache import CachedTeacher, ResponseCache
from data_gen.client import ChatRequest, Completion, TeacherSetupError, Usage, describe_error, is_fatal, request_key
from data_gen.config import ConfigError, DistillConfig
from data_gen.dedup import Deduplicator
from data_gen.metrics import classification_report
from data_gen.parsing import RowRejected
from data_gen.pricing import Price, load_price
from data_gen.sources import InputError, Record, Rejected, SourceReport, read_source
from data_gen.splits import assign_split
from data_gen.task import Parsed, Task, load_task
from data_gen.teachers import Teacher, make_teacher
from data_gen.writers import (
    FORMATS,
    Example,
    atomic_write_json,
    atomic_write_jsonl,
    record_errors,
    write_training_files,
)

log = logging.getLogger("data_gen")
CHARS_PER_TOKEN = 4.0  # rough English average, for estimates only (no tokenizer download needed)
NOT_REASKED = {"declined"}  # a refusal is an answer: asking again with "your refusal failed validation" is waste
PACKAGES = ("fin-distill", "openai", "tenacity", "jsonschema", "json-repair", "datasets", "pandas", "datasketch")


@dataclass
class Outcome:
    """What happened to one row that was sent to the teacher."""

    record: Record
    parsed: Parsed | None = None
    reason: str | None = None
    detail: str = ""
    completion: Completion | None = None
    usage: Usage = field(default_factory=Usage)
    sent_usage: Usage = field(default_factory=Usage)
    asks: int = 0
    sent: int = 0
    key: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


@dataclass
class Prepared:
    """Rows read, checked and deduplicated, ready to be asked; nothing has been spent yet."""

    task: Task
    records: list[Record]
    rejected: list[Rejected]
    source: SourceReport
    text_column: str


def prepare(config: DistillConfig) -> Prepared:
    """Read the input, normalize gold labels and drop duplicates. Raises InputError / ConfigError."""
    task = load_task(config.task)
    text_column = config.text_column or task.input_column
    source = read_source(
        config.input or "",
        config.input_format,
        text_column,
        config.id_column,
        config.label_column,
        config.encoding,
        config.hf_split,
        config.max_chars,
        config.limit,
    )
    for note in source.notes:
        log.warning(note)
    has_labels = bool(config.label_column) or source.format == "fpb"
    if has_labels and not task.labels:
        raise ConfigError(f"task {task.name} has no label field, so gold labels cannot be used; drop --label-column")
    records = source.records
    if has_labels:
        records, unknown = _normalize_labels(records, task, config.label_map)
        if unknown:
            shown = ", ".join(f"{value!r} ({n} rows)" for value, n in unknown.most_common(8))
            raise InputError(
                f"{config.input}: unknown gold label value(s) {shown}; expected one of {', '.join(task.labels)}; "
                "map them with --label-map RAW=LABEL,..."
            )
    rejected = list(source.rejected)
    if config.dedup:
        dedup = Deduplicator(near=True, threshold=config.near_dup_threshold)
        kept = []
        for record in records:
            duplicate = dedup.check(record.id, record.text, f"row {record.row} ({record.id})")
            if duplicate:
                rejected.append(Rejected(record.row, duplicate[0], f"row {record.row}: {duplicate[2]}", record.id))
            else:
                kept.append(record)
        records = kept
    return Prepared(task, records, rejected, source, text_column)


def _normalize_labels(records: list[Record], task: Task, label_map: dict[str, str]) -> tuple[list[Record], Counter]:
    unknown: Counter = Counter()
    out = []
    for record in records:
        label = task.normalize_label(record.label, label_map)
        if label is None and record.label not in (None, ""):
            raw = str(record.label).strip()
            unknown[f"{raw} -> {label_map[raw]}" if raw in label_map else raw] += 1
        out.append(Record(record.id, record.text, record.row, label))
    return out, unknown


def sampling_params(config: DistillConfig, task: Task) -> dict[str, Any]:
    return {
        "temperature": config.temperature if config.temperature is not None else task.temperature,
        "max_tokens": config.max_tokens or task.max_tokens,
        "top_p": config.top_p,
        "seed": config.seed,
    }


async def run_bounded(
    items: Iterable[Any], worker: Callable[[Any], Awaitable[Any]], limit: int, on_done: Callable[[Any], None]
) -> None:
    """Run ``worker`` over ``items`` with at most ``limit`` in flight; memory stays bounded by ``limit``."""
    iterator = iter(items)
    pending: set[asyncio.Task[Any]] = set()

    def fill() -> None:
        while len(pending) < limit:
            item = next(iterator, None)
            if item is None:
                return
            pending.add(asyncio.ensure_future(worker(item)))

    fill()
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                pending.discard(finished)
                on_done(finished.result())
            fill()
    finally:
        for task in pending:
            task.cancel()


class Distiller:
    """Asks the teacher about each row, re-asks with the validation error, and decides accept / reject."""

    def __init__(self, config: DistillConfig, task: Task, teacher: Teacher) -> None:
        self.config = config
        self.task = task
        self.teacher = teacher
        self.params = sampling_params(config, task)
        # a deterministic teacher would give the same answer again: re-asking it only costs time
        self.max_reasks = config.max_reasks if getattr(teacher, "reaskable", True) else 0

    async def ask(self, record: Record) -> Outcome:
        outcome = Outcome(record)
        base = self.task.messages(record.text)
        messages = base
        for attempt in range(self.max_reasks + 1):
            request = ChatRequest(self.teacher.model, messages, self.params, text=record.text)
            outcome.key = request_key(self.teacher.endpoint, request.body())
            try:
                completion = await self.teacher.complete(request)
            except Exception as exc:
                if is_fatal(exc):
                    raise TeacherSetupError(f"{self.teacher.endpoint}: {describe_error(exc)}") from None
                outcome.reason, outcome.detail = "teacher_error", describe_error(exc)
                return outcome
            outcome.asks += 1
            outcome.completion = completion
            outcome.usage.add(completion.usage)
            if not completion.from_cache:
                outcome.sent += 1
                outcome.sent_usage.add(completion.usage)
            if completion.finish_reason == "length":
                outcome.reason = "truncated"
                outcome.detail = f"the reply hit max_tokens={self.params['max_tokens']} before it ended"
                return outcome
            try:
                outcome.parsed = self.task.parse(completion.text, completion.reasoning)
            except RowRejected as rejection:
                outcome.reason, outcome.detail = rejection.reason, rejection.detail
                if attempt < self.max_reasks and rejection.reason not in NOT_REASKED:
                    messages = self.task.reask_messages(base, completion.text, rejection.detail or rejection.reason)
                    continue
                if outcome.asks > 1:
                    outcome.detail += f" (after {outcome.asks - 1} re-asks)"
                return outcome
            outcome.reason, outcome.detail = None, ""
            if self.config.require_gold_agreement:  # never re-asked: the gold label must not leak into prompts
                try:
                    self.task.check_gold(outcome.parsed, record.label)
                except RowRejected as rejection:
                    outcome.reason, outcome.detail = rejection.reason, rejection.detail
            return outcome
        return outcome  # pragma: no cover  (the loop always returns)


def estimate(prepared: Prepared, config: DistillConfig, price: Price | None, cached: int) -> dict[str, Any]:
    """Requests, tokens and cost a run would need, from character counts (no tokenizer, no network)."""
    task = prepared.task
    system_chars = len(task.system_prompt)
    prompt_chars = sum(system_chars + len(task.user_prompt(r.text)) for r in prepared.records)
    to_send = len(prepared.records) - cached
    share = to_send / len(prepared.records) if prepared.records else 0.0
    prompt_tokens = int(prompt_chars * share / CHARS_PER_TOKEN)
    expected_completion = to_send * task.expected_completion_tokens
    max_tokens = config.max_tokens or task.max_tokens
    worst_completion = to_send * max_tokens
    result = {
        "rows": prepared.source.rows,
        "rejected_before_asking": len(prepared.rejected),
        "requests": to_send,
        "already_cached": cached,
        "prompt_tokens": prompt_tokens,
        "completion_tokens_expected": expected_completion,
        "completion_tokens_max": worst_completion,
        "cost_expected_usd": None,
        "cost_max_usd": None,
    }
    if price is not None:
        result["cost_expected_usd"] = price.cost(Usage(prompt_tokens, expected_completion))
        result["cost_max_usd"] = price.cost(Usage(prompt_tokens, worst_completion)) * (1 + config.max_reasks)
    return result


def format_estimate(est: dict[str, Any], config: DistillConfig, teacher: Teacher) -> str:
    def money(value: float | None) -> str:
        return "unknown (no price for this model in --prices)" if value is None else f"${value:,.4f}"

    reasons = ", ".join(f"{k} {v}" for k, v in est.get("rejected_by_reason", {}).items())
    lines = [
        f"dry run: task {config.task}, teacher {teacher.kind} {teacher.model} @ {teacher.endpoint}",
        f"  input rows               {est['rows']:,}",
        f"  rejected before asking   {est['rejected_before_asking']:,}" + (f" ({reasons})" if reasons else ""),
        f"  requests to send         {est['requests']:,} ({est['already_cached']:,} already cached)",
        f"  prompt tokens (est.)     {est['prompt_tokens']:,}  (characters / {CHARS_PER_TOKEN:g})",
        f"  completion tokens        {est['completion_tokens_expected']:,} expected, "
        f"at most {est['completion_tokens_max']:,} (max_tokens x requests)",
        f"  cost                     {money(est['cost_expected_usd'])} expected; at most "
        f"{money(est['cost_max_usd'])} if every reply used max_tokens and every re-ask "
        f"(--max-reasks {config.max_reasks}) was needed",
        "nothing was sent.",
    ]
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _setup_log_file(out: Path) -> logging.Handler:
    handler = logging.FileHandler(out / "distill.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


async def distill(config: DistillConfig, argv: list[str] | None = None) -> dict[str, Any]:
    """Run the whole job and return the manifest (also written to ``<out>/manifest.json``)."""
    started = time.time()
    prepared = prepare(config)
    task = prepared.task
    teacher = make_teacher(config, task, require_key=not config.dry_run)
    price = load_price(config.prices, teacher.model, config.teacher)
    if price is None:
        log.warning("no price for model %r in %s: cost will be reported as unknown", teacher.model, config.prices)
    out = Path(config.out) if config.out else None
    cache_path = out / "cache.sqlite" if (out and config.cache and teacher.cacheable) else None
    if config.dry_run and cache_path is not None and not cache_path.exists():
        cache_path = None  # a dry run creates nothing
    cache = ResponseCache(cache_path) if cache_path is not None else None
    try:
        if config.dry_run:
            return _dry_run(prepared, config, teacher, price, cache)
        assert out is not None
        out.mkdir(parents=True, exist_ok=True)
        handler = _setup_log_file(out)
        try:
            log.info(
                "start: task=%s teacher=%s model=%s endpoint=%s input=%s rows=%d to_ask=%d",
                task.name,
                teacher.kind,
                teacher.model,
                teacher.endpoint,
                config.input,
                prepared.source.rows,
                len(prepared.records),
            )
            await teacher.check()
            asker = CachedTeacher(teacher, cache) if cache is not None else teacher
            outcomes = await _ask_all(config, task, asker, prepared.records, price)
            manifest = _finish(config, prepared, teacher, outcomes, price, out, started, argv)
            log.info(
                "done: %d accepted, %d rejected, %.1f rows/s",
                manifest["counts"]["accepted"],
                manifest["counts"]["rejected"],
                manifest["rows_per_second"],
            )
            return manifest
        finally:
            log.removeHandler(handler)
            handler.close()
    finally:
        await teacher.close()
        if cache is not None:
            cache.close()


def _dry_run(
    prepared: Prepared, config: DistillConfig, teacher: Teacher, price: Price | None, cache: ResponseCache | None
) -> dict[str, Any]:
    cached = 0
    if cache is not None:
        distiller = Distiller(config, prepared.task, teacher)
        for record in prepared.records:
            request = ChatRequest(teacher.model, prepared.task.messages(record.text), distiller.params)
            cached += cache.contains(request_key(teacher.endpoint, request.body()))
    est = estimate(prepared, config, price, cached)
    est["rejected_by_reason"] = dict(Counter(r.reason for r in prepared.rejected).most_common())
    print(format_estimate(est, config, teacher))
    return {"dry_run": est}


async def _ask_all(
    config: DistillConfig, task: Task, teacher: Any, records: list[Record], price: Price | None
) -> list[Outcome]:
    from tqdm import tqdm

    distiller = Distiller(config, task, teacher)
    outcomes: list[Outcome] = []
    spent = Usage()
    accepted = 0
    bar = tqdm(
        total=len(records),
        unit="row",
        desc=f"distill {task.name}",
        disable=not config.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )

    def done(outcome: Outcome) -> None:
        nonlocal accepted
        outcomes.append(outcome)
        spent.add(outcome.sent_usage)
        accepted += outcome.accepted
        bar.update(1)
        finished = len(outcomes)
        if not bar.disable and (finished % 25 == 0 or finished == len(records)):
            cost = f"${price.cost(spent):.4f}" if price is not None else "$?"
            bar.set_postfix_str(
                f"accepted {100 * accepted / finished:.0f}% tokens {spent.total_tokens:,} cost {cost}", refresh=False
            )

    try:
        await run_bounded(records, distiller.ask, max(1, config.concurrency * 2), done)
    finally:
        bar.close()
    order = {r.id: i for i, r in enumerate(records)}
    outcomes.sort(key=lambda o: order[o.record.id])
    return outcomes


def _finish(
    config: DistillConfig,
    prepared: Prepared,
    teacher: Teacher,
    outcomes: list[Outcome],
    price: Price | None,
    out: Path,
    started: float,
    argv: list[str] | None,
) -> dict[str, Any]:
    task = prepared.task
    rejects = [r.as_dict() for r in prepared.rejected]
    examples: list[Example] = []
    repairs: Counter = Counter()
    for outcome in outcomes:
        record = outcome.record
        if not outcome.accepted:  # the request key finds the raw reply in cache.sqlite
            rejects.append(
                {
                    "id": record.id,
                    "row": record.row,
                    "reason": outcome.reason,
                    "detail": outcome.detail,
                    "request_key": outcome.key,
                }
            )
            continue
        assert outcome.parsed is not None and outcome.completion is not None
        example = _example(config, task, teacher, outcome)
        errors = [f"{fmt}: {err}" for fmt in config.formats if (err := record_errors(fmt, FORMATS[fmt](example)))]
        if errors:
            rejects.append(
                {"id": record.id, "row": record.row, "reason": "record_invalid", "detail": "; ".join(errors)}
            )
            continue
        repairs.update(outcome.parsed.repairs)
        examples.append(example)

    written = write_training_files(
        out, config.out or str(out), config.name or task.name, examples, config.formats, list(config.splits)
    )
    atomic_write_jsonl(out / "examples.jsonl", ({"id": e.id, "split": e.split, **e.meta} for e in examples))
    rejects.sort(key=lambda r: r["row"])
    atomic_write_jsonl(out / "rejects.jsonl", rejects)

    by_reason = Counter(r["reason"] for r in rejects)
    counts = {
        "input": prepared.source.rows,
        "accepted": len(examples),
        "rejected": len(rejects),
        "rejected_by_reason": dict(by_reason.most_common()),
        "accepted_by_split": {s: sum(e.split == s for e in examples) for s in config.splits},
    }
    if counts["accepted"] + counts["rejected"] != counts["input"]:  # a bug, never a data problem
        raise RuntimeError(f"row accounting does not add up: {counts}")
    sent_usage, all_usage = Usage(), Usage()
    for outcome in outcomes:
        sent_usage.add(outcome.sent_usage)
        all_usage.add(outcome.usage)
    elapsed = time.time() - started
    manifest = {
        "task": task.name,
        "name": config.name or task.name,
        "teacher": {"kind": teacher.kind, "model": teacher.model, "endpoint": teacher.endpoint},
        "input": {
            "path": config.input,
            "format": prepared.source.format,
            "encoding": prepared.source.encoding,
            "text_column": prepared.text_column,
            "label_column": config.label_column,
            "notes": prepared.source.notes,
        },
        "counts": counts,
        "requests": {
            "sent": sum(o.sent for o in outcomes),
            "answered_from_cache": sum(o.asks - o.sent for o in outcomes),
            "rows_asked": len(outcomes),
            "reasks": sum(max(0, o.asks - 1) for o in outcomes),
        },
        "usage": _usage_dict(sent_usage),
        "cost_usd": price.cost(sent_usage) if price is not None else None,
        "dataset_usage": _usage_dict(all_usage),
        "dataset_cost_usd": price.cost(all_usage) if price is not None else None,
        "price_per_million_tokens": price.__dict__ if price is not None else None,
        "gold_agreement": _gold_agreement(task, outcomes),
        "repairs": dict(repairs.most_common()),
        "sampling": {k: v for k, v in sampling_params(config, task).items() if v is not None},
        "files": written["files"],
        "dataset_info": written["dataset_info"],
        "config": config.as_dict(),
        "config_hash": config.hash(),
        "versions": _versions(),
        "command": " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv)),
        "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(elapsed, 3),
        "rows_per_second": round(prepared.source.rows / elapsed, 1) if elapsed > 0 else None,
    }
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def _example(config: DistillConfig, task: Task, teacher: Teacher, outcome: Outcome) -> Example:
    record, parsed, completion = outcome.record, outcome.parsed, outcome.completion
    assert parsed is not None and completion is not None
    meta = {
        "row": record.row,
        "text": record.text,
        "gold": record.label,
        "answer": parsed.answer,
        "thinking": parsed.thinking,
        "repairs": parsed.repairs,
        "provenance": {
            "teacher": teacher.kind,
            "model": teacher.model,
            "served_model": completion.model,
            "endpoint": teacher.endpoint,
            "request_key": outcome.key,
            "asks": outcome.asks,
            "attempts": completion.attempts,
            "finish_reason": completion.finish_reason,
            "usage": _usage_dict(outcome.usage),
            "from_cache": completion.from_cache,
        },
    }
    return Example(
        id=record.id,
        split=assign_split(record.id, config.splits, config.split_salt),
        system=task.system_prompt,
        user=task.user_prompt(record.text),
        assistant=task.target(parsed),
        meta=meta,
    )


def _usage_dict(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_prompt_tokens": usage.cached_prompt_tokens,
        "total_tokens": usage.total_tokens,
    }


def _gold_agreement(task: Task, outcomes: list[Outcome]) -> dict[str, Any] | None:
    """How often the teacher's label matches the gold label, over rows asked that have one.
    A row without a parsed answer counts as missing (wrong), never as a class."""
    rows = [o for o in outcomes if o.record.label is not None]
    if not rows or not task.labels:
        return None
    gold = [o.record.label for o in rows]
    predicted = [task.predicted_label(o.parsed) if o.parsed else None for o in rows]
    report = classification_report(gold, predicted, task.labels)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in report.items() if k != "per_class"} | {
        "per_class": {
            label: {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}
            for label, m in report["per_class"].items()
        }
    }


def summary_lines(manifest: dict[str, Any], out: str) -> list[str]:
    counts = manifest["counts"]
    reasons = ", ".join(f"{k} {v}" for k, v in counts["rejected_by_reason"].items()) or "none"
    cost = manifest["cost_usd"]
    lines = [
        f"{counts['input']:,} rows: {counts['accepted']:,} accepted "
        f"({', '.join(f'{k} {v}' for k, v in counts['accepted_by_split'].items())}), "
        f"{counts['rejected']:,} rejected ({reasons})",
        f"teacher requests sent {manifest['requests']['sent']:,}, answered from cache "
        f"{manifest['requests']['answered_from_cache']:,}; tokens {manifest['usage']['total_tokens']:,}; "
        f"cost {'unknown' if cost is None else f'${cost:.4f}'}; {manifest['rows_per_second']} rows/s",
    ]
    gold = manifest.get("gold_agreement")
    if gold:
        lines.append(
            f"agreement with gold labels: accuracy {gold['accuracy']:.3f}, macro-F1 {gold['macro_f1']:.3f} "
            f"on {gold['n']:,} rows"
        )
    lines.append(
        f"wrote {out}/: {len(manifest['files'])} training files, dataset_info.json (LLaMA-Factory), "
        "axolotl_*.yaml, examples.jsonl, rejects.jsonl, manifest.json"
    )
    return lines
