"""Scoring: one reply -> per-row scores (the format ladder and each answer field); rows -> aggregate metrics.

How a field is scored comes from the task (``metrics:`` in ``task.yaml``):

- ``classification``: accuracy, macro-F1, weighted F1 (the published benchmarks' headline), per-class precision /
  recall / F1, confusion matrix;
- ``ordinal``: the same, plus the mean absolute error in steps of the schema's enum order (High / Medium / Low);
- ``entities``: set precision / recall / F1 of entity names (micro, over rows) and the sentiment accuracy of the
  entities both sides name (FinEntity's entity-level sentiment);
- ``text``: ROUGE-1/2/L F-measure (``rouge_score``, stemmed), answer lengths, exact match on the reference's numbers.

A field's prediction is taken from the JSON object the reply holds (after the local repairs that ``data_gen``
applies) when its value is valid for the field; otherwise it is *missing*. A missing prediction counts against
accuracy and recall and is reported as a rate; it is never mapped to a class.
"""

from __future__ import annotations

import re
import statistics
from functools import cache
from typing import Any

from data_gen.tasks.metrics import classification_report
from data_gen.tasks.task import Reading, Task

CORPORATE_SUFFIXES = r"(?:inc|corp|corporation|co|company|plc|ltd|limited|llc|ag|sa|nv|se|group|holdings?)"
NUMBER_RE = re.compile(r"(?<![\w.])[-+]?\$?\d[\d,]*(?:\.\d+)?%?")


# ---------------------------------------------------------------- one reply
def score_row(task: Task, reading: Reading, finish_reason: str | None, gold: dict[str, Any]) -> dict[str, Any]:
    """The format ladder and per-field scores of one reply against its (partial) gold answer."""
    label = task.label_field
    stated = reading.answer.get(label) if (reading.answer and label) else None
    row: dict[str, Any] = {
        "format": {
            "thinking": reading.thinking is not None,
            "json_found": reading.json_found,
            "parsed": reading.parsed,
            "schema_valid": reading.schema_valid,
            "truncated": finish_reason == "length",
            "agreement": None if reading.conclusion is None or stated is None else reading.conclusion == stated,
            "failure": reading.failure.reason if reading.failure else None,
        },
        "fields": {},
    }
    for name, kind in task.metrics.items():
        predicted = field_value(task, name, kind, reading.answer)
        scores: dict[str, Any] = {"predicted": predicted, "gold": gold.get(name)}
        if name in gold:
            scores.update(SCORERS[kind](task, name, predicted, gold[name]))
        row["fields"][name] = scores
    return row


