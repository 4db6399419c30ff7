"""No key in any file, log or message: servers that echo the Authorization header or the key in their errors, and
a key typed where its variable's name belongs. Both CLIs, against scripted servers on 127.0.0.1 (a real server
will not echo a key on demand)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_gen.redact import redact
from eval.run import main as eval_main
from tests.conftest import SAMPLES
from tests.fake_server import FakeOpenAI, Reply, answer, finsight_reply, user_text

KEY_NAME = "FIN_DISTILL_REDACTION_KEY"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "ds-" + os.urandom(12).hex()  # not shaped like an OpenAI key: only knowing it can mask it
    monkeypatch.setenv(KEY_NAME, value)
    return value


def everything_written(run) -> str:
    texts = [run.out, run.err]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in run.out_dir.rglob("*") if p.is_file()]
    return "\n".join(texts)


def teacher(server: FakeOpenAI) -> list[str]:
    return ["--input", str(SAMPLES / "news.csv"), "--limit", "4", "--teacher", "openai", "--base-url",
            server.base_url, "--model", "m", "--api-key-env", KEY_NAME, "--max-retries", "0"]  # fmt: skip


def test_a_server_that_echoes_the_authorization_header_leaves_no_key_in_rejects_or_logs(distill, secret: str) -> None:
    stranger = "sk-proj-" + os.urandom(10).hex()  # someone else's key, in the same body

    def echo(body: dict, count: int) -> Reply:
        if "Nokia" in user_text(body) or count > 0:
            return Reply(status=400, error=f"bad request: headers were {{'Authorization': 'Bearer {secret}'}}, "
                                           f"org key {stranger}")  # fmt: skip
        return answer(finsight_reply())

    with FakeOpenAI(echo) as server:
        run = distill(*teacher(server))
    assert run.code == 0 and run.manifest["counts"]["rejected_by_reason"] == {"teacher_error": 4}
    written = everything_written(run)
    assert secret not in written and stranger not in written
    assert "Bearer [REDACTED]" in run.jsonl("rejects.jsonl")[0]["detail"]


def test_a_401_whose_message_holds_the_key_is_printed_without_it(distill, secret: str, capsys) -> None:
    refuse = lambda body, count: Reply(status=401, error=f"Incorrect API key provided: {secret}")  # noqa: E731
    with FakeOpenAI(refuse) as server:  # GET /models answers; the first completion is refused
        run = distill(*teacher(server))
        assert run.code == 3 and len(run.err.strip().splitlines()) == 1
        assert secret not in everything_written(run) and "[REDACTED]" in run.err
        evaluation = run.out_dir.parent / "eval"
        code = eval_main(["--data", str(SAMPLES / "news.csv"), "--label-column", "label", "--limit", "2",
                          "--endpoint", server.base_url, "--model", "fake", "--api-key-env", KEY_NAME,
                          "--max-retries", "0", "--out", str(evaluation), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3 and secret not in err and "[REDACTED]" in err
    assert all(secret not in p.read_text(errors="replace") for p in evaluation.rglob("*") if p.is_file())


def test_a_key_given_as_the_variable_name_is_refused_without_repeating_it(distill, tmp_path: Path, capsys) -> None:
    pasted = "sk-" + os.urandom(16).hex()
    with FakeOpenAI() as server:
        run = distill("--input", str(SAMPLES / "news.csv"), "--teacher", "openai", "--base-url", server.base_url,
                      "--model", "m", "--api-key-env", pasted)  # fmt: skip
        assert server.requests == [] and server.auth_headers == []
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1
    assert pasted not in run.err and "takes the NAME of an environment variable" in run.err
    assert not run.out_dir.exists()
    for eval_flag in ("--api-key-env", "--teacher-api-key-env"):
        code = eval_main(["--data", str(SAMPLES / "news.csv"), "--label-column", "label", "--teacher", "openai",
                          "--teacher-base-url", "http://127.0.0.1:9/v1", "--teacher-model", "m", eval_flag, pasted,
                          "--out", str(tmp_path / "eval")])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and pasted not in err and eval_flag in err


def test_redact_masks_known_keys_and_key_shapes_but_not_finance_words() -> None:
    from data_gen import redact as module

    module.register("zz-" + "q" * 20)
    text = "key zz-qqqqqqqqqqqqqqqqqqqq, Authorization: Bearer abc123def456ghi789 and sk-live_0123456789abcdef"
    assert redact(text) == "key [REDACTED], Authorization: Bearer [REDACTED] and [REDACTED]"
    assert redact("Bearer bonds and bearer instruments rose") == "Bearer bonds and bearer instruments rose"
