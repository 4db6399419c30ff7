"""eval's metrics on small cases worked out by hand: the format ladder, classification (missing answers, a class
never predicted, a single-class gold set), ordinal error, entity sets, ROUGE and numbers, intervals, McNemar."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from data_gen.tasks.kinds.entities import entity_key
from data_gen.tasks.kinds.text import numbers
from data_gen.tasks.loader import load_task
from eval.scoring import aggregate, score_row
from eval.stats import Draws, bootstrap, compare, headline_metrics, mcnemar, with_intervals

FINSIGHT = load_task("finsight")
QA = load_task("qa")


def reply(sentiment: str, risk: str = "Low", entities: list[dict[str, str]] | None = None, said: str = "") -> str:
    """A well-formed finsight reply; ``said`` is the sentiment the thinking concludes (default: the same)."""
    answer = {"entities": entities or [], "sentiment": sentiment, "risk_level": risk}
    return (
        f"<thinking>\nReasons.\nConclusion: sentiment is {said or sentiment}; risk is {risk}.\n</thinking>\n"
        f"{json.dumps(answer)}"
    )


def rows_for(task: Any, replies: list[str | None], golds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score replies (None: the answer was cut by max_tokens, an empty text) against golds."""
    out = []
    for text, gold in zip(replies, golds, strict=True):
        finish = "length" if text is None else "stop"
        out.append(score_row(task, task.inspect(text or ""), finish, gold))
    return out


def test_format_ladder_steps_and_first_failures() -> None:
    replies = [
        reply("positive"),
        '{"entities": [], "sentiment": "positive", "risk_level": "Low"}',  # no thinking
        "<thinking>Conclusion: sentiment is positive.</thinking> The sentiment is positive.",  # no JSON: FinGPT's trap
        '<thinking>x</thinking>{"entities": [], "sentiment": "positive", "risk_level": "Extreme"}',  # schema
        reply("positive", said="negative"),  # the thinking concludes negative, the JSON says positive
        "<thinking>x</thinking>{{{{",  # a broken object
        None,
    ]
    rows = rows_for(FINSIGHT, replies, [{"sentiment": "positive"}] * len(replies))
    fmt = [r["format"] for r in rows]
    assert [f["thinking"] for f in fmt] == [True, False, True, True, True, True, False]
    assert [f["json_found"] for f in fmt] == [True, True, False, True, True, True, False]
    assert [f["parsed"] for f in fmt] == [True, True, False, True, True, False, False]
    assert [f["schema_valid"] for f in fmt] == [True, True, False, False, True, False, False]
    assert [f["agreement"] for f in fmt] == [True, None, None, None, False, None, None]  # None: no conclusion stated
    assert [f["failure"] for f in fmt] == [
        None, "no_thinking", "no_json", "schema_invalid", "thinking_mismatch", "invalid_json", "empty_response"
    ]  # fmt: skip
    # the sentiment field is used wherever it is a valid label, even when another field breaks the schema;
    # an answer without JSON is missing (None), never read as a class from the prose
    assert [r["fields"]["sentiment"]["predicted"] for r in rows] == [
        "positive", "positive", None, "positive", "positive", None, None
    ]  # fmt: skip
    result = aggregate(FINSIGHT, rows)
    assert result["format"]["parsed"] == pytest.approx(4 / 7)
    assert result["format"]["schema_valid"] == pytest.approx(3 / 7)
    assert result["format"]["truncated"] == pytest.approx(1 / 7)
    assert result["format"]["agreement"] == pytest.approx(1 / 2) and result["format"]["agreement_rows"] == 2
    assert result["fields"]["sentiment"]["accuracy"] == pytest.approx(4 / 7)
    assert result["fields"]["sentiment"]["missing"] == 3
    assert result["fields"]["risk_level"] is None  # no gold risk level: not scored, not zero


