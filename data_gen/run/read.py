"""Pass 1, read: input rows -> rejections (bad rows, duplicates, contaminated) | rows to ask, in the workspace.
Unknown gold labels and missing columns stop the run here, before anything is spent."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING

from data_gen.errors import ConfigError, InputError
from data_gen.run.config import DistillConfig
from data_gen.run.state import Prepared
from data_gen.run.workspace import Workspace
from data_gen.sources.dedup import Deduplicator
from data_gen.sources.readers import texts_of
from data_gen.sources.records import OtherShard, Record, Rejected, duplicate
from data_gen.tasks.task import Task

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("data_gen")

EVAL_PREFIX = "eval:"  # ids of evaluation texts in the duplicate index
Item = Record | Rejected | OtherShard


def prepare(config: DistillConfig, task: Task, work: Workspace) -> Prepared:
    """Stream the input into the workspace: rejections, duplicates, normalized gold labels, rows to ask."""
    text_column = config.text_column or task.input_column
    checks = config.dedup or bool(config.decontaminate)
    # a --shard run's duplicate detection sees every row of the file (the other shards' are read, checked and
    # registered, never asked), so it rejects exactly the rows that one process would: a near-duplicate pair
    # split across two shards is caught, by the shard of the later row
    source = config.source(config.input or "", text_column, task.control_characters, other_shards=checks)
    has_labels = bool(config.label_column) or source.format == "fpb"
    if has_labels and not task.labels:
        raise ConfigError(f"task {task.name} has no label field, so gold labels cannot be used; drop --label-column")
    dedup = Deduplicator(near=True, threshold=config.near_dup_threshold, db=work.db) if checks else None
    if dedup is not None:
        for path in config.decontaminate:  # registered first: an input row like one of them is contaminated
            for rid, text, where in texts_of(path, text_column, ("test",)):
                dedup.check(EVAL_PREFIX + rid, text, where)
    unknown: Counter = Counter()
    rejected = to_ask = 0
    for item, signature in with_signatures(source, dedup):
        if isinstance(item, OtherShard):  # checked as one process would check it, then left to its shard
            other = item.record
            if dedup is not None and work.first_row_of(other.id, other.row) is None:
                dedup.check(other.id, other.text, f"row {other.row} ({other.id})", signature=signature)
            continue
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
            found = dedup.check(item.id, item.text, f"row {item.row} ({item.id})", signature=signature)
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


def with_signatures(
    items: Iterable[Item], dedup: Deduplicator | None, chunk: int = 512
) -> Iterator[tuple[Item, np.ndarray | None]]:
    """Each item with the MinHash signature of its text (None for a rejection, or without near-duplicate
    detection), computed ``chunk`` rows at a time: in bulk they cost a sixth of one at a time."""
    if dedup is None or not dedup.near:
        yield from ((item, None) for item in items)
        return
    for part in batched(items, chunk):
        texts = [item.text if isinstance(item, Record) else item.record.text for item in part if _has_text(item)]
        signatures = iter(dedup.signatures(texts))
        for item in part:
            yield item, next(signatures) if _has_text(item) else None


def _has_text(item: Item) -> bool:
    return isinstance(item, (Record, OtherShard))


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """``itertools.batched`` (Python 3.12), as lists."""
    iterator = iter(items)
    while part := list(islice(iterator, size)):
        yield part
