"""Numbers and tables as Markdown text, for report.md and the comparison tables (``eval.table``)."""

from __future__ import annotations

import json
from typing import Any

HEADLINE_ORDER = (
    "accuracy",
    "weighted_f1",
    "macro_f1",
    "missing_rate",
    "f1",
    "sentiment_accuracy",
    "rougeL",
    "rouge1",
    "rouge2",
    "number_exact_match",
)


def num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def with_interval(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    if entry.get("low") is None:
        return num(entry["value"])
    return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def headline_names(results: dict[str, Any]) -> list[str]:
    """The metrics with intervals: answer fields in the task's order (each in HEADLINE_ORDER), format rates last."""
    names = list(dict.fromkeys(name for values in results["intervals"].values() for name in values))
    fields = list(dict.fromkeys(name.split(".", 1)[0] for name in names))

    def rank(name: str) -> tuple[bool, int, int]:
        prefix, metric = name.split(".", 1)
        order = HEADLINE_ORDER.index(metric) if metric in HEADLINE_ORDER else len(HEADLINE_ORDER)
        return (prefix == "format", fields.index(prefix), order)

    return sorted(names, key=rank)
