"""Test sets: rows read by ``data_gen``'s sources, each with its gold answer as a partial answer of the task.

A gold answer has the task's field names: ``{"sentiment": "negative"}`` for a labelled sentence (FPB, TFNS, any
CSV with a label column), ``{"entities": [...]}`` for FinEntity, the teacher's whole answer for a ``data_gen``
output directory, ``{"answer": "..."}`` for questions with reference answers. Scoring compares the fields a gold
answer has. Every row read ends selected or rejected with a reason; problems that would make the whole run
meaningless (a missing file, a label value that is not in the task's label set) are one-line errors raised here,
before any server starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_gen.errors import InputError
from data_gen.sources.readers import Source, is_distilled
from data_gen.sources.records import Record, Rejected, duplicate
from data_gen.tasks.task import Task
from eval.config import EvalConfig

ENTITY_NAME_KEYS = ("name", "value", "entity", "text")
ENTITY_LABEL_KEYS = ("sentiment", "label", "tag")


@dataclass
class Item:
    """One test row: its input and the gold answer (possibly empty: then only the format is scored)."""

    id: str
    text: str
    row: int
    gold: dict[str, Any]


@dataclass
class EvalSet:
    items: list[Item]
    path: str
    kind: str  # data_gen | fpb | csv | jsonl | ...
    rows_read: int
    rejected: list[Rejected] = field(default_factory=list)
    not_selected: int = 0  # rows of other splits in a data_gen directory
    notes: list[str] = field(default_factory=list)
    overlap: dict[str, Any] | None = None  # test texts found in the training data (eval.overlap)
    training_prompt: str | None = None  # a data_gen folder: the system prompt its training files carry

    @property
    def data_hash(self) -> str:
        """SHA-256 over the ids, texts and gold answers: two runs with the same hash saw the same test set."""
        digest = hashlib.sha256()
        for item in self.items:
            digest.update(json.dumps([item.id, item.text, item.gold], sort_keys=True, ensure_ascii=False).encode())
        return digest.hexdigest()

    def facts(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "rows_read": self.rows_read,
            "not_selected": self.not_selected,
            "rejected": len(self.rejected),
            "rejected_reasons": dict(Counter(r.reason for r in self.rejected)),
            "evaluated": len(self.items),
            "sha256": self.data_hash,
            "gold_fields": sorted({name for item in self.items for name in item.gold}),
            "notes": self.notes,
            "overlap": self.overlap,
            "training_prompt": self.training_prompt,
        }


def load_eval_set(config: EvalConfig, task: Task) -> EvalSet:
    """Read ``config.data`` into Items; raises InputError (one line) for a problem that stops the run."""
    path = Path(config.data or "")
    if not path.exists():
        raise InputError(f"test data not found: {path}")
    if is_distilled(path):
        return _distilled(config, task, path)
    source = config.source(path, task.input_column, task.control_characters)
    has_gold = bool(config.label_column) or source.format == "fpb"
    evalset = EvalSet([], str(path), source.format, 0)
    unknown: Counter[str] = Counter()
    first_row: dict[str, int] = {}
    for record in source:
        if isinstance(record, Record) and record.id in first_row:
            record = duplicate(record.row, record.id, first_row[record.id], bool(config.id_column))
        if isinstance(record, Rejected):
            evalset.rejected.append(record)
            continue
        first_row[record.id] = record.row
        gold: dict[str, Any] = {}
        if has_gold:
            if record.label is None or (isinstance(record.label, str) and not record.label.strip()):
                evalset.rejected.append(Rejected(record.row, "no_gold", f"row {record.row}: the label is empty"))
                continue
            gold, problem = to_gold(task, record.label, config.label_map)
            if problem:
                unknown[problem] += 1
                continue
        evalset.items.append(Item(record.id, record.text, record.row, gold))
    evalset.rows_read = source.report.rows
    evalset.not_selected += source.report.outside_sample
    evalset.notes = list(source.report.notes)
    if unknown:
        shown = ", ".join(f"{value} ({n} rows)" for value, n in unknown.most_common(6))
        raise InputError(
            f"{path}: gold label value(s) not in the task's label set: {shown}; the labels are "
            f"{', '.join(task.labels) or '(none)'}; map them with --label-map RAW=LABEL,..."
        )
    return _checked(evalset, path)


def _distilled(config: EvalConfig, task: Task, path: Path) -> EvalSet:
    """The ``--split`` rows of a data_gen output directory, scored against the teacher's answer or the gold label."""
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    made_for = (manifest.get("config") or {}).get("task")
    if made_for and Path(made_for).name != task.name:
        raise InputError(f"{path} was distilled for task {made_for!r}, not {task.name!r}; pass --task {made_for}")
    source = Source(path / "examples.jsonl", "jsonl", "text", "id", None, extra_columns=("split", "answer", "gold"),
                    control_characters="keep", allow_empty=True)  # fmt: skip
    # outputs written before the student prompt existed carry the teacher's prompt in their training files
    evalset = EvalSet(
        [], str(path), "data_gen", 0, training_prompt=manifest["config"].get("training_prompt", "teacher")
    )
    splits: Counter[str] = Counter()
    for record in source:
        if isinstance(record, Rejected):
            evalset.rejected.append(record)
            continue
        extra = record.extra or {}
        splits[str(extra.get("split"))] += 1
        if extra.get("split") != config.split:
            evalset.not_selected += 1
            continue
        if config.limit is not None and len(evalset.items) >= config.limit:
            evalset.not_selected += 1
            continue
        if config.reference == "gold":
            if extra.get("gold") is None:
                evalset.rejected.append(Rejected(record.row, "no_gold", f"line {record.row}: no gold label", record.id))
                continue
            gold = {task.label_field: extra["gold"]} if task.label_field else {}
        else:
            gold = {name: value for name, value in (extra.get("answer") or {}).items() if name in task.metrics}
        evalset.items.append(Item(record.id, record.text, record.row, gold))
    evalset.rows_read = source.report.rows
    if not evalset.items and splits:
        have = ", ".join(f"{name} ({n})" for name, n in sorted(splits.items()))
        raise InputError(f"{path}: no examples in split {config.split!r}; the splits are: {have}")
    return _checked(evalset, path)


