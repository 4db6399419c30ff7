"""The distillation run, in three streamed passes so that memory stays flat however large the input is:

1. read: input rows -> rejections (bad rows, duplicates) | rows to ask, on disk (workspace.py); unknown gold
   labels and missing columns stop the run here, before anything is spent;
2. ask: rows -> teacher (through the cache, limits and budget) -> accepted examples | rejections, on disk;
3. write: training files, examples.jsonl, rejects.jsonl, dataset_info.json, manifest.json, the dataset card.

Every input row ends in exactly one of ``accepted`` or ``rejected`` (with a reason); the counts are checked to add
up before the manifest is written.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_gen.client.api import describe_error, is_fatal, is_request_error
from data_gen.client.batch import BatchingTeacher, BatchWriter, ingest
from data_gen.client.budget import Budget
from data_gen.client.cache import CachedTeacher, ResponseCache
from data_gen.client.limits import AdaptiveConcurrency, Governor, run_bounded
from data_gen.client.pricing import Price, load_price
from data_gen.client.types import Usage, normalize_endpoint
from data_gen.errors import ConfigError, InputError
from data_gen.kd import rows as kd
from data_gen.redact import RedactingFilter
from data_gen.run.config import DistillConfig, kd_server
from data_gen.run.ladder import Distiller, Outcome
from data_gen.run.report import build_manifest, estimate, example_meta, format_estimate, write_card
from data_gen.run.workspace import Workspace
from data_gen.sources.dedup import Deduplicator
from data_gen.sources.readers import Record, Rejected, SourceReport, duplicate, texts_of
from data_gen.sources.splits import assign_split
from data_gen.tasks.task import Task, load_task
from data_gen.teachers import Teacher, make_teacher
from data_gen.writers.outdir import OutputDir, recorded_files
from data_gen.writers.training import AtomicFiles, Example, TrainingWriter, jsonl_line, stale_training_files

log = logging.getLogger("data_gen")


class BudgetStop(RuntimeError):
    """The run stopped before a request that could exceed the budget; its outputs are written."""

    def __init__(self, reason: str, manifest: dict[str, Any]) -> None:
        super().__init__(reason)
        self.manifest = manifest


@dataclass
class Prepared:
    """Pass 1's result: rows on disk, ready to be asked; nothing has been spent yet."""

    task: Task
    source: SourceReport
    text_column: str
    to_ask: int
    input_rejected: int


@dataclass
class Stats:
    """What the ask pass accumulates, in constant memory."""

    asked: int = 0
    accepted: int = 0
    pending: int = 0
    sent: int = 0
    from_cache: int = 0
    reasks: int = 0
    bumps: int = 0
    sent_usage: Usage = field(default_factory=Usage)
    all_usage: Usage = field(default_factory=Usage)
    gold_pairs: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)

    def add(self, outcome: Outcome, task: Task) -> None:
        self.asked += 1
        self.accepted += outcome.accepted
        self.pending += outcome.reason == "batch_pending"
        self.sent += outcome.sent
        self.from_cache += outcome.from_cache
        self.reasks += max(0, outcome.asks - 1 - outcome.bumps)
        self.bumps += outcome.bumps
        self.sent_usage.add(outcome.sent_usage)
        self.all_usage.add(outcome.usage)
        if outcome.parsed is not None:
            self.repairs.update(outcome.parsed.repairs)
        if outcome.record.label is not None and outcome.reason not in ("budget_exhausted", "batch_pending"):
            predicted = task.predicted_label(outcome.parsed) if outcome.parsed else None
            self.gold_pairs[(outcome.record.label, predicted)] += 1


@dataclass
class RunContext:
    """Everything one run works with, in one place."""

    config: DistillConfig
    task: Task
    teacher: Teacher
    price: Price | None
    cache: ResponseCache | None
    budget: Budget | None
    governor: Governor
    work: Workspace
    out: Path
    started: float
    argv: list[str] | None
    timings: dict[str, float] = field(default_factory=dict)
    kd: dict[str, Any] | None = None  # what the logit-distillation pass did (--kd-top-k)

    def timed(self, name: str, since: tuple[float, float]) -> tuple[float, float]:
        """Record the wall and CPU seconds of a pass since ``since``; returns the new mark."""
        now = (time.perf_counter(), time.process_time())
        self.timings[f"{name}_s"] = round(now[0] - since[0], 3)
        self.timings[f"{name}_cpu_s"] = round(now[1] - since[1], 3)
        return now


# ---------------------------------------------------------------- pass 1: read
EVAL_PREFIX = "eval:"  # ids of evaluation texts in the duplicate index


