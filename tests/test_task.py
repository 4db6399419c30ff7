"""Tasks: one definition (prompts, schema, parser, labels) and every way a reply can fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data_gen.errors import ConfigError
from data_gen.tasks.loader import TASKS_DIR, load_task
from data_gen.tasks.parsing import RowRejected, extract_json_object, split_thinking

GOOD = {"entities": [{"name": "NVIDIA", "sentiment": "positive"}], "sentiment": "positive", "risk_level": "Low"}


@pytest.fixture(scope="module")
def finsight():
    return load_task("finsight")


@pytest.fixture(scope="module")
def qa():
    return load_task("qa")


def reply(answer: object, conclusion: str = "positive", thinking: str = "Demand for GPUs grew.") -> str:
    body = answer if isinstance(answer, str) else json.dumps(answer)
    return f"<thinking>{thinking}\nConclusion: sentiment is {conclusion}; risk is Low.</thinking>\n{body}"


def test_labels_and_values_come_from_the_schema(finsight) -> None:
    schema = json.loads((TASKS_DIR / "finsight" / "schema.json").read_text())
    assert finsight.labels == schema["$defs"]["sentiment"]["enum"] == ["positive", "negative", "neutral"]
    assert finsight.enum("risk_level") == schema["properties"]["risk_level"]["enum"]
    prompt = finsight.system_prompt
    assert "positive, negative, neutral" in prompt and "High, Medium, Low" in prompt
    assert "$" not in prompt.replace("$defs", "").replace("$ref", "").replace("$1.4", "")  # no unfilled placeholder


def test_messages_put_the_static_instructions_first(finsight) -> None:
    first = finsight.messages("Apple shares rose.")
    second = finsight.messages("Nokia cut its outlook.")
    assert first[0] == second[0] and first[0]["role"] == "system"  # identical prefix: provider caches stay warm
    assert first[1] == {"role": "user", "content": "Text: Apple shares rose."}


def test_a_good_reply_parses_to_canonical_order(finsight) -> None:
    shuffled = {"risk_level": "Low", "sentiment": "positive", "entities": GOOD["entities"]}
    parsed = finsight.parse(reply(shuffled))
    assert list(parsed.answer) == ["entities", "sentiment", "risk_level"]
    assert parsed.conclusion == "positive" and parsed.repairs == []
    target = finsight.target(parsed)
    assert target.startswith("<thinking>\nDemand for GPUs grew.") and target.endswith(json.dumps(GOOD))


@pytest.mark.parametrize(
    ("text", "repair"),
    [
        ("```json\n" + json.dumps(GOOD) + "\n```", "text_around_json"),
        ("Here is my answer: " + json.dumps(GOOD) + " Hope it helps!", "text_around_json"),
        ("```json\n" + json.dumps(GOOD)[:-1] + ",}\n```", "json_repair"),
        (json.dumps(GOOD)[:-1] + ",}", "json_repair"),
        (json.dumps({**GOOD, "risk_level": "low", "sentiment": "Positive"}), "enum_case"),
    ],
)
def test_cheap_local_repairs(finsight, text: str, repair: str) -> None:
    parsed = finsight.parse(reply(text))
    assert parsed.answer == GOOD
    assert repair in parsed.repairs


@pytest.mark.parametrize(
    ("text", "reason", "detail"),
    [
        ("", "empty_response", "empty"),
        (json.dumps(GOOD), "no_thinking", "<thinking>"),
        (reply("The sentiment is positive."), "no_json", "no JSON object"),
        (reply("{{{ ]]] ::"), "invalid_json", "unparseable"),
        (
            reply(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "sentiment": "neutral"})),
            "invalid_json",
            "2 different JSON objects",
        ),
        (reply({**GOOD, "sentiment": "bullish"}), "schema_invalid", "$.sentiment: 'bullish' is not one of"),
        (reply({**GOOD, "risk_level": "Severe"}), "schema_invalid", "$.risk_level"),
        (reply({"entities": [], "sentiment": "positive"}), "schema_invalid", "'risk_level' is a required property"),
        (reply({**GOOD, "extra": 1}), "schema_invalid", "Additional properties"),
        (reply({**GOOD, "entities": [{"name": ""}]}), "schema_invalid", "$.entities[0]"),
        (reply(GOOD, conclusion="negative"), "thinking_mismatch", "concludes sentiment is 'negative'"),
    ],
)
def test_bad_replies_are_rejected_with_a_reason(finsight, text: str, reason: str, detail: str) -> None:
    with pytest.raises(RowRejected) as caught:
        finsight.parse(text)
    assert caught.value.reason == reason
    assert detail in caught.value.detail


def test_reasoning_in_a_separate_field_is_the_thinking(finsight) -> None:
    parsed = finsight.parse(json.dumps(GOOD), reasoning="Chips sold out. Conclusion: sentiment is positive.")
    assert parsed.thinking.startswith("Chips sold out")
    with pytest.raises(RowRejected, match="thinking_mismatch"):
        finsight.parse(json.dumps(GOOD), reasoning="So the sentiment is negative.")


def test_split_thinking_variants() -> None:
    assert split_thinking("<think>a</think>{}").thinking == "a"
    swallowed = split_thinking("reasoning here</thinking>\n{}")  # opening tag eaten by a chat template
    assert swallowed.thinking == "reasoning here" and swallowed.rest == "{}" and swallowed.repairs
    unclosed = split_thinking("<thinking>still going")
    assert unclosed.thinking == "still going" and unclosed.rest == ""
    assert split_thinking("no tags at all").thinking is None


def test_extract_json_object_never_accepts_non_objects() -> None:
    with pytest.raises(RowRejected, match="no_json"):
        extract_json_object("[1, 2, 3]")
    value, repairs = extract_json_object('{"a": 1}')
    assert value == {"a": 1} and repairs == []


def test_gold_labels_aliases_and_maps(finsight) -> None:
    assert finsight.normalize_label("Bullish", {}) == "positive"
    assert finsight.normalize_label(" NEGATIVE ", {}) == "negative"
    assert finsight.normalize_label("0", {"0": "negative"}) == "negative"
    assert finsight.normalize_label("meh", {}) is None
    parsed = finsight.parse(reply(GOOD))
    finsight.check_gold(parsed, "positive")
    with pytest.raises(RowRejected, match="gold_disagreement"):
        finsight.check_gold(parsed, "negative")


def test_reask_keeps_the_context_bounded(finsight) -> None:
    base = finsight.messages("Text")
    again = finsight.reask_messages(base, "bad reply", "$.sentiment: 'x' is not one of")
    assert again[:2] == base and again[2] == {"role": "assistant", "content": "bad reply"}
    assert "$.sentiment" in again[3]["content"]
    third = finsight.reask_messages(base, "worse reply", "other error")
    assert len(third) == 4  # never the whole history


def test_qa_answers_refusals_and_schema(qa) -> None:
    parsed = qa.parse("<thinking>Define it.</thinking>\nA bond is a loan from an investor to an issuer.")
    assert parsed.answer == {"answer": "A bond is a loan from an investor to an issuer."}
    assert qa.target(parsed) == "A bond is a loan from an investor to an issuer."  # keep_thinking: false
    with pytest.raises(RowRejected, match="declined"):
        qa.parse("I don't know.")
    with pytest.raises(RowRejected, match="schema_invalid"):
        qa.parse("Too short.")
    assert qa.labels == []


def test_unknown_task_and_broken_task_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown task 'nope'; known tasks: finsight, qa"):
        load_task("nope")
    broken = tmp_path / "broken"
    shutil.copytree(TASKS_DIR / "finsight", broken)
    lines = (broken / "examples.jsonl").read_text().splitlines()
    example = json.loads(lines[1])
    example["answer"]["risk_level"] = "Extreme"
    lines[1] = json.dumps(example)
    (broken / "examples.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"examples.jsonl line 2: \$.risk_level"):
        load_task(str(broken))
    (broken / "task.yaml").write_text((broken / "task.yaml").read_text() + "\nlabel_feild: sentiment\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_task(str(broken))
