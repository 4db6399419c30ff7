"""Entity lists: set precision / recall / F1 of entity names (micro, over rows) and the sentiment accuracy of the
entities both sides name (FinEntity's entity-level sentiment)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from data_gen.tasks.kinds.base import Column, MetricKind, Report, Scores, Statistic, missing_rate, rate

if TYPE_CHECKING:
    from data_gen.tasks.task import Task

CORPORATE_SUFFIXES = r"(?:inc|corp|corporation|co|company|plc|ltd|limited|llc|ag|sa|nv|se|group|holdings?)"


def entity_key(name: str) -> str:
    """``"  Apple Inc. "`` -> ``"apple"``: case, spacing, edge punctuation and corporate suffixes do not count."""
    key = " ".join(name.casefold().split()).strip(" .,;:'\"()")
    return re.sub(rf"(?:,?\s+{CORPORATE_SUFFIXES}\.?)+$", "", key).strip(" .,") or key


def _value(task: Task, name: str, value: Any) -> Any:
    """A list whose every item names an entity, else missing."""
    if not isinstance(value, list):
        return None
    items = [e for e in value if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"].strip()]
    return items if len(items) == len(value) else None


def _score(task: Task, name: str, predicted: Any, gold: Any) -> Scores:
    gold_map = {entity_key(e["name"]): e.get("sentiment") for e in gold}
    pred_map = {entity_key(e["name"]): e.get("sentiment") for e in predicted or []}
    matched = gold_map.keys() & pred_map.keys()
    return {
        "tp": len(matched),
        "fp": len(pred_map.keys() - gold_map.keys()),
        "fn": len(gold_map.keys() - pred_map.keys()),
        "sentiment_correct": sum(pred_map[k] == gold_map[k] for k in matched),
    }


def _aggregate(task: Task, name: str, scored: list[Scores]) -> Report:
    tp, fp, fn = (sum(s[k] for s in scored) for k in ("tp", "fp", "fn"))
    correct = sum(s["sentiment_correct"] for s in scored)
    return {
        "n": len(scored),
        "precision": rate(tp, tp + fp),
        "recall": rate(tp, tp + fn),
        "f1": rate(2 * tp, 2 * tp + fp + fn),
        "sentiment_accuracy": rate(correct, tp) if tp else None,
        "matched": tp,
        "gold_entities": tp + fn,
        "predicted_entities": tp + fp,
        "missing_rate": missing_rate(scored),
    }


def _headline(task: Task, name: str, fields: list[Scores]) -> dict[str, Statistic]:
    tp, fp, fn, right = (
        np.array([f.get(k, 0) for f in fields], dtype=float) for k in ("tp", "fp", "fn", "sentiment_correct")
    )
    return {"f1": Statistic("ratio", 2 * tp, 2 * tp + fp + fn), "sentiment_accuracy": Statistic("ratio", right, tp)}


COLUMNS = (
    Column("rows", lambda r: r["n"]),
    Column("precision", lambda r: r["precision"]),
    Column("recall", lambda r: r["recall"]),
    Column("F1", lambda r: r["f1"]),
    Column("sentiment acc. (matched)", lambda r: r["sentiment_accuracy"]),
    Column("gold / predicted", lambda r: f"{r['gold_entities']} / {r['predicted_entities']}"),
    Column("missing", lambda r: r["missing_rate"]),
)

ENTITIES = MetricKind(
    name="entities",
    summary="entity-name precision / recall / F1 (micro) and the sentiment accuracy of the entities both name",
    value=_value,
    score=_score,
    aggregate=_aggregate,
    headline=_headline,
    columns=lambda task, name: COLUMNS,
)