def prepare(config: DistillConfig, task: Task, work: Workspace) -> Prepared:
    """Stream the input into the workspace: rejections, duplicates, normalized gold labels, rows to ask."""
    text_column = config.text_column or task.input_column
    source = config.source(config.input or "", text_column, task.control_characters)
    has_labels = bool(config.label_column) or source.format == "fpb"
    if has_labels and not task.labels:
        raise ConfigError(f"task {task.name} has no label field, so gold labels cannot be used; drop --label-column")
    checks = config.dedup or bool(config.decontaminate)
    dedup = Deduplicator(near=True, threshold=config.near_dup_threshold, db=work.db) if checks else None
    if dedup is not None:
        for path in config.decontaminate:  # registered first: an input row like one of them is contaminated
            for rid, text, where in texts_of(path, text_column, ("test",)):
                dedup.check(EVAL_PREFIX + rid, text, where)
    unknown: Counter = Counter()
    rejected = to_ask = 0
    for item in source:
        if isinstance(item, Record):
            first = work.first_row_of(item.id, item.row)
            if first is not None:
                item = duplicate(item.row, item.id, first, bool(config.id_column))
        if isinstance(item, Record) and has_labels:
            label = task.normalize_label(item.label, config.label_map)
            if label is None and item.label not in (None, ""):
                raw = str(item.label).strip()
                unknown[f"{raw} -> {config.label_map[raw]}" if raw in config.label_map else raw] += 1
            item = Record(item.id, item.text, item.row, label)
        if isinstance(item, Record) and dedup is not None:
            found = dedup.check(item.id, item.text, f"row {item.row} ({item.id})")
            if found and found[1].startswith(EVAL_PREFIX):
                item = Rejected(item.row, "contaminated", f"row {item.row}: {found[2]}, an evaluation text", item.id)
            elif found and config.dedup:
                item = Rejected(item.row, found[0], f"row {item.row}: {found[2]}", item.id)
        if isinstance(item, Rejected):
            work.reject(item.row, item.id, item.reason, item.detail)
            rejected += 1
        else:
            work.add_row(item)
            to_ask += 1
    for note in source.report.notes:
        log.warning(note)
    if unknown:
        shown = ", ".join(f"{value!r} ({n} rows)" for value, n in unknown.most_common(8))
        raise InputError(
            f"{config.input}: unknown gold label value(s) {shown}; expected one of {', '.join(task.labels)}; "
            "map them with --label-map RAW=LABEL,..."
        )
    return Prepared(task, source.report, text_column, to_ask, rejected)


# ---------------------------------------------------------------- pass 2: ask
async def ask_all(
    config: DistillConfig, task: Task, teacher: Any, work: Workspace, total: int, price: Price | None
) -> tuple[Stats, Distiller]:
    from tqdm import tqdm

    distiller = Distiller(config, task, teacher)
    stats = Stats()
    bar = tqdm(
        total=total,
        unit="row",
        desc=f"distill {task.name}",
        disable=not config.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )

    def done(outcome: Outcome) -> None:
        stats.add(outcome, task)
        record = outcome.record
        if outcome.accepted:
            assert outcome.parsed is not None
            split = assign_split(record.id, config.splits, config.split_salt)
            work.add_example(
                record.row,
                record.id,
                split,
                task.user_prompt(record.text),
                task.target(outcome.parsed),
                example_meta(teacher, outcome),
            )
        elif outcome.reason != "batch_pending":
            work.reject(record.row, record.id, outcome.reason or "", outcome.detail, outcome.key)
        bar.update(1)
        if not bar.disable and (stats.asked % 25 == 0 or stats.asked == total):
            cost = f"${price.cost(stats.sent_usage):.4f}" if price is not None else "$?"
            bar.set_postfix_str(
                f"accepted {100 * stats.accepted / stats.asked:.0f}% "
                f"tokens {stats.sent_usage.total_tokens:,} cost {cost}",
                refresh=False,
            )

    try:
        await run_bounded(work.rows(), distiller.ask, max(1, config.concurrency * 2), done)
    finally:
        bar.close()
    return stats, distiller


