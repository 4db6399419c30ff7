"""Smaller promises found by a hostile user: honest re-ask counts, refused connections named as such, numbers that
mean what they say, messages a person can act on, every HTTP attempt counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.run import main as eval_main
from tests.conftest import SAMPLES, free_port
from tests.fake_server import FakeOpenAI, Reply, answer, finsight_reply

NEWS = ["--input", str(SAMPLES / "news.csv"), "--limit", "3"]


def teacher(server: FakeOpenAI, *extra: str) -> list[str]:
    return [*NEWS, "--teacher", "openai", "--base-url", server.base_url, "--model", "m", "--api-key-env", "",
            *extra]  # fmt: skip


def test_a_reask_that_would_repeat_an_earlier_request_is_not_sent_or_counted(distill) -> None:
    with FakeOpenAI(lambda body, count: answer("Positive news, I would say.")) as server:  # always the same
        run = distill(*teacher(server, "--max-reasks", "2", "--limit", "1"))
    assert run.code == 0 and len(server.requests) == 2  # the ask and one re-ask; the second would be identical
    detail = run.jsonl("rejects.jsonl")[0]["detail"]
    assert "(after 1 re-ask; the teacher repeated its reply)" in detail
    assert run.manifest["requests"]["reasks"] == 1


def test_a_refused_connection_is_named_as_such(distill, capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    run = distill(*NEWS, "--teacher", "openai", "--base-url", url, "--model", "m", "--api-key-env", "")
    assert run.code == 3 and "connection refused" in run.err and "timed out" not in run.err
    code = eval_main(["--data", str(SAMPLES / "news.csv"), "--label-column", "label", "--endpoint", url, "--model",
                      "m", "--out", str(run.out_dir), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3 and "connection refused" in err and "timed out" not in err


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_timeout_must_be_positive(distill, value: str, capsys) -> None:
    with FakeOpenAI() as server:
        run = distill(*teacher(server, f"--timeout={value}"))
        assert server.requests == []
    assert run.code == 2 and "--timeout must be" in run.err and len(run.err.strip().splitlines()) == 1
    assert eval_main(["--data", str(SAMPLES / "news.csv"), "--label-column", "label", "--teacher", "rules",
                      f"--timeout={value}", "--out", str(run.out_dir)]) == 2  # fmt: skip
    assert "--timeout must be" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-2"])
def test_llamacpp_threads_must_be_at_least_one(tmp_path: Path, value: str, capsys) -> None:
    """Checked before any server starts, in one line (llama.cpp itself takes a negative count as its default)."""
    argv = ["--data", str(SAMPLES / "news.csv"), "--label-column", "label", "--backend", "llamacpp", "--model",
            str(tmp_path / "model"), "--threads", value, "--out", str(tmp_path / "out")]  # fmt: skip
    code = eval_main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "--threads must be at least 1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("line", "message"), [("concurrency: 4.7", "expected a whole number"),
                                               ("concurrency: true", "expected a whole number"),
                                               ("max_cost: .nan", "--max-cost must be a finite number")])  # fmt: skip
def test_yaml_numbers_are_not_quietly_changed(distill, tmp_path: Path, line: str, message: str) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(line + "\n")
    run = distill(*NEWS, "--config", str(config))
    assert run.code == 2 and message in run.err and len(run.err.strip().splitlines()) == 1


def test_a_bad_pair_value_is_named(distill, capsys) -> None:
    with pytest.raises(SystemExit):
        distill(*NEWS, "--splits", "train=abc")
    err = capsys.readouterr().err
    assert "<lambda>" not in err and "'train=abc': 'abc' is not a number" in err


def test_a_json_array_in_a_jsonl_file_is_one_line(distill, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps([{"text": "Acme rose."}, {"text": "Beta fell."}]) + "\n")
    run = distill("--input", str(path))
    assert run.code == 2 and "a JSON array, not JSON Lines" in run.err and "(none)" not in run.err


def test_malformed_lines_say_where_once(distill, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "Acme rose."}\n{"text": "unterminated\n')
    run = distill("--input", str(path))
    detail = run.jsonl("rejects.jsonl")[0]["detail"]
    assert "at at" not in detail and "Unterminated string starting at column 10" in detail


def test_failed_attempts_are_counted_in_the_summary_and_the_manifest(distill) -> None:
    script = lambda body, count: Reply(status=500) if count == 1 else answer(finsight_reply())  # noqa: E731
    with FakeOpenAI(script) as server:
        run = distill(*teacher(server))
    requests = run.manifest["requests"]
    assert len(server.requests) == 6 and requests["http_calls"] == 6 and requests["failed_calls"] == 3
    assert requests["sent"] == 3  # answers received
    assert "3 answers received in 6 HTTP calls (3 failed or unanswered)" in run.out


def test_eval_refuses_a_model_the_endpoint_does_not_list_before_any_request(tmp_path: Path, capsys) -> None:
    with FakeOpenAI(models=("qwen-7b", "qwen-7b-lora")) as server:
        code = eval_main(["--data", str(SAMPLES / "news.csv"), "--label-column", "label", "--endpoint",
                          server.base_url, "--model", "qwen-7b", "--adapter", "typo", "--out", str(tmp_path / "r"),
                          "--no-progress"])  # fmt: skip
        assert server.requests == []
    err = capsys.readouterr().err
    assert code == 2 and "serves 'qwen-7b', 'qwen-7b-lora', not 'typo': pass --adapter" in err
