"""A metric kind is one registry entry: a kind added to ``data_gen.tasks.kinds.KINDS`` is accepted by the task
loader and drives eval's per-row scores, aggregates, intervals and report table, with no other file touched."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from data_gen.errors import ConfigError
from data_gen.tasks.kinds import KINDS, Column, MetricKind, Statistic
from data_gen.tasks.loader import TASKS_DIR, load_task
from eval.report import _field_section
from eval.scoring import aggregate, score_row
from eval.stats import headline_metrics


def _value(task: Any, name: str, value: Any) -> Any:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _score(task: Any, name: str, predicted: Any, gold: Any) -> dict[str, Any]:
    return {"exact": predicted is not None and predicted.casefold() == str(gold).casefold()}


def _aggregate(task: Any, name: str, scored: list[dict[str, Any]]) -> dict[str, Any]:
    return {"n": len(scored), "exact_match": sum(s["exact"] for s in scored) / len(scored)}


def _headline(task: Any, name: str, fields: list[dict[str, Any]]) -> dict[str, Statistic]:
    return {"exact_match": Statistic("mean", np.array([float(f["exact"]) for f in fields]))}


EXACT = MetricKind(
    name="exact",
    summary="case-insensitive exact match",
    value=_value,
    score=_score,
    aggregate=_aggregate,
    headline=_headline,
    columns=lambda task, name: (Column("n", lambda r: r["n"]), Column("exact match", lambda r: r["exact_match"])),
)


@pytest.fixture
def exact_qa(tmp_path: Path) -> Path:
    folder = tmp_path / "qa-exact"
    shutil.copytree(TASKS_DIR / "qa", folder)
    spec = (folder / "task.yaml").read_text()
    (folder / "task.yaml").write_text(spec.replace("metrics: {answer: text}", "metrics: {answer: exact}"))
    return folder


def test_an_unregistered_kind_is_one_clear_line(exact_qa: Path) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.answer: unknown kind 'exact'; use one of classification, ordinal"):
        load_task(str(exact_qa))


def test_a_registered_kind_scores_aggregates_bootstraps_and_reports(
    exact_qa: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(KINDS, "exact", EXACT)
    task = load_task(str(exact_qa))
    replies = ["Net income.", "Gross margin, after costs.", "  "]  # the last is empty: missing, and wrong
    golds = ["net income.", "Operating margin.", "EBITDA."]
    rows = [
        score_row(task, task.inspect(text), "stop", {"answer": gold}) for text, gold in zip(replies, golds, strict=True)
    ]
    assert [r["fields"]["answer"]["exact"] for r in rows] == [True, False, False]
    assert rows[2]["fields"]["answer"]["predicted"] is None
    report = aggregate(task, rows)["fields"]["answer"]
    assert report == {"kind": "exact", "n": 3, "exact_match": pytest.approx(1 / 3)}
    assert headline_metrics(task, rows)["answer.exact_match"].value() == pytest.approx(1 / 3)
    table = _field_section(task, "answer", "exact", {"student": report})
    assert table[0] == "| model | n | exact match |" and table[-1] == "| student | 3 | 0.333 |"


def test_every_kind_says_what_it_measures() -> None:
    for name, kind in KINDS.items():
        assert kind.name == name and kind.summary