# ---------------------------------------------------------------- pass 3 (--kd-top-k): score
async def kd_scorer(config: DistillConfig, teacher: Any, cache: ResponseCache | None) -> Any:
    """The model that scores replies for logit distillation, loaded or reached and checked against the student's
    tokenizer before anything is asked: logit distillation compares distributions token by token."""
    from data_gen.teachers.local import LocalTeacher, load_tokenizer, tokenizer_fingerprint

    server = kd_server(config)
    if server is not None:
        from data_gen.kd.served import ServedScorer

        own = config.teacher == "openai" and normalize_endpoint(server) == normalize_endpoint(config.base_url or "")
        key = os.environ.get(config.api_key_env) if (own and config.api_key_env) else None  # never sent elsewhere
        model = config.kd_model or (config.model if own else None)
        limits = {"concurrency": config.concurrency, "timeout": config.timeout, "max_retries": config.max_retries}
        scorer = ServedScorer(server, config.student_tokenizer or "", config.kd_top_k, model, key, **limits)
        try:
            await scorer.check()
        except BaseException:
            await scorer.close()
            raise
    else:
        scorer = LocalTeacher(config.kd_teacher) if config.kd_teacher else teacher
        await scorer.check()
        if config.student_tokenizer is not None:
            student = load_tokenizer(config.student_tokenizer)
            if tokenizer_fingerprint(student) != tokenizer_fingerprint(scorer.tokenizer):
                raise ConfigError(
                    f"--student-tokenizer {config.student_tokenizer} does not tokenize like the KD teacher "
                    f"{scorer.path} (vocabularies of {len(student)} and {len(scorer.tokenizer)} tokens, or another "
                    "chat template): logit distillation needs a teacher of the student's family; use hard-label "
                    "distillation (no --kd-top-k)"
                )
    return kd.CachedScorer(scorer, cache) if (cache is not None and config.cache) else scorer


async def score_all(config: DistillConfig, task: Task, scorer: Any, work: Workspace) -> dict[str, Any]:
    """The teacher scores every accepted reply (top-k rows for Axolotl's KD trainer, the label belief), several at a
    time; examples whose rows cannot be had or used, or whose label the teacher doubts (--min-label-confidence),
    are rejected with the reason."""
    from tqdm import tqdm

    from data_gen.kd.served import ScoringError

    outcomes: Counter = Counter()
    confidences: list[float] = []

    async def score(item: tuple) -> tuple[tuple, Any, tuple[str, str] | None]:
        _row, rid, _split, user, assistant, _meta = item
        try:
            scored = await scorer.score(
                Example(rid, "", task.system_for(config.training_prompt), user, assistant).messages(), config.kd_top_k
            )
        except ScoringError as exc:
            return item, None, ("kd_rows_invalid", str(exc))
        except Exception as exc:
            if is_fatal(exc) or not is_request_error(exc):
                raise
            return item, None, ("kd_score_failed", describe_error(exc))
        return item, scored, None

    def record(result: tuple[tuple, Any, tuple[str, str] | None]) -> None:
        (row, rid, _split, _user, assistant, meta), scored, failure = result
        bar.update()
        if failure is None and (invalid := kd.check_rows(scored, config.kd_top_k)):
            failure = ("kd_rows_invalid", invalid)
        belief = None
        if task.label_field and failure is None:
            belief = kd.label_belief(scorer.tokenizer, scored, assistant, task.label_field, task.labels)
        if failure is not None:
            reason, detail = failure
        elif config.min_label_confidence and (belief is None or belief.confidence < config.min_label_confidence):
            shown = f"{belief.confidence:.3f}" if belief else "unreadable"
            reason = "low_confidence"
            detail = f"teacher probability of its label {shown} < {config.min_label_confidence}"
        else:
            if belief is not None:
                meta["label_belief"] = belief.to_dict()
                work.set_meta(row, meta)
                confidences.append(belief.confidence)
            work.add_kd(row, kd.dumps(scored))
            outcomes["scored"] += 1
            return
        work.drop_example(row)
        work.reject(row, rid, reason, f"row {row}: {detail}")
        outcomes[reason] += 1

    items = list(work.examples())
    bar = tqdm(total=len(items), unit="row", desc="score (kd)", disable=not config.progress, dynamic_ncols=True,
               file=sys.stderr)  # fmt: skip
    try:
        await run_bounded(items, score, max(1, config.concurrency), record)
    finally:
        bar.close()
    return {
        "top_k": config.kd_top_k,
        "teacher": {"model": scorer.model, "path": scorer.path},
        "student_tokenizer": config.student_tokenizer,
        "scored": outcomes.pop("scored", 0),
        "from_cache": getattr(scorer, "hits", 0),
        "rejected_by_reason": dict(outcomes),
        "min_label_confidence": config.min_label_confidence,
        "label_belief": {
            "examples": len(confidences),
            "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
        },
    }


