"""Pass 1, read: input rows -> rejections (bad rows, duplicates, contaminated) | rows to ask, in the workspace.
Unknown gold labels and missing columns stop the run here, before anything is spent."""

from __future__ import annotations

import logging
from collections import Counter

from data_gen.errors import ConfigError, InputError
from data_gen.run.config import DistillConfig
from data_gen.run.state import Prepared
from data_gen.run.workspace import Workspace
from data_gen.sources.dedup import CHUNK, Deduplicator, batched
from data_gen.sources.readers import texts_of
from data_gen.sources.records import OtherShard, Record, Rejected, duplicate
from data_gen.tasks.task import Task

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
            texts = texts_of(path, text_column, ("test",))
            dedup.register_all((EVAL_PREFIX + rid, text, where) for rid, text, where in texts)
    unknown: Counter = Counter()
    rejected = to_ask = 0
    for part in batched(source, CHUNK):
        items = [_first_of_its_id(item, work, bool(config.id_column)) for item in part]
        checked = [item for item in items if isinstance(item, (Record, OtherShard))]
        matches = iter(dedup.check_many(map(_entry, checked)) if dedup is not None else [None] * len(checked))
        for item in items:
            found = next(matches) if isinstance(item, (Record, OtherShard)) else None
            if item is None or isinstance(item, OtherShard):
                continue  # another shard's row: checked (registered) as one process would, then left to its shard
            if isinstance(item, Record) and has_labels:
                label = task.normalize_label(item.label, config.label_map)
                if label is None and item.label not in (None, ""):
                    raw = str(item.label).strip()
                    unknown[f"{raw} -> {config.label_map[raw]}" if raw in config.label_map else raw] += 1
                item = Record(item.id, item.text, item.row, label)
            if isinstance(item, Record) and found is not None:
                if found[1].startswith(EVAL_PREFIX):
                    detail = f"row {item.row}: {found[2]}, an evaluation text"
                    item = Rejected(item.row, "contaminated", detail, item.id)
                elif config.dedup:
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


def _first_of_its_id(item: Item, work: Workspace, by_id: bool) -> Item | None:
    """The item; for a row whose id an earlier row had, its rejection (or None: another shard's, not checked)."""
    if isinstance(item, Rejected):
        return item
    record = item.record if isinstance(item, OtherShard) else item
    first = work.first_row_of(record.id, record.row)
    if first is None:
        return item
    return None if isinstance(item, OtherShard) else duplicate(record.row, record.id, first, by_id)


def _entry(item: Record | OtherShard) -> tuple[str, str, str]:
    """What the duplicate index is given of a row: its id, text and place."""
    record = item.record if isinstance(item, OtherShard) else item
    return record.id, record.text, f"row {record.row} ({record.id})"
