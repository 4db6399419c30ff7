"""Scoring: one reply -> per-row scores (the format ladder and each answer field); rows -> aggregate metrics.

How a field is scored is its metric kind (``metrics:`` in ``task.yaml``; the kinds are ``data_gen.tasks.kinds``:
classification, ordinal, entities, text). A field's prediction is taken from the JSON object the reply holds (after
the local repairs that ``data_gen`` applies) when its value is valid for the field's kind; otherwise it is
*missing*. A missing prediction counts against accuracy and recall and is reported as a rate; it is never mapped
to a class.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from data_gen.tasks.kinds import KINDS
from data_gen.tasks.kinds.base import rate
from data_gen.tasks.task import Reading, Task


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
            scores.update(KINDS[kind].score(task, name, predicted, gold[name]))
        row["fields"][name] = scores
    return row


def field_value(task: Task, name: str, kind: str, answer: dict[str, Any] | None) -> Any:
    """The field's value when it is valid for its kind, else None (missing)."""
    if answer is None or name not in answer:
        return None
    return KINDS[kind].value(task, name, answer[name])


# ---------------------------------------------------------------- many rows
def aggregate(task: Task, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every metric of one model over its rows (each row as ``score_row`` made it)."""
    n = len(rows)
    formats = [row["format"] for row in rows]
    agreements = [f["agreement"] for f in formats if f["agreement"] is not None]
    result: dict[str, Any] = {
        "n": n,
        "format": {
            step: rate(sum(bool(f[step]) for f in formats), n)
            for step in ("thinking", "json_found", "parsed", "schema_valid", "truncated")
        },
        "fields": {},
    }
    result["format"]["agreement"] = rate(sum(agreements), len(agreements)) if agreements else None
    result["format"]["agreement_rows"] = len(agreements)
    result["format"]["failures"] = dict(Counter(f["failure"] for f in formats if f["failure"]).most_common())
    for name, kind in task.metrics.items():
        scored = [row["fields"][name] for row in rows if row["fields"][name]["gold"] is not None]
        result["fields"][name] = {"kind": kind, **KINDS[kind].aggregate(task, name, scored)} if scored else None
    return result
