"""Uncertainty: bootstrap 95% confidence intervals for headline metrics, and paired comparisons of two models.

A headline metric is a function of the rows (one per test item, in the same order for every model), so one
bootstrap draw of row indices serves every metric and both models of a pair (a paired bootstrap). Accuracy
differences also get McNemar's exact test on the discordant pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_gen.tasks.kinds import KINDS
from data_gen.tasks.task import Task

CONFIDENCE = 0.95


@dataclass
class Metric:
    """A headline metric as arrays over rows (a metric kind's ``Statistic``, see ``data_gen.tasks.kinds.base``)."""

    kind: str
    values: np.ndarray
    weights: np.ndarray | None = None
    classes: int = 0

    def value(self, index: np.ndarray | None = None) -> float:
        index = np.arange(len(self.values)) if index is None else index
        return float(self.batch(index[None, :])[0])

    def batch(self, draws: np.ndarray) -> np.ndarray:
        """The metric on each row of ``draws`` (a matrix of row indices)."""
        if self.kind == "mean":
            picked = self.values[draws]
            counts = (~np.isnan(picked)).sum(axis=1)
            sums = np.nansum(picked, axis=1)
            return np.divide(sums, counts, out=np.full(len(draws), np.nan), where=counts > 0)
        if self.kind == "ratio":
            assert self.weights is not None
            top, bottom = self.values[draws].sum(axis=1), self.weights[draws].sum(axis=1)
            return np.divide(top, bottom, out=np.full(len(draws), np.nan), where=bottom > 0)
        return np.array([self._f1(draw) for draw in draws])

    def _f1(self, draw: np.ndarray) -> float:
        assert self.weights is not None
        gold, pred = self.values[draw], self.weights[draw]
        keep = gold >= 0
        gold, pred = gold[keep], pred[keep]
        k = self.classes
        if not len(gold):
            return math.nan
        answered = pred < k
        matrix = np.bincount(gold[answered] * k + pred[answered], minlength=k * k).reshape(k, k)
        tp, predicted = np.diag(matrix), matrix.sum(axis=0)
        support = np.bincount(gold, minlength=k)
        precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
        recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros(k), where=total > 0)
        if self.kind == "weighted_f1":
            return float((f1 * support).sum() / len(gold))
        present = (support > 0) | (predicted > 0)
        return float(f1[present].mean()) if present.any() else 0.0


def headline_metrics(task: Task, rows: list[dict[str, Any]]) -> dict[str, Metric]:
    """The metrics that get intervals, by name (``format.schema_valid``, ``sentiment.weighted_f1``, ...)."""
    metrics: dict[str, Metric] = {}
    for step in ("thinking", "parsed", "schema_valid"):
        metrics[f"format.{step}"] = Metric("mean", np.array([float(r["format"][step]) for r in rows]))
    agreement = [r["format"]["agreement"] for r in rows]
    if any(a is not None for a in agreement):
        metrics["format.agreement"] = Metric("mean", np.array([np.nan if a is None else float(a) for a in agreement]))
    for name, kind in task.metrics.items():
        fields = [r["fields"][name] for r in rows]
        if all(f["gold"] is None for f in fields):
            continue
        for key, statistic in KINDS[kind].headline(task, name, fields).items():
            metrics[f"{name}.{key}"] = Metric(*statistic)
    return metrics


@dataclass(frozen=True)
class Draws:
    """``resamples`` bootstrap draws of ``n`` row indices, made from ``seed`` in chunks of about ``cells`` indices:
    iterating gives the same draws every time, and memory holds one chunk (not rows x resamples) at a time."""

    n: int
    resamples: int
    seed: int = 0
    cells: int = 1 << 20

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        per_chunk = max(1, self.cells // max(1, self.n))
        for start in range(0, self.resamples, per_chunk):
            yield rng.integers(0, self.n, size=(min(per_chunk, self.resamples - start), self.n))


def bootstrap(metrics: dict[Any, Metric], draws: Draws) -> dict[Any, np.ndarray]:
    """Every metric on every draw, in one pass over the draws: key -> one value per resample. Metrics of two models
    bootstrapped together see the same resampled rows (a paired bootstrap)."""
    parts: dict[Any, list[np.ndarray]] = {key: [] for key in metrics}
    for chunk in draws:
        for key, metric in metrics.items():
            parts[key].append(metric.batch(chunk))
    return {key: np.concatenate(values) for key, values in parts.items()}


def interval(samples: np.ndarray) -> tuple[float | None, float | None]:
    """The percentile interval of bootstrap samples (NaN draws, e.g. with no gold rows, are left out)."""
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return None, None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def with_intervals(metrics: dict[str, Metric], samples: dict[str, np.ndarray]) -> dict[str, dict[str, float | None]]:
    """name -> {value, low, high}, the interval from the metric's bootstrap ``samples``."""
    out = {}
    for name, metric in metrics.items():
        value = metric.value()
        low, high = interval(samples[name])
        out[name] = {"value": None if math.isnan(value) else value, "low": low, "high": high}
    return out


def compare(
    a: dict[str, Metric], b: dict[str, Metric], samples_a: dict[str, np.ndarray], samples_b: dict[str, np.ndarray]
) -> dict[str, dict[str, float | None]]:
    """For each metric both have: the difference b - a and its paired-bootstrap interval (samples on the same draws)."""
    out = {}
    for name in a.keys() & b.keys():
        diff = b[name].value() - a[name].value()
        low, high = interval(samples_b[name] - samples_a[name])
        out[name] = {"difference": None if math.isnan(diff) else diff, "low": low, "high": high}
    return dict(sorted(out.items()))


def mcnemar(correct_a: list[bool], correct_b: list[bool]) -> dict[str, float | int]:
    """McNemar's exact test: ``only_a`` rows right only for A, ``only_b`` right only for B; two-sided p-value of
    the binomial test of the discordant pairs (1.0 when there are none)."""
    only_a = sum(x and not y for x, y in zip(correct_a, correct_b, strict=True))
    only_b = sum(y and not x for x, y in zip(correct_a, correct_b, strict=True))
    n = only_a + only_b
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    p = min(1.0, 2 * tail / 2**n) if n else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_value": p}
