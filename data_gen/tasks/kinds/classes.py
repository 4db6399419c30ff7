"""Class fields: ``classification`` (accuracy, macro / weighted F1, per-class P / R / F1, confusion matrix) and
``ordinal`` (the same, plus the mean absolute error in steps of the schema's enum order, e.g. High / Medium / Low)."""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from data_gen.tasks.kinds.base import Column, MetricKind, Report, Scores, Statistic, rate
from data_gen.tasks.metrics import classification_report

if TYPE_CHECKING:
    from data_gen.tasks.task import Task


def _value(task: Task, name: str, value: Any) -> Any:
    return value if value in task.enum(name) else None


def _score(task: Task, name: str, predicted: Any, gold: Any) -> Scores:
    return {"correct": predicted == gold}


def _score_ordinal(task: Task, name: str, predicted: Any, gold: Any) -> Scores:
    order = task.enum(name)
    error = abs(order.index(predicted) - order.index(gold)) if predicted is not None else None
    return {"correct": predicted == gold, "error": error}


def _aggregate(task: Task, name: str, scored: list[Scores]) -> Report:
    report = classification_report([s["gold"] for s in scored], [s["predicted"] for s in scored], task.enum(name))
    report["missing_rate"] = rate(report["missing"], report["n"])
    return report


def _aggregate_ordinal(task: Task, name: str, scored: list[Scores]) -> Report:
    report = _aggregate(task, name, scored)
    errors = [s["error"] for s in scored if s["error"] is not None]
    report["mean_abs_error"] = statistics.fmean(errors) if errors else None
    report["order"] = task.enum(name)
    return report


def _headline(task: Task, name: str, fields: list[Scores]) -> dict[str, Statistic]:
    labels = task.enum(name)
    code = {label: i for i, label in enumerate(labels)}
    gold = np.array([code.get(f["gold"], -1) if f["gold"] is not None else -1 for f in fields])
    pred = np.array([code.get(f["predicted"], len(labels)) for f in fields])
    has_gold = gold >= 0
    return {
        "accuracy": Statistic("mean", np.where(has_gold, (gold == pred).astype(float), np.nan)),
        "macro_f1": Statistic("macro_f1", gold, pred, len(labels)),
        "weighted_f1": Statistic("weighted_f1", gold, pred, len(labels)),
        "missing_rate": Statistic("mean", np.where(has_gold, (pred == len(labels)).astype(float), np.nan)),
    }


CLASS_COLUMNS = (
    Column("n", lambda r: r["n"]),
    Column("accuracy", lambda r: r["accuracy"]),
    Column("macro-F1", lambda r: r["macro_f1"]),
    Column("weighted F1", lambda r: r["weighted_f1"]),
    Column("missing", lambda r: r["missing_rate"]),
)


def _per_class(task: Task, name: str) -> tuple[Column, ...]:
    """One "P / R / F1" column per class of the field."""

    def reader(label: str) -> Any:
        return lambda r: " / ".join(f"{r['per_class'][label][k]:.2f}" for k in ("precision", "recall", "f1"))

    return tuple(Column(f"{label} P / R / F1", reader(label)) for label in task.enum(name))


def _columns(task: Task, name: str) -> tuple[Column, ...]:
    return (*CLASS_COLUMNS, *_per_class(task, name))


def _columns_ordinal(task: Task, name: str) -> tuple[Column, ...]:
    return (*CLASS_COLUMNS, Column("mean abs error", lambda r: r["mean_abs_error"]), *_per_class(task, name))


CLASSIFICATION = MetricKind(
    name="classification",
    summary="accuracy, macro-F1, weighted F1, per-class precision / recall / F1, confusion matrix",
    value=_value,
    score=_score,
    aggregate=_aggregate,
    headline=_headline,
    columns=_columns,
    classes=True,
)

ORDINAL = replace(
    CLASSIFICATION,
    name="ordinal",
    summary="classification's metrics plus the mean absolute error in steps of the schema's enum order",
    score=_score_ordinal,
    aggregate=_aggregate_ordinal,
    columns=_columns_ordinal,
)