# ---------------------------------------------------------------- pass 4: write
def write_outputs(config: DistillConfig, task: Task, work: Workspace, out: Path) -> dict[str, Any]:
    """Training files, examples.jsonl, rejects.jsonl and the registries, all renamed into place together."""
    name = config.name or task.name
    invalid: list[tuple[int, str, str]] = []
    for leftover in out.glob(".*.tmp"):  # temporary files of a run that was killed while writing
        leftover.unlink()
    with AtomicFiles(out) as files:
        writer = TrainingWriter(files, config.formats + (["kd"] if config.kd_top_k else []))
        examples = files.open("examples.jsonl")
        for row, rid, split, user, assistant, meta in work.examples():
            example = Example(rid, split, task.system_for(config.training_prompt), user, assistant, meta)
            if config.kd_top_k:
                scored = kd.loads(work.kd_of(row) or "")  # every example left after score_all has its rows
                example.kd = {"logprobs": scored.logprobs, "target_token_ids": scored.token_ids}
            errors = writer.add(example)
            if errors:
                invalid.append((row, rid, errors))
                continue
            examples.write(jsonl_line({"id": rid, "split": split, **meta}) + "\n")
        for row, rid, errors in invalid:  # never silently skipped: each becomes a rejection with its reason
            work.drop_example(row)
            work.reject(row, rid, "record_invalid", errors)
        written = writer.finish(name, config.out or str(out), list(config.splits))
        rejects = files.open("rejects.jsonl")
        for item in work.rejects():
            rejects.write(jsonl_line(item) + "\n")
        names = {*files._open}
        previous = recorded_files(out)  # read before this run's manifest replaces it
    for stale in stale_training_files(out, names, previous):
        stale.unlink()
    return written


# ---------------------------------------------------------------- the run
async def distill(config: DistillConfig, argv: list[str] | None = None) -> dict[str, Any]:
    """Run the whole job and return the manifest (also written to ``<out>/manifest.json``)."""
    started = time.time()
    task = load_task(config.task)
    needs_key = not (config.dry_run or config.batch_write or config.batch_ingest)
    probe = make_teacher(config.teacher_spec(), task, require_key=False)  # for names and endpoints only; sends nothing
    price = load_price(config.prices, probe.model, config.teacher)
    if price is None:
        log.warning("no price for model %r in %s: cost will be reported as unknown", probe.model, config.prices)
        if config.max_cost is not None:
            raise ConfigError(f"--max-cost needs a price for model {probe.model!r}: add it to {config.prices}")
    out = Path(config.out) if config.out else None
    folder = OutputDir(out, "data_gen", task.name, config.input, config.overwrite) if out else None
    if folder is not None:
        folder.check()  # a file, an unwritable folder, someone else's folder: one line, nothing created
    # paid work is kept: the teacher's replies (unless it is the free rules teacher) and the KD teacher's rows
    keep = probe.cacheable or config.kd_top_k > 0  # --no-cache still keeps the store and its ledger
    if config.dry_run:
        stored = out / "cache.sqlite" if (out and keep) else None
        cache = ResponseCache(stored) if stored is not None and stored.exists() else None  # creates nothing
        try:
            return await _dry_run(config, task, probe, price, cache)
        finally:
            if cache is not None:
                cache.close()
    assert out is not None and folder is not None
    with folder.run(store=keep) as cache:  # a run refused before it paid for anything leaves nothing behind
        if config.batch_ingest:
            return _ingest(config, cache, price.batch() if price is not None else None)
        return await _distill_into(config, task, price, cache, out, started, argv, needs_key)


async def _dry_run(
    config: DistillConfig, task: Task, teacher: Any, price: Price | None, cache: ResponseCache | None
) -> dict[str, Any]:
    """Read the input and print what the run would send and cost; nothing is sent or written."""
    with tempfile.TemporaryDirectory(prefix="fin-distill-") as scratch:
        work = Workspace(Path(scratch) / ".work.sqlite")
        try:
            prepared = prepare(config, task, work)
            est = estimate(config, task, teacher, price, cache, work, prepared)
        finally:
            work.close()
    print(format_estimate(est, config, teacher))
    return {"dry_run": est}


async def _distill_into(
    config: DistillConfig,
    task: Task,
    price: Price | None,
    cache: ResponseCache | None,
    out: Path,
    started: float,
    argv: list[str] | None,
    needs_key: bool,
) -> dict[str, Any]:
    budget = _budget(config, cache, price)
    governor = Governor(
        AdaptiveConcurrency(config.concurrency, config.adaptive_concurrency), config.rpm, config.tpm, budget
    )
    teacher = make_teacher(config.teacher_spec(), task, require_key=needs_key, governor=governor)
    work = Workspace(out / ".work.sqlite")
    handler = _log_file(out)
    try:
        mark = (time.perf_counter(), time.process_time())
        prepared = prepare(config, task, work)
        run = RunContext(config, task, teacher, price, cache, budget, governor, work, out, started, argv)
        mark = run.timed("read", mark)
        return await _run(run, prepared, mark)
    finally:
        log.removeHandler(handler)
        handler.close()
        work.close()
        await teacher.close()