def _checked(evalset: EvalSet, path: Path) -> EvalSet:
    if not evalset.items:
        reasons = Counter(r.reason for r in evalset.rejected)
        detail = f" ({', '.join(f'{k}: {v}' for k, v in reasons.items())})" if reasons else ""
        raise InputError(f"{path}: no rows to evaluate{detail}")
    return evalset


def to_gold(task: Task, raw: Any, label_map: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """A raw gold value -> (partial answer, problem). A list is an entity list (FinEntity annotations or
    ``{"name", "sentiment"}`` items); a mapping is a partial answer; anything else is the label."""
    if isinstance(raw, str) and raw.strip()[:1] in "[{":
        with contextlib.suppress(json.JSONDecodeError):
            raw = json.loads(raw)
    if hasattr(raw, "tolist"):  # an array from Parquet or a saved dataset
        raw = raw.tolist()
    if isinstance(raw, list):
        return _gold_entities(task, raw, label_map)
    if isinstance(raw, dict):
        gold: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in task.metrics:
                continue
            if task.metrics[name] in ("classification", "ordinal"):
                allowed = task.enum(name)
                match = next((v for v in allowed if str(v).casefold() == str(value).strip().casefold()), None)
                if match is None:
                    return {}, f"{name}={value!r}"
                value = match
            gold[name] = value
        return gold, None
    if not task.label_field:
        answer_field = next((n for n, kind in task.metrics.items() if kind == "text"), None)
        return ({answer_field: str(raw).strip()}, None) if answer_field else ({}, None)
    label = task.normalize_label(raw, label_map)
    if label is None:
        text = str(raw).strip()
        return {}, repr(f"{text} -> {label_map[text]}" if text in label_map else text)
    return {task.label_field: label}, None


def _gold_entities(task: Task, items: list[Any], label_map: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    field_name = next((n for n, kind in task.metrics.items() if kind == "entities"), None)
    if field_name is None:
        return {}, f"an entity list, but task {task.name} scores no entities"
    entities = []
    for item in items:
        if not isinstance(item, dict):
            return {}, f"entity {item!r} is not an object"
        name = next((str(item[k]).strip() for k in ENTITY_NAME_KEYS if item.get(k)), None)
        raw = next((item[k] for k in ENTITY_LABEL_KEYS if item.get(k) is not None), None)
        label = task.normalize_label(raw, label_map) if raw is not None else None
        if not name or label is None:
            return {}, f"entity {item!r}"
        entities.append({"name": name, "sentiment": label})
    return {field_name: entities}, None
