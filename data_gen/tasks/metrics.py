"""Classification metrics in plain Python (accuracy, per-class and macro / weighted F1, confusion matrix).

Small on purpose: importing scikit-learn costs seconds per run. ``tests/test_dedup_splits_metrics.py`` checks
these numbers against scikit-learn on random cases. A missing prediction (None) counts as wrong and never as a class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any


def classification_report(
    gold: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, weighted F1, per-class precision / recall / F1 / support, confusion matrix, missing."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    return report_from_pairs(Counter(zip(gold, predicted, strict=True)), labels)


def report_from_pairs(pairs: Counter, labels: Sequence[str]) -> dict[str, Any]:
    """The same report from counts of (gold, predicted) pairs: what a streaming run accumulates."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]  # rows: gold, columns: predicted
    missing = 0
    support_of: Counter = Counter()
    for (g, p), count in pairs.items():
        support_of[g] += count
        if p is None or p not in index:
            missing += count
            continue
        matrix[index[g]][index[p]] += count
    n = sum(pairs.values())
    per_class: dict[str, dict[str, float]] = {}
    for label, i in index.items():
        tp = matrix[i][i]
        predicted_i = sum(row[i] for row in matrix)
        support = support_of[label]
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    present = [label for label in labels if per_class[label]["support"] or sum(row[index[label]] for row in matrix)]
    macro = sum(per_class[label]["f1"] for label in present) / len(present) if present else 0.0
    weighted = sum(per_class[label]["f1"] * per_class[label]["support"] for label in labels) / n if n else 0.0
    return {
        "n": n,
        "accuracy": sum(matrix[i][i] for i in range(len(labels))) / n if n else 0.0,
        "macro_f1": macro,
        "weighted_f1": weighted,
        "missing": missing,
        "per_class": per_class,
        "labels": list(labels),
        "confusion": matrix,
    }