async def _run(run: RunContext, prepared: Prepared, mark: tuple[float, float]) -> dict[str, Any]:
    config, task, teacher, cache, out = run.config, run.task, run.teacher, run.cache, run.out
    log.info(
        "start: task=%s teacher=%s model=%s endpoint=%s input=%s rows=%d to_ask=%d",
        task.name,
        teacher.kind,
        teacher.model,
        teacher.endpoint,
        config.input,
        prepared.source.rows,
        prepared.to_ask,
    )
    asker: Any = teacher
    batch_writer = scorer = None
    if config.batch_write:
        assert cache is not None
        batch_writer = BatchWriter(out / "batch")
        asker = BatchingTeacher(teacher, cache, batch_writer)
    else:
        await teacher.check()  # imports the SDK, opens the connection pool, GET /models: a one-time cost
        if config.kd_top_k:
            scorer = await kd_scorer(config, teacher, cache)  # checked before anything is asked
        mark = run.timed("connect", mark)
        if cache is not None and teacher.cacheable:
            asker = CachedTeacher(teacher, cache, reuse=config.cache)  # --no-cache: ask again, still store
    try:
        try:
            stats, distiller = await ask_all(config, task, asker, run.work, prepared.to_ask, run.price)
        finally:
            if batch_writer is not None:
                batch_writer.close()
        mark = run.timed("ask", mark)
        if batch_writer is not None:
            return _batch_summary(stats, batch_writer, out)
        if scorer is not None:
            run.kd = await score_all(config, task, scorer, run.work)
            log.info("kd: %s", run.kd)
            mark = run.timed("score", mark)
    finally:
        if scorer is not None:
            await scorer.close()
    written = write_outputs(config, task, run.work, out)
    run.timed("write", mark)
    manifest = build_manifest(run, prepared, stats, written, distiller.stop_reason)
    write_card(out, manifest)
    log.info(
        "done: %d accepted, %d rejected, %.1f rows/s",
        manifest["counts"]["accepted"],
        manifest["counts"]["rejected"],
        manifest["rows_per_second"],
    )
    if distiller.stop_reason:
        raise BudgetStop(distiller.stop_reason, manifest)
    return manifest


def _budget(config: DistillConfig, cache: ResponseCache | None, price: Price | None) -> Budget:
    """The accountant of every call, with the caps if any; it starts from what the folder's ledger already holds."""
    counting = f"the tokenizer {config.tokenizer}" if config.tokenizer else (
        "a conservative estimate, a token per 3 ASCII characters; --tokenizer makes it exact")  # fmt: skip
    spent = cache.spent() if cache is not None else None
    name = config.base_url or config.teacher
    return Budget(config.max_cost, config.max_tokens, price, cache, spent, name=name, counting=counting)


def _ingest(config: DistillConfig, cache: ResponseCache | None, price: Price | None) -> dict[str, Any]:
    if cache is None:
        raise ConfigError("--batch-ingest needs --out (the output directory the batch files were written for)")
    paths = [Path(p) for p in config.batch_ingest]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"batch output file(s) not found: {', '.join(missing)}")
    report = ingest(paths, cache, price)
    for line in report.lines_of_text():
        print(line)
    return {"batch_ingest": report.__dict__ | {"failed": dict(report.failed)}}


def _batch_summary(stats: Stats, writer: BatchWriter, out: Path) -> dict[str, Any]:
    files = [str(p) for p in writer.files]
    print(
        f"{stats.asked:,} rows asked: {stats.accepted:,} answered from the cache, {stats.pending:,} wait for "
        f"{writer.lines:,} requests written to {len(files)} batch file(s) in {out / 'batch'}"
    )
    if files:
        print(
            "submit them to the OpenAI Batch API (or run `vllm run-batch -i FILE -o RESULTS --model M` for each),"
            " then store the results with --batch-ingest RESULTS... and run the same command again"
        )
    return {
        "batch_write": {
            "files": files,
            "requests": writer.lines,
            "rows_waiting": stats.pending,
            "rows_answered": stats.accepted,
        }
    }


def _log_file(out: Path) -> logging.Handler:
    handler = logging.FileHandler(out / "distill.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    log.addHandler(handler)
    return handler
