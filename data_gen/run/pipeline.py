"""The distillation run: streamed passes, one module each, so that memory stays flat however large the input is:

1. read (``read.py``): input rows -> rejections (bad rows, duplicates) | rows to ask, in the workspace; unknown
   gold labels and missing columns stop the run here, before anything is spent;
2. ask (``ask.py``): rows -> teacher (through the cache, limits and budget) -> accepted examples | rejections;
3. score (``score.py``, ``--kd-top-k`` only): the KD teacher's top-k rows for every accepted example;
4. write (``write.py``): training files, examples.jsonl, rejects.jsonl, dataset_info.json; then the manifest and
   the dataset card (``report.py``).

``--dry-run`` stops after pass 1 and prints the plan (``plan.py``). Every input row ends in exactly one of
``accepted`` or ``rejected`` (with a reason); the counts are checked to add up before the manifest is written.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from data_gen.client.batch import BatchingTeacher, BatchWriter, ingest
from data_gen.client.budget import Budget
from data_gen.client.cache import CachedTeacher, ResponseCache
from data_gen.client.limits import AdaptiveConcurrency, Governor
from data_gen.client.pricing import Price, load_price
from data_gen.errors import ConfigError, InputError
from data_gen.redact import RedactingFilter
from data_gen.run.ask import ask_all
from data_gen.run.config import DistillConfig
from data_gen.run.plan import estimate, format_estimate
from data_gen.run.read import prepare
from data_gen.run.report import build_manifest, write_card
from data_gen.run.score import kd_scorer, score_all
from data_gen.run.state import BudgetStop, Prepared, RunContext, Stats
from data_gen.run.workspace import Workspace
from data_gen.run.write import write_outputs
from data_gen.tasks.loader import load_task
from data_gen.tasks.task import Task
from data_gen.teachers import make_teacher
from data_gen.writers.outdir import OutputDir

__all__ = ["BudgetStop", "distill"]

log = logging.getLogger("data_gen")


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
    """Read the input and plan what the run would send and cost (``lines``, for the CLI to print); nothing is sent
    or written."""
    with tempfile.TemporaryDirectory(prefix="fin-distill-") as scratch:
        work = Workspace(Path(scratch) / ".work.sqlite")
        try:
            prepared = prepare(config, task, work)
            est = estimate(config, task, teacher, price, cache, work, prepared)
        finally:
            work.close()
    return {"dry_run": est, "lines": format_estimate(est, config, teacher).splitlines()}


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
    with steady_heap():  # the passes that allocate per row
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


@contextmanager
def steady_heap() -> Iterator[None]:
    """Python's cyclic garbage collector, tuned for passes that make and drop a few hundred objects per row while
    the modules and the run's state live to the end: what exists now is frozen out of every collection, and the
    youngest generation is collected every 10,000 allocations instead of 700. At 300 requests/s this took the
    collector from 0.9 s to 0.25 s of a 4,000-row run (docs/benchmarks.md). Restored on the way out."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _budget(config: DistillConfig, cache: ResponseCache | None, price: Price | None) -> Budget:
    """The accountant of every call, with the caps if any; it starts from what the folder's ledger already holds."""
    counting = f"the tokenizer {config.tokenizer}" if config.tokenizer else (
        "a conservative estimate, a token per 3 ASCII characters; --tokenizer makes it exact")  # fmt: skip
    spent = cache.spent() if cache is not None else None
    name = config.base_url or config.teacher
    max_cost, max_tokens = budget_share(config)
    return Budget(max_cost, max_tokens, price, cache, spent, name=name, counting=counting)


def budget_share(config: DistillConfig) -> tuple[float | None, int | None]:
    """The caps this run may spend: all of --max-cost / --max-tokens, or a --shard K/N run's 1/N of them (the caps
    are the whole job's, so that N shards together stay within them)."""
    shard = config.shard_numbers()
    parts = shard[1] if shard else 1
    cost = config.max_cost / parts if config.max_cost is not None else None
    tokens = config.max_tokens // parts if config.max_tokens is not None else None
    return cost, tokens


def _ingest(config: DistillConfig, cache: ResponseCache | None, price: Price | None) -> dict[str, Any]:
    if cache is None:
        raise ConfigError("--batch-ingest needs --out (the output directory the batch files were written for)")
    paths = [Path(p) for p in config.batch_ingest]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"batch output file(s) not found: {', '.join(missing)}")
    report = ingest(paths, cache, price)
    return {"batch_ingest": report.__dict__ | {"failed": dict(report.failed)}, "lines": list(report.lines_of_text())}


def _batch_summary(stats: Stats, writer: BatchWriter, out: Path) -> dict[str, Any]:
    files = [str(p) for p in writer.files]
    lines = [
        f"{stats.asked:,} rows asked: {stats.accepted:,} answered from the cache, {stats.pending:,} wait for "
        f"{writer.lines:,} requests written to {len(files)} batch file(s) in {out / 'batch'}"
    ]
    if files:
        lines.append(
            "submit them to the OpenAI Batch API (or run `vllm run-batch -i FILE -o RESULTS --model M` for each),"
            " then store the results with --batch-ingest RESULTS... and run the same command again"
        )
    return {
        "lines": lines,
        "batch_write": {
            "files": files,
            "requests": writer.lines,
            "rows_waiting": stats.pending,
            "rows_answered": stats.accepted,
        },
    }


def _log_file(out: Path) -> logging.Handler:
    handler = logging.FileHandler(out / "distill.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    log.addHandler(handler)
    return handler
