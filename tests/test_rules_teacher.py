"""The offline rules teacher: cues, negation, numbers, risk, entities, QA glossary, and that its replies always
pass the task's own parser and schema."""

from __future__ import annotations

import asyncio
import csv
import json

import pytest

from data_gen.client.types import ChatRequest
from data_gen.errors import ConfigError
from data_gen.tasks.loader import load_task
from data_gen.teachers.rules import FinsightRules, RulesTeacher
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def finsight():
    return load_task("finsight")


@pytest.fixture(scope="module")
def rules(finsight):
    return FinsightRules(finsight)


def label(rules: FinsightRules, text: str) -> str:
    return rules.sentiment(text)[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "positive"),
        ("Net sales decreased by 5% to EUR 40 mn.", "negative"),
        ("The company narrowed its net loss to EUR 2 mn from EUR 9 mn.", "positive"),
        ("Operating costs increased by 20%, squeezing the group.", "negative"),
        ("The company cut its net debt by half.", "positive"),
        ("Net sales totalled EUR 85.3 mn ( EUR 78.9 mn ).", "positive"),
        ("Sales did not increase in the quarter.", "negative"),
        ("The board will meet on Tuesday to discuss the agenda.", "neutral"),
        ("$TSLA: Barclays cuts price target to $180 from $210", "negative"),
        ("Nvidia +3.7% as RBC sees earnings upside", "positive"),
        ("Although revenue grew, profit declined sharply and the outlook was cut.", "negative"),
        ("Acme filed for bankruptcy protection.", "negative"),
        ("Beta Corp beat estimates and raised its guidance.", "positive"),
    ],
)
def test_sentiment_cues(rules: FinsightRules, text: str, expected: str) -> None:
    assert label(rules, text) == expected


def test_the_thinking_states_which_cues_fired(rules: FinsightRules, finsight) -> None:
    text = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn, but the company warned of weak demand."
    parsed = finsight.parse(rules.reply(text))
    assert "'operating profit rose'" in parsed.thinking
    assert "+51%" in parsed.thinking  # the numeric change it computed
    assert "warned" in parsed.thinking
    assert parsed.thinking.rstrip().endswith(f"risk is {parsed.answer['risk_level']}.")


@pytest.mark.parametrize(
    ("text", "risk"),
    [
        ("Crestline Capital defaulted on its bonds and filed for Chapter 11.", "High"),
        ("A lawsuit was filed against Acme over late deliveries.", "Medium"),
        ("Net sales fell 3% in the quarter.", "Medium"),
        ("Acme won a EUR 20 mn order from a utility.", "Low"),
        ("There is no risk of default, the CFO said.", "Low"),
    ],
)
def test_risk_levels(rules: FinsightRules, text: str, risk: str) -> None:
    sentiment = label(rules, text)
    assert rules.risk(text, sentiment)[0] == risk


def test_entities(rules: FinsightRules) -> None:
    assert rules.entities("$AAPL and $MSFT rallied after the Fed decision.") == ["$AAPL", "$MSFT"]
    assert rules.entities("Ventura Cable (NASDAQ: VNTC) is a provider of broadband services.") == ["Ventura Cable"]
    assert rules.entities("Bernhardt Pharma <BERG.DE> said its trial met all endpoints.") == ["Bernhardt Pharma"]
    assert rules.entities("For the last quarter of 2010 , Componenta 's net sales doubled.") == ["Componenta"]
    assert rules.entities("Shares rose 2% on Monday in Helsinki.") == []
    assert rules.entities("Analysts like Harbor Foods Inc. after the results.") == ["Harbor Foods Inc"]


def test_entity_sentiment_follows_its_own_clause(rules: FinsightRules, finsight) -> None:
    text = "Orbit Parts won a large order, while its customer Delta Motors cut its outlook."
    answer = finsight.parse(rules.reply(text)).answer
    by_name = {e["name"]: e["sentiment"] for e in answer["entities"]}
    assert by_name["Orbit Parts"] == "positive" and by_name["Delta Motors"] == "negative"


def test_every_reply_on_the_samples_passes_the_task_parser(rules: FinsightRules, finsight) -> None:
    with (SAMPLES / "news.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 200
    for row in rows:
        parsed = finsight.parse(rules.reply(row["text"]))  # raises on any schema or consistency failure
        assert parsed.conclusion == parsed.answer["sentiment"]


def test_rules_teacher_is_deterministic_and_names_its_version(finsight) -> None:
    teacher = RulesTeacher(finsight)
    request = ChatRequest(teacher.model, finsight.messages("x"), {}, text="Sales rose 10%.")
    first = asyncio.run(teacher.complete(request))
    second = asyncio.run(teacher.complete(request))
    assert first.text == second.text and first.finish_reason == "stop"
    assert teacher.model.startswith("rules-") and not teacher.cacheable and not teacher.reaskable


def test_glossary_qa() -> None:
    qa = load_task("qa")
    teacher = RulesTeacher(qa)
    engine = teacher.engine
    parsed = qa.parse(engine.reply("In simple terms, what is EBITDA?"))
    assert "EBITDA" in parsed.answer["answer"] and "matched 'ebitda'" in parsed.thinking
    both = qa.parse(engine.reply("What is the difference between a call option and a put option?"))
    assert both.answer["answer"].count("\n\n") == 1
    with pytest.raises(Exception, match="declined"):
        qa.parse(engine.reply("Which football team will win the league?"))


def test_glossary_questions_sample_mostly_answerable() -> None:
    qa = load_task("qa")
    engine = RulesTeacher(qa).engine
    questions = [json.loads(line)["question"] for line in (SAMPLES / "questions.jsonl").read_text().splitlines()]
    answered = sum("I don't know." not in engine.reply(q) for q in questions)
    assert len(questions) >= 150 and answered >= 0.8 * len(questions)


def test_rules_teacher_refuses_tasks_it_cannot_answer(tmp_path) -> None:
    import shutil

    from data_gen.tasks.loader import TASKS_DIR

    other = tmp_path / "other"
    shutil.copytree(TASKS_DIR / "finsight", other)
    schema = json.loads((other / "schema.json").read_text())
    schema["$defs"]["sentiment"]["enum"] = ["bullish", "bearish", "neutral"]
    (other / "schema.json").write_text(json.dumps(schema))
    examples = (
        (other / "examples.jsonl").read_text().replace('"positive"', '"bullish"').replace('"negative"', '"bearish"')
    )
    (other / "examples.jsonl").write_text(examples)
    with pytest.raises(ConfigError, match="rules teacher cannot answer task"):
        RulesTeacher(load_task(str(other)))