def field_value(task: Task, name: str, kind: str, answer: dict[str, Any] | None) -> Any:
    """The field's value when it is valid for its kind, else None (missing)."""
    if answer is None or name not in answer:
        return None
    value = answer[name]
    if kind in ("classification", "ordinal"):
        return value if value in task.enum(name) else None
    if kind == "entities":
        if not isinstance(value, list):
            return None
        items = [e for e in value if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"].strip()]
        return items if len(items) == len(value) else None
    return value if isinstance(value, str) and value.strip() else None


def _score_class(task: Task, name: str, predicted: Any, gold: Any) -> dict[str, Any]:
    return {"correct": predicted == gold}


def _score_ordinal(task: Task, name: str, predicted: Any, gold: Any) -> dict[str, Any]:
    order = task.enum(name)
    error = abs(order.index(predicted) - order.index(gold)) if predicted is not None else None
    return {"correct": predicted == gold, "error": error}


def entity_key(name: str) -> str:
    """``"  Apple Inc. "`` -> ``"apple"``: case, spacing, edge punctuation and corporate suffixes do not count."""
    key = " ".join(name.casefold().split()).strip(" .,;:'\"()")
    return re.sub(rf"(?:,?\s+{CORPORATE_SUFFIXES}\.?)+$", "", key).strip(" .,") or key


def _score_entities(task: Task, name: str, predicted: Any, gold: Any) -> dict[str, Any]:
    gold_map = {entity_key(e["name"]): e.get("sentiment") for e in gold}
    pred_map = {entity_key(e["name"]): e.get("sentiment") for e in predicted or []}
    matched = gold_map.keys() & pred_map.keys()
    return {
        "tp": len(matched),
        "fp": len(pred_map.keys() - gold_map.keys()),
        "fn": len(gold_map.keys() - pred_map.keys()),
        "sentiment_correct": sum(pred_map[k] == gold_map[k] for k in matched),
    }


@cache
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def numbers(text: str) -> set[str]:
    """The numbers a text states, normalised: ``$1,200.50`` -> ``1200.5``; ``4.0%`` -> ``4%``."""
    found = set()
    for raw in NUMBER_RE.findall(text):
        percent = raw.endswith("%")
        digits = raw.replace(",", "").replace("$", "").rstrip("%").lstrip("+")
        try:
            value = float(digits)
        except ValueError:
            continue
        shown = f"{value:g}" if abs(value) < 1e15 else digits
        found.add(shown + ("%" if percent else ""))
    return found


def _score_text(task: Task, name: str, predicted: Any, gold: Any) -> dict[str, Any]:
    text = predicted or ""
    scores = _rouge().score(str(gold), text)  # (target, prediction)
    wanted = numbers(str(gold))
    found = numbers(text) & wanted
    return {
        "rouge1": scores["rouge1"].fmeasure,
        "rouge2": scores["rouge2"].fmeasure,
        "rougeL": scores["rougeL"].fmeasure,
        "words": len(text.split()),
        "reference_words": len(str(gold).split()),
        "numbers": len(wanted),
        "numbers_found": len(found),
    }


SCORERS = {
    "classification": _score_class,
    "ordinal": _score_ordinal,
    "entities": _score_entities,
    "text": _score_text,
}


# ---------------------------------------------------------------- many rows
def aggregate(task: Task, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every metric of one model over its rows (each row as ``score_row`` made it)."""
    n = len(rows)
    formats = [row["format"] for row in rows]
    agreements = [f["agreement"] for f in formats if f["agreement"] is not None]
    result: dict[str, Any] = {
        "n": n,
        "format": {
            step: _rate(sum(bool(f[step]) for f in formats), n)
            for step in ("thinking", "json_found", "parsed", "schema_valid", "truncated")
        },
        "fields": {},
    }
    result["format"]["agreement"] = _rate(sum(agreements), len(agreements)) if agreements else None
    result["format"]["agreement_rows"] = len(agreements)
    result["format"]["failures"] = _counts(f["failure"] for f in formats if f["failure"])
    for name, kind in task.metrics.items():
        scored = [row["fields"][name] for row in rows if row["fields"][name]["gold"] is not None]
        result["fields"][name] = {"kind": kind, **AGGREGATORS[kind](task, name, scored)} if scored else None
    return result


def _rate(count: int, total: int) -> float:
    return count / total if total else 0.0


def _counts(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _aggregate_class(task: Task, name: str, scored: list[dict[str, Any]]) -> dict[str, Any]:
    report = classification_report([s["gold"] for s in scored], [s["predicted"] for s in scored], task.enum(name))
    report["missing_rate"] = _rate(report["missing"], report["n"])
    return report


def _aggregate_ordinal(task: Task, name: str, scored: list[dict[str, Any]]) -> dict[str, Any]:
    report = _aggregate_class(task, name, scored)
    errors = [s["error"] for s in scored if s["error"] is not None]
    report["mean_abs_error"] = statistics.fmean(errors) if errors else None
    report["order"] = task.enum(name)
    return report


def _aggregate_entities(task: Task, name: str, scored: list[dict[str, Any]]) -> dict[str, Any]:
    tp, fp, fn = (sum(s[k] for s in scored) for k in ("tp", "fp", "fn"))
    correct = sum(s["sentiment_correct"] for s in scored)
    precision, recall = _rate(tp, tp + fp), _rate(tp, tp + fn)
    return {
        "n": len(scored),
        "precision": precision,
        "recall": recall,
        "f1": _rate(2 * tp, 2 * tp + fp + fn),
        "sentiment_accuracy": _rate(correct, tp) if tp else None,
        "matched": tp,
        "gold_entities": tp + fn,
        "predicted_entities": tp + fp,
        "missing_rate": _rate(sum(s["predicted"] is None for s in scored), len(scored)),
    }


def _aggregate_text(task: Task, name: str, scored: list[dict[str, Any]]) -> dict[str, Any]:
    with_numbers = [s for s in scored if s["numbers"]]
    words = [s["words"] for s in scored if s["predicted"] is not None]
    return {
        "n": len(scored),
        **{key: statistics.fmean(s[key] for s in scored) for key in ("rouge1", "rouge2", "rougeL")},
        "missing_rate": _rate(sum(s["predicted"] is None for s in scored), len(scored)),
        "number_exact_match": (
            _rate(sum(s["numbers_found"] == s["numbers"] for s in with_numbers), len(with_numbers))
            if with_numbers
            else None
        ),
        "rows_with_numbers": len(with_numbers),
        "words": {
            "mean": statistics.fmean(words) if words else 0.0,
            "median": statistics.median(words) if words else 0.0,
            "max": max(words, default=0),
            "reference_mean": statistics.fmean(s["reference_words"] for s in scored),
        },
    }


AGGREGATORS = {
    "classification": _aggregate_class,
    "ordinal": _aggregate_ordinal,
    "entities": _aggregate_entities,
    "text": _aggregate_text,
}
