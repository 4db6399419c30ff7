"""What a metric kind is: the functions eval calls for each answer field the task scores with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from data_gen.tasks.task import Task

Scores = dict[str, Any]  # one row's scores of one field (JSON-ready; written to predictions.jsonl)
Report = dict[str, Any]  # many rows' aggregate of one field (JSON-ready; written to metrics.json)


class Statistic(NamedTuple):
    """A headline statistic as arrays over rows, which eval.stats bootstraps.

    ``mean``: the mean of ``values`` where not NaN; ``ratio``: sum(``values``) / sum(``weights``); ``macro_f1`` /
    ``weighted_f1``: ``values`` are gold class codes (-1: no gold), ``weights`` predicted codes (``classes``:
    missing)."""

    kind: str
    values: np.ndarray
    weights: np.ndarray | None = None
    classes: int = 0


class Column(NamedTuple):
    """One column of a kind's table in report.md: its header and how to read it from a field's report."""

    header: str
    read: Callable[[Report], Any]  # a float is shown with 3 decimals, an int or str as it is, None as "n/a"


@dataclass(frozen=True)
class MetricKind:
    """How one answer field is scored (``metrics: {field: kind}`` in task.yaml).

    ``value`` keeps a prediction only when it is valid for the field (else it is missing, never mapped to a class);
    ``score`` compares one valid-or-missing prediction with its gold value; ``aggregate`` makes the field's report
    from the scored rows that have gold; ``headline`` names the statistics that get intervals (``{field}.{key}``);
    ``columns`` lay out its table in report.md. ``classes``: the field is a class field (its values are a schema
    enum; it gets McNemar's test on accuracy, a confusion matrix and per-class F1 plots)."""

    name: str
    summary: str
    value: Callable[[Task, str, Any], Any]
    score: Callable[[Task, str, Any, Any], Scores]
    aggregate: Callable[[Task, str, list[Scores]], Report]
    headline: Callable[[Task, str, list[Scores]], dict[str, Statistic]]
    columns: Callable[[Task, str], tuple[Column, ...]]
    classes: bool = False


def rate(count: float, total: float) -> float:
    """``count / total``, 0 when there is nothing to count."""
    return count / total if total else 0.0


def missing_rate(scored: list[Scores]) -> float:
    """The share of rows whose prediction was missing."""
    return rate(sum(s["predicted"] is None for s in scored), len(scored))