def test_classification_with_a_missing_answer_and_a_class_never_predicted() -> None:
    gold = ["positive", "positive", "negative", "neutral", "neutral"]
    replies = [reply("positive"), "no idea", reply("positive"), reply("neutral"), reply("neutral")]
    rows = rows_for(FINSIGHT, replies, [{"sentiment": g} for g in gold])
    report = aggregate(FINSIGHT, rows)["fields"]["sentiment"]
    # by hand: positive P 1/2 R 1/2 F1 1/2; negative (never predicted) 0; neutral 1; missing counts as wrong
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["per_class"]["positive"]["f1"] == pytest.approx(0.5)
    assert report["per_class"]["negative"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["per_class"]["neutral"]["f1"] == pytest.approx(1.0)
    assert report["macro_f1"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert report["weighted_f1"] == pytest.approx((0.5 * 2 + 0 * 1 + 1 * 2) / 5)
    assert report["missing"] == 1 and report["missing_rate"] == pytest.approx(0.2)
    assert report["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 0, 2]]  # rows gold, columns predicted (schema order)
    # the bootstrap's vectorised metrics agree with the report on the full sample
    metrics = headline_metrics(FINSIGHT, rows)
    assert metrics["sentiment.accuracy"].value() == pytest.approx(report["accuracy"])
    assert metrics["sentiment.macro_f1"].value() == pytest.approx(report["macro_f1"])
    assert metrics["sentiment.weighted_f1"].value() == pytest.approx(report["weighted_f1"])
    assert metrics["sentiment.missing_rate"].value() == pytest.approx(0.2)


def test_single_class_gold_set() -> None:
    replies = [reply("neutral"), reply("neutral"), reply("positive"), ""]
    rows = rows_for(FINSIGHT, replies, [{"sentiment": "neutral"}] * 4)
    report = aggregate(FINSIGHT, rows)["fields"]["sentiment"]
    # neutral: P 2/2, R 2/4, F1 2/3; positive was predicted once and is never right: F1 0, and it counts in macro
    assert report["accuracy"] == pytest.approx(0.5)
    assert report["per_class"]["neutral"]["f1"] == pytest.approx(2 / 3)
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert report["weighted_f1"] == pytest.approx(2 / 3)
    metrics = headline_metrics(FINSIGHT, rows)
    assert metrics["sentiment.macro_f1"].value() == pytest.approx(report["macro_f1"])
    assert metrics["sentiment.weighted_f1"].value() == pytest.approx(report["weighted_f1"])


def test_ordinal_accuracy_and_error_in_steps() -> None:
    replies = [reply("neutral", "Low"), reply("neutral", "Low"), "garbage"]
    golds = [{"risk_level": "High"}, {"risk_level": "Low"}, {"risk_level": "Medium"}]
    report = aggregate(FINSIGHT, rows_for(FINSIGHT, replies, golds))["fields"]["risk_level"]
    assert report["accuracy"] == pytest.approx(1 / 3)
    assert report["mean_abs_error"] == pytest.approx((2 + 0) / 2)  # High vs Low is two steps; missing not averaged
    assert report["missing_rate"] == pytest.approx(1 / 3)


def test_entity_sets_and_entity_sentiment() -> None:
    predicted = [{"name": "apple", "sentiment": "positive"}, {"name": "Samsung Electronics", "sentiment": "negative"},
                 {"name": "TSMC", "sentiment": "neutral"}]  # fmt: skip
    golds = [
        {"entities": [{"name": "Apple Inc.", "sentiment": "positive"}, {"name": "Samsung", "sentiment": "negative"}]},
        {"entities": [{"name": "Nokia Oyj", "sentiment": "neutral"}]},
    ]
    rows = rows_for(FINSIGHT, [reply("neutral", entities=predicted), "no JSON at all"], golds)
    assert rows[0]["fields"]["entities"] | {"predicted": None} == {
        "predicted": None, "gold": golds[0]["entities"], "tp": 1, "fp": 2, "fn": 1, "sentiment_correct": 1
    }  # fmt: skip
    report = aggregate(FINSIGHT, rows)["fields"]["entities"]
    # tp 1 (apple = Apple Inc.), fp 2, fn 1 + 1 (the missing answer names none of its gold entities)
    assert report["precision"] == pytest.approx(1 / 3)
    assert report["recall"] == pytest.approx(1 / 3)
    assert report["f1"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 2))
    assert report["sentiment_accuracy"] == pytest.approx(1.0)
    assert report["missing_rate"] == pytest.approx(0.5)
    assert headline_metrics(FINSIGHT, rows)["entities.f1"].value() == pytest.approx(report["f1"])
    assert entity_key("  Apple Inc. ") == entity_key("APPLE") == "apple"
    assert entity_key("Johnson & Johnson") == "johnson & johnson"


def test_rouge_lengths_and_numbers_for_qa() -> None:
    golds = [{"answer": "Revenue rose 5% to $1,200."}, {"answer": "Gross margin is gross profit over revenue."}]
    rows = rows_for(QA, ["revenue rose 5%", "I don't know."], golds)
    first = rows[0]["fields"]["answer"]
    # rouge_score tokens: reference revenue rose 5 to 1 200 (6), prediction revenue rose 5 (3): P 1, R 1/2
    assert first["rouge1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert first["rouge2"] == pytest.approx(2 * 1 * 0.4 / 1.4)  # bigrams: 2 of 2 predicted, 2 of 5 in the reference
    assert first["rougeL"] == pytest.approx(2 * 1 * 0.5 / 1.5)  # longest common subsequence: 3 tokens
    assert (first["numbers"], first["numbers_found"]) == (2, 1)  # 5% found, 1,200 not
    report = aggregate(QA, rows)["fields"]["answer"]
    assert report["number_exact_match"] == 0.0 and report["rows_with_numbers"] == 1
    assert report["words"]["mean"] == pytest.approx((3 + 3) / 2)
    assert numbers("up $1,200.50 or 4.0%, from 3 to +3") == {"1200.5", "4%", "3"}


def test_mcnemar_exact_by_hand() -> None:
    a = [True] * 3 + [True] + [False] * 5 + [False] * 2
    b = [True] * 3 + [False] + [True] * 5 + [False] * 2
    result = mcnemar(a, b)
    assert (result["only_a"], result["only_b"]) == (1, 5)
    assert result["p_value"] == pytest.approx(2 * (1 + 6) / 2**6)  # two-sided binomial, n = 6, k <= 1
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0


def test_intervals_hold_the_estimate_and_paired_differences_cancel() -> None:
    rng = np.random.default_rng(1)
    gold = ["positive", "negative", "neutral"]
    golds = [{"sentiment": gold[i % 3]} for i in range(60)]
    replies = [reply(g["sentiment"] if rng.random() < 0.7 else "neutral") for g in golds]
    rows = rows_for(FINSIGHT, replies, golds)
    draws = Draws(len(rows), 500, seed=0, cells=len(rows) * 7)  # chunks of 7 draws: chunking changes nothing
    assert [len(chunk) for chunk in draws][:2] == [7, 7] and sum(len(chunk) for chunk in draws) == 500
    metrics = headline_metrics(FINSIGHT, rows)
    samples = bootstrap(metrics, draws)
    assert all(np.array_equal(samples[name], bootstrap(metrics, Draws(len(rows), 500, seed=0))[name])
               for name in metrics)  # fmt: skip
    intervals = with_intervals(metrics, samples)
    for name in ("sentiment.accuracy", "sentiment.macro_f1", "sentiment.weighted_f1"):
        entry = intervals[name]
        assert entry["low"] <= entry["value"] <= entry["high"] and entry["high"] - entry["low"] > 0.05
    assert intervals["format.schema_valid"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    same = compare(metrics, metrics, samples, samples)
    assert same["sentiment.accuracy"] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    perfect = headline_metrics(FINSIGHT, rows_for(FINSIGHT, [reply(g["sentiment"]) for g in golds], golds))
    better = compare(metrics, perfect, samples, bootstrap(perfect, draws))
    accuracy = aggregate(FINSIGHT, rows)["fields"]["sentiment"]["accuracy"]
    assert better["sentiment.accuracy"]["difference"] == pytest.approx(1 - accuracy)
    assert 0 < better["sentiment.accuracy"]["low"] < better["sentiment.accuracy"]["high"]
