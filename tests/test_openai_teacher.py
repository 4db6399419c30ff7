"""The `openai` teacher against a scripted OpenAI-compatible server on 127.0.0.1: retries, Retry-After,
timeouts, dropped connections, re-asks, truncation, the cache, and the key that never leaks.

(The same client is tested against a real server, `llamafactory-cli api`, in test_engine_llamafactory.py.)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.fake_server import FakeOpenAI, Reply, answer, finsight_reply, user_text

TEXTS = [
    "Acme Corp's net sales rose 12% to EUR 40 mn.",
    "Beta Oyj warned that profit will fall, citing weak demand.",
    "Gamma Inc. will publish results on 3 May.",
    "Delta Bank's loan losses doubled in the quarter.",
    "Epsilon Shipping won a EUR 80 mn order for three vessels.",
    "Zeta Foods said its CEO will retire next year.",
]
KEY_NAME = "FIN_DISTILL_TEST_KEY"
SECRET = "sk-test-S3CRET-value-never-to-be-seen"


@pytest.fixture
def news(tmp_path: Path) -> Path:
    path = tmp_path / "news.csv"
    path.write_text("text\n" + "".join(json.dumps(t) + "\n" for t in TEXTS))
    return path


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_NAME, SECRET)


def teacher_args(server: FakeOpenAI, news: Path, *extra: str) -> list[str]:
    return [
        "--input",
        str(news),
        "--task",
        "finsight",
        "--teacher",
        "openai",
        "--base-url",
        server.base_url,
        "--model",
        "deepseek-chat",
        "--api-key-env",
        KEY_NAME,
        "--timeout",
        "2",
        "--max-retries",
        "3",
        *extra,
    ]


def good(body: dict, _count: int) -> Reply:
    return answer(finsight_reply("positive"), cached_tokens=64)


def test_valid_answers_are_accepted_with_usage_cost_and_provenance(distill, news: Path) -> None:
    with FakeOpenAI(good, api_key=SECRET) as server:
        run = distill(*teacher_args(server, news))
    assert run.code == 0, run.err
    manifest = run.manifest
    assert manifest["counts"]["accepted"] == 6 and manifest["requests"]["sent"] == 6
    assert manifest["usage"] == {
        "prompt_tokens": 600,
        "completion_tokens": 300,
        "cached_prompt_tokens": 384,
        "total_tokens": 900,
    }
    # deepseek-chat in the shipped price table: 216 uncached + 384 cached input tokens, 300 output tokens
    expected = (216 * 0.27 + 384 * 0.07 + 300 * 1.10) / 1e6
    assert manifest["cost_usd"] == pytest.approx(expected)
    assert all(h == f"Bearer {SECRET}" for h in server.auth_headers)
    sent = server.requests[0]
    assert sent["model"] == "deepseek-chat" and sent["max_tokens"] == 1024 and sent["temperature"] == 0.2
    assert sent["messages"][0]["role"] == "system" and user_text(sent) in TEXTS
    provenance = run.jsonl("examples.jsonl")[0]["provenance"]
    assert (
        provenance["endpoint"] == server.base_url
        and provenance["attempts"] == 1
        and len(provenance["request_key"]) == 64
    )


def test_rerun_and_format_changes_send_nothing_but_a_new_prompt_does(distill, news: Path, tmp_path: Path) -> None:
    out = tmp_path / "cached"
    with FakeOpenAI(good) as server:
        first = distill(*teacher_args(server, news), out=out).manifest
        assert len(server.requests) == 6
        again = distill(*teacher_args(server, news), out=out).manifest
        reformatted = distill(
            *teacher_args(server, news, "--formats", "alpaca", "--splits", "train=0.5,test=0.5"), out=out
        )
        assert len(server.requests) == 6  # zero teacher calls for the same requests
        assert again["requests"] == {**again["requests"], "sent": 0, "answered_from_cache": 6}
        assert reformatted.code == 0 and reformatted.manifest["counts"]["accepted"] == 6
        changed = distill(*teacher_args(server, news, "--temperature", "0.7"), out=out)
        assert len(server.requests) == 12 and changed.manifest["requests"]["sent"] == 6
        dry = distill(*teacher_args(server, news, "--dry-run", "--out", str(out)))
        assert "requests to send         0 (6 already cached)" in dry.out
        uncached = distill(*teacher_args(server, news, "--no-cache"), out=out)
        assert len(server.requests) == 18 and uncached.manifest["requests"]["sent"] == 6
    assert first["dataset_usage"] == again["dataset_usage"]
    assert (
        again["cost_usd"] == 0.0
        and first["cost_usd"] > 0
        and again["dataset_cost_usd"] == pytest.approx(first["cost_usd"])
    )


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_in_a_separate_field_becomes_the_thinking(distill, news: Path, field: str) -> None:
    body = {"entities": [], "sentiment": "neutral", "risk_level": "Low"}

    def script(_body: dict, _count: int) -> Reply:
        return answer(
            json.dumps(body),
            reasoning="Nothing changed.\nConclusion: sentiment is neutral; risk is Low.",
            reasoning_field=field,
        )

    with FakeOpenAI(script) as server:
        run = distill(*teacher_args(server, news))
    assert run.manifest["counts"]["accepted"] == 6
    target = run.jsonl("sharegpt_train.jsonl")[0]["conversations"][2]["value"]
    assert target.startswith("<thinking>\nNothing changed.") and target.endswith(json.dumps(body))


def test_invalid_answers_are_reasked_with_the_error(distill, news: Path) -> None:
    def script(body: dict, _count: int) -> Reply:
        if len(body["messages"]) == 2:  # first ask: a schema violation
            return answer(finsight_reply("positive").replace('"Low"', '"Severe"'))
        return answer(finsight_reply("positive"))

    with FakeOpenAI(script) as server:
        run = distill(*teacher_args(server, news))
    assert run.manifest["counts"]["accepted"] == 6
    assert run.manifest["requests"]["reasks"] == 6 and len(server.requests) == 12
    reask = next(b for b in server.requests if len(b["messages"]) == 4)
    assert reask["messages"][2]["role"] == "assistant" and '"Severe"' in reask["messages"][2]["content"]
    assert "$.risk_level: 'Severe' is not one of" in reask["messages"][3]["content"]


def test_hopeless_answers_are_rejected_after_the_reasks(distill, news: Path) -> None:
    with FakeOpenAI(lambda body, count: answer("I think it is good news.")) as server:
        run = distill(*teacher_args(server, news, "--max-reasks", "1"))
    assert run.code == 0
    assert run.manifest["counts"]["rejected_by_reason"] == {"no_thinking": 6}
    assert len(server.requests) == 12
    assert all("(after 1 re-ask)" in r["detail"] for r in run.jsonl("rejects.jsonl"))


def test_429_honours_retry_after(distill, news: Path) -> None:
    def script(body: dict, count: int) -> Reply:
        if count == 1:
            return Reply(status=429, headers={"Retry-After": "1"}, error="rate limited")
        return answer(finsight_reply())

    with FakeOpenAI(script) as server:
        run = distill(*teacher_args(server, news, "--limit", "2"))
    assert run.manifest["counts"]["accepted"] == 2 and len(server.requests) == 4
    by_key: dict[str, list[float]] = {}
    for body, at in zip(server.requests, server.times, strict=True):
        by_key.setdefault(json.dumps(body, sort_keys=True), []).append(at)
    assert all(times[1] - times[0] >= 0.95 for times in by_key.values())  # waited what the server asked
    assert run.jsonl("examples.jsonl")[0]["provenance"]["attempts"] == 2


@pytest.mark.parametrize(
    "fault",
    [
        Reply(status=429, error="slow down"),  # no Retry-After: exponential backoff with jitter
        Reply(status=500),
        Reply(status=503),
        Reply(status=408),
        Reply(delay=3.0, content=finsight_reply()),  # longer than --timeout 2
        Reply(drop=True),
        Reply(no_choices=True),
        Reply(raw=b"<html>502 Bad Gateway</html>"),  # a proxy's page with status 200
        Reply(raw=b'{"choices": ['),  # a body cut short
    ],
    ids=["429", "500", "503", "408", "timeout", "dropped", "no-choices", "html-body", "bad-json-body"],
)
def test_transient_faults_are_retried(distill, news: Path, fault: Reply) -> None:
    with FakeOpenAI(lambda body, count: fault if count == 1 else answer(finsight_reply())) as server:
        run = distill(*teacher_args(server, news, "--limit", "2"))
    assert run.code == 0, run.err
    assert run.manifest["counts"]["accepted"] == 2 and len(server.requests) == 4


def test_a_row_whose_retries_run_out_fails_alone(distill, news: Path) -> None:
    def script(body: dict, count: int) -> Reply:
        return Reply(status=500) if "Beta Oyj" in user_text(body) else answer(finsight_reply())

    with FakeOpenAI(script) as server:
        run = distill(*teacher_args(server, news, "--max-retries", "2"))
    counts = run.manifest["counts"]
    assert counts["accepted"] == 5 and counts["rejected_by_reason"] == {"teacher_error": 1}
    assert run.jsonl("rejects.jsonl")[0]["detail"].startswith("HTTP 500")
    assert sum("Beta Oyj" in user_text(b) for b in server.requests) == 3  # 1 + 2 retries, then no more


def test_non_retryable_answers_are_rejected_with_a_reason(distill, news: Path) -> None:
    with FakeOpenAI(lambda body, count: Reply(status=400, error="context length exceeded")) as server:
        run = distill(*teacher_args(server, news, "--limit", "3"))
    assert run.code == 0, run.err
    assert run.manifest["counts"]["rejected_by_reason"] == {"teacher_error": 3}
    assert len(server.requests) == 3  # never retried, never re-asked


def test_a_200_answer_that_is_not_json_is_retried_then_rejected_with_a_reason(distill, news: Path) -> None:
    with FakeOpenAI(lambda body, count: Reply(raw=b"<html><body>502 Bad Gateway</body></html>")) as server:
        run = distill(*teacher_args(server, news, "--limit", "2", "--max-retries", "2"))
    assert run.code == 0, run.err
    assert run.manifest["counts"]["rejected_by_reason"] == {"teacher_error": 2}
    assert len(server.requests) == 6  # 1 + 2 retries per row, like a 5xx
    assert all("not JSON" in r["detail"] for r in run.jsonl("rejects.jsonl"))
    assert run.manifest["requests"]["http_calls"] == 6 and run.manifest["requests"]["failed_calls"] == 6


def test_a_truncated_answer_is_asked_once_more_with_twice_the_room(distill, news: Path) -> None:
    def script(body: dict, count: int) -> Reply:
        if "Acme" in user_text(body) and body["max_tokens"] == 2048:
            return answer(finsight_reply())  # fits in the doubled limit
        return Reply(content=finsight_reply()[:60], finish_reason="length")

    with FakeOpenAI(script) as server:
        run = distill(*teacher_args(server, news, "--limit", "3"))
    assert run.manifest["counts"]["rejected_by_reason"] == {"truncated": 2}
    assert run.manifest["counts"]["accepted"] == 1 and run.manifest["requests"]["doubled_max_tokens"] == 3
    assert sorted(b["max_tokens"] for b in server.requests) == [1024, 1024, 1024, 2048, 2048, 2048]
    assert "also after doubling it" in run.jsonl("rejects.jsonl")[0]["detail"]


def test_wrong_key_stops_before_spending(distill, news: Path) -> None:
    with FakeOpenAI(good, api_key="sk-test-" + os.urandom(8).hex()) as server:  # not the key the client sends
        run = distill(*teacher_args(server, news))
    assert run.code == 3
    assert "rejected the API key (HTTP 401)" in run.err and len(run.err.strip().splitlines()) == 1
    assert server.requests == []


def test_unreachable_base_url_names_the_url(distill, news: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    run = distill(
        "--input",
        str(news),
        "--teacher",
        "openai",
        "--base-url",
        url,
        "--model",
        "m",
        "--api-key-env",
        KEY_NAME,
        "--timeout",
        "2",
    )
    assert run.code == 3
    assert f"cannot reach {url}" in run.err and len(run.err.strip().splitlines()) == 1


def test_the_api_key_never_reaches_a_file_or_a_log(distill, news: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(lambda body, count: Reply(status=500) if count == 1 else answer(finsight_reply())) as server:
        run = distill(*teacher_args(server, news, "--dry-run"))
        run = distill(*teacher_args(server, news))
    assert run.code == 0 and server.auth_headers  # the key was used ...
    texts = [run.out, run.err, caplog.text]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in run.out_dir.rglob("*") if p.is_file()]
    assert len(texts) > 10
    assert not any(SECRET in text for text in texts)  # ... and written nowhere
    assert KEY_NAME in json.dumps(run.manifest["config"])  # only its name is recorded


@pytest.mark.parametrize("status", [401, 403, 404])
def test_errors_every_row_would_repeat_stop_the_run(distill, news: Path, status: int, tmp_path: Path) -> None:
    def script(body: dict, count: int) -> Reply:
        if "Zeta Foods" in user_text(body):  # the last row: the others were answered and stored first
            return Reply(status=status, error="model not found" if status == 404 else "no access")
        return answer(finsight_reply())

    out = tmp_path / "stopped"
    with FakeOpenAI(script) as server:
        run = distill(*teacher_args(server, news, "--concurrency", "1"), out=out)
        assert run.code == 3 and f"HTTP {status}" in run.err and len(run.err.strip().splitlines()) == 1
        assert len(server.requests) == 6
        resumed = distill(*teacher_args(server, news, "--concurrency", "1", "--limit", "5"), out=out)
    assert resumed.code == 0 and resumed.manifest["requests"]["sent"] == 0  # nothing paid for was lost
