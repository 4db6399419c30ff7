"""--logprobs: the label's probability read from the top log-probabilities a server returns, expected calibration
error and a reliability plot; a server that returns none gets a warning, not a crash."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from eval.calibration import label_probs, reliability
from tests.fake_server import FakeOpenAI, Reply, answer, finsight_reply, user_text

from .conftest import free_port
from .test_eval_run import FINSIGHT, RULES, SERVED, run_eval

LABELS = ["positive", "negative", "neutral"]


def tokens_for(text: str, label_alternatives: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """OpenAI-shaped logprobs for ``text``: three tokens, the middle one the quote plus the label (as BPE merges
    them), whose alternatives are ``label_alternatives`` (each behind the same quote)."""
    start = list(re.finditer(r'"sentiment"\s*:\s*"', text))[-1].end()
    end = text.index('"', start)
    pieces = [text[: start - 1], text[start - 1 : end], text[end:]]
    top = [{"token": '"' + piece, "logprob": math.log(p)} for piece, p in label_alternatives]
    return [
        {"token": pieces[0], "logprob": -0.1, "top_logprobs": []},
        {"token": pieces[1], "logprob": top[0]["logprob"], "top_logprobs": top},
        {"token": pieces[2], "logprob": -0.1, "top_logprobs": []},
    ]


def compact(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"token": t["token"], "logprob": t["logprob"], "top": [[a["token"], a["logprob"]] for a in
             t["top_logprobs"]]} for t in tokens]  # fmt: skip


def test_label_probs_sums_the_alternatives_per_class() -> None:
    text = '<thinking>up</thinking>\n{"entities": [], "sentiment": "positive", "risk_level": "Low"}'
    tokens = compact(tokens_for(text, [("positive", 0.5), ("pos", 0.1), ("neutral", 0.2), ("ne", 0.15), ("x", 0.05)]))
    probs = label_probs(text, tokens, "sentiment", LABELS)
    assert probs is not None  # "ne" could start negative or neutral: it decides nothing; "x" is no class
    assert math.isclose(probs["positive"], 0.6 / 0.8) and math.isclose(probs["neutral"], 0.2 / 0.8)
    assert probs["negative"] == 0.0
    assert label_probs(text, [], "sentiment", LABELS) is None
    assert label_probs(text, tokens, "risk", LABELS) is None
    assert label_probs(text, compact(tokens_for(text, [("x", 0.9)])), "sentiment", LABELS) is None


def test_reliability_worked_by_hand() -> None:
    result = reliability([0.95, 0.95, 0.65, 0.35, 1.0], [True, False, True, False, True])
    # bins: [0.9, 1.0] holds 0.95, 0.95, 1.0 (accuracy 2/3, confidence 0.9667); [0.6, 0.7): 1/1 vs 0.65;
    # [0.3, 0.4): 0/1 vs 0.35
    expected = 3 / 5 * abs(2 / 3 - 2.9 / 3) + 1 / 5 * 0.35 + 1 / 5 * 0.35
    assert math.isclose(result["ece"], expected) and result["n"] == 5
    assert [b["count"] for b in result["bins"]] == [0, 0, 0, 1, 0, 0, 1, 0, 0, 3]
    assert math.isclose(result["accuracy"], 0.6) and math.isclose(result["mean_confidence"], 3.9 / 5)


def confident(body: dict[str, Any], count: int) -> Reply:
    """`tuned` answers as the rules teacher does, 0.9 sure of its label; `base` answers neutral, 0.5 sure; neither
    returns log-probabilities unless asked."""
    text = user_text(body)
    reply = RULES.engine.reply(text) if body["model"] == "tuned" else finsight_reply("neutral", "Low", "Acme")
    if not body.get("logprobs"):
        return answer(reply)
    stated = re.search(r'"sentiment": "(\w+)"', reply.rsplit("</thinking>", 1)[-1]).group(1)
    sure = 0.9 if body["model"] == "tuned" else 0.5
    others = [label for label in LABELS if label != stated]
    return Reply(content=reply, logprobs=tokens_for(reply, [(stated, sure), *((o, (1 - sure) / 2) for o in others)]))


def test_a_run_with_logprobs_reports_calibration(distilled: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["--data", str(distilled["finsight"]), "--model", "base", "--adapter", "tuned", "--out", str(out)]
    with FakeOpenAI(confident, port=free_port(), models=SERVED) as server:
        assert run_eval(*args, "--endpoint", server.base_url, "--logprobs", "5") == 0
        assert {(b["logprobs"], b["top_logprobs"]) for b in server.requests} == {(True, 5)}
    results = json.loads((out / "results.json").read_text())
    tuned, base = results["metrics"]["tuned"]["calibration"], results["metrics"]["base"]["calibration"]
    n = results["data"]["evaluated"]
    assert tuned["n"] == base["n"] == n
    assert math.isclose(tuned["mean_confidence"], 0.9) and tuned["accuracy"] == 1.0
    assert math.isclose(tuned["ece"], 0.1)  # right every time, 0.9 sure
    base_accuracy = results["metrics"]["base"]["fields"]["sentiment"]["accuracy"]
    assert math.isclose(base["ece"], abs(0.5 - base_accuracy))  # one bin: |accuracy - 0.5|
    report = (out / "report.md").read_text()
    assert "## Calibration of `sentiment`" in report and "plots/reliability.png" in report
    assert (out / "plots" / "reliability.png").stat().st_size > 5000
    assert not any("logprobs" in w for w in results["warnings"])
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").open()]
    assert all(math.isclose(max(p["label_probs"].values()), 0.9) for p in predictions if p["model"] == "tuned")


def test_a_server_without_logprobs_gets_a_warning(distilled: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["--data", str(distilled["finsight"]), "--model", "base", "--out", str(out), "--logprobs", "3"]
    rules = lambda body, count: answer(RULES.engine.reply(user_text(body)))  # noqa: E731
    with FakeOpenAI(rules, port=free_port(), models=SERVED) as server:
        assert run_eval(*args, "--endpoint", server.base_url) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["base"]["calibration"] is None
    assert any(w.startswith("base: --logprobs 3 was sent, but no answer had readable log-probabilities")
               for w in results["warnings"])  # fmt: skip
    assert "## Calibration" not in (out / "report.md").read_text()
    assert FINSIGHT.label_field == "sentiment"
