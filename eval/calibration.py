"""Calibration of a model's label: how sure it was (its probability of the class it wrote, read from the
top log-probabilities a server returns with ``--logprobs K``) against how often it was right.

The probability is read where the JSON states the label (``"sentiment": "positive"``): the alternatives the server
lists for that token that begin a class name are summed per class and renormalised over the classes (the same
reading as ``data_gen``'s teacher label belief, on token strings instead of ids). Expected calibration error (ECE)
over equal-width confidence bins, and the bins themselves for a reliability diagram.
"""

from __future__ import annotations

import math
from typing import Any

from data_gen.kd.rows import label_span

BINS = 10


def label_probs(text: str, tokens: list[dict[str, Any]], field: str, labels: list[str]) -> dict[str, float] | None:
    """The model's probability of each class where ``text`` states ``field``, or None when it cannot be read
    (no logprobs, no such field, the token holding the label's start not found, or no class among its alternatives).

    ``tokens``: ``[{"token": str, "logprob": float, "top": [[token, logprob], ...]}, ...]`` covering ``text``."""
    span = label_span(text, field)
    if span is None or not tokens:
        return None
    start = span[0]
    offset = 0
    for token in tokens:
        end = offset + len(token["token"])
        if offset <= start < end:
            prefix = text[offset:start]  # what this token holds before the label (a quote, a space)
            mass = dict.fromkeys(labels, 0.0)
            for alternative, logprob in token["top"]:
                if not alternative.startswith(prefix) or len(alternative) == len(prefix):
                    continue
                rest = alternative[len(prefix) :]
                matches = [label for label in labels if label.startswith(rest) or rest.startswith(label)]
                if len(matches) == 1:  # a piece two classes share ("ne" of negative / neutral) decides nothing
                    mass[matches[0]] += math.exp(logprob)
            total = sum(mass.values())
            return {label: p / total for label, p in mass.items()} if total > 0 else None
        offset = end
    return None


def reliability(confidences: list[float], correct: list[bool], bins: int = BINS) -> dict[str, Any]:
    """ECE and per-bin (count, mean confidence, accuracy) over equal-width bins of [0, 1]."""
    n = len(confidences)
    table = []
    ece = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidences) if low <= c < high or (b == bins - 1 and c == 1.0)]
        if not members:
            table.append({"low": low, "high": high, "count": 0, "confidence": None, "accuracy": None})
            continue
        confidence = sum(confidences[i] for i in members) / len(members)
        accuracy = sum(correct[i] for i in members) / len(members)
        ece += len(members) / n * abs(accuracy - confidence)
        table.append({"low": low, "high": high, "count": len(members), "confidence": confidence, "accuracy": accuracy})
    return {
        "n": n,
        "ece": ece if n else None,
        "mean_confidence": sum(confidences) / n if n else None,
        "accuracy": sum(correct) / n if n else None,
        "bins": table,
    }
