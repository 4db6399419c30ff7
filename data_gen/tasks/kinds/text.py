"""Free text: ROUGE-1/2/L F-measure (``rouge_score``, stemmed), answer lengths, and exact match on the numbers the
reference states (a finance answer that gets the words right and the figure wrong is wrong)."""

from __future__ import annotations

import re
import statistics
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from data_gen.tasks.kinds.base import Column, MetricKind, Report, Scores, Statistic, missing_rate, rate

if TYPE_CHECKING:
    from data_gen.tasks.task import Task

NUMBER_RE = re.compile(r"(?<![\w.])[-+]?\$?\d[\d,]*(?:\.\d+)?%?")
ROUGE = ("rouge1", "rouge2", "rougeL")


@cache
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE), use_stemmer=True)


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


def _value(task: Task, name: str, value: Any) -> Any:
    return value if isinstance(value, str) and value.strip() else None


def _score(task: Task, name: str, predicted: Any, gold: Any) -> Scores:
    text = predicted or ""
    scores = _rouge().score(str(gold), text)  # (target, prediction)
    wanted = numbers(str(gold))
    return {
        **{key: scores[key].fmeasure for key in ROUGE},
        "words": len(text.split()),
        "reference_words": len(str(gold).split()),
        "numbers": len(wanted),
        "numbers_found": len(numbers(text) & wanted),
    }


def _aggregate(task: Task, name: str, scored: list[Scores]) -> Report:
    with_numbers = [s for s in scored if s["numbers"]]
    words = [s["words"] for s in scored if s["predicted"] is not None]
    exact = sum(s["numbers_found"] == s["numbers"] for s in with_numbers)
    return {
        "n": len(scored),
        **{key: statistics.fmean(s[key] for s in scored) for key in ROUGE},
        "missing_rate": missing_rate(scored),
        "number_exact_match": rate(exact, len(with_numbers)) if with_numbers else None,
        "rows_with_numbers": len(with_numbers),
        "words": {
            "mean": statistics.fmean(words) if words else 0.0,
            "median": statistics.median(words) if words else 0.0,
            "max": max(words, default=0),
            "reference_mean": statistics.fmean(s["reference_words"] for s in scored),
        },
    }


def _headline(task: Task, name: str, fields: list[Scores]) -> dict[str, Statistic]:
    metrics = {key: Statistic("mean", np.array([f.get(key, np.nan) for f in fields], dtype=float)) for key in ROUGE}
    exact = [float(f["numbers_found"] == f["numbers"]) if f.get("numbers") else np.nan for f in fields]
    metrics["number_exact_match"] = Statistic("mean", np.array(exact))
    return metrics


def _exact(r: Report) -> str:
    shown = "n/a" if r["number_exact_match"] is None else f"{r['number_exact_match']:.3f}"
    return f"{shown} ({r['rows_with_numbers']} rows)"


def _words(r: Report) -> str:
    return f"{r['words']['mean']:.1f} / {r['words']['median']:.0f} ({r['words']['reference_mean']:.1f})"


COLUMNS = (
    Column("n", lambda r: r["n"]),
    Column("ROUGE-1", lambda r: r["rouge1"]),
    Column("ROUGE-2", lambda r: r["rouge2"]),
    Column("ROUGE-L", lambda r: r["rougeL"]),
    Column("numbers exact", _exact),
    Column("words mean / median (reference)", _words),
    Column("missing", lambda r: r["missing_rate"]),
)

TEXT = MetricKind(
    name="text",
    summary="ROUGE-1/2/L F-measure (stemmed), answer lengths, exact match on the reference's numbers",
    value=_value,
    score=_score,
    aggregate=_aggregate,
    headline=_headline,
    columns=lambda task, name: COLUMNS,
)
