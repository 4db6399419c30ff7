"""The spending cap holds whatever a server reports: no usage at all, more tokens than the client counted, an
earlier uncapped run into the same folder, requests in flight at a kill. Against scripted servers on 127.0.0.1
(a real one will not omit usage or over-report on demand); the same client is tested against a real server in
test_engine_llamafactory.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.fake_server import FakeOpenAI, Reply, answer, finsight_reply

KEY_NAME = "FIN_DISTILL_TEST_KEY"
PRICE = 100.0  # USD per million tokens, input and output: one token is $0.0001


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_NAME, "sk-test-" + os.urandom(8).hex())


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(f"models:\n  priced: {{input: {PRICE}, output: {PRICE}}}\n")
    return path


def write_news(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "news.csv"
    rows = [f'"Company {i:03d} Oyj said quarter {i} sales rose {i % 9 + 1}% in region {i % 5}."' for i in range(n)]
    path.write_text("text\n" + "\n".join(rows) + "\n")
    return path


def args(server: FakeOpenAI, news: Path, prices: Path, *extra: str) -> list[str]:
    return ["--input", str(news), "--teacher", "openai", "--base-url", server.base_url, "--model", "priced",
            "--api-key-env", KEY_NAME, "--prices", str(prices), "--timeout", "10", "--max-retries", "1",
            "--no-dedup", *extra]  # fmt: skip


def ledger(out: Path) -> list[dict]:
    db = sqlite3.connect(out / "cache.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute("SELECT * FROM calls ORDER BY id")]
    finally:
        db.close()


def spent(out: Path) -> float:
    return sum(row["cost"] for row in ledger(out))


def test_a_server_that_reports_no_usage_is_counted_by_the_client_and_capped(distill, tmp_path, prices) -> None:
    news = write_news(tmp_path, 40)
    cap = 2.0  # each answer counts ~1,780 tokens ($0.178) with the client's estimate
    with FakeOpenAI(lambda body, count: answer(finsight_reply(), usage=None)) as server:
        run = distill(*args(server, news, prices, "--max-cost", str(cap), "--concurrency", "8"))
    assert run.code == 4, run.err  # stopped by the cap: on the server's word alone it would have cost $0
    calls = ledger(run.out_dir)
    answered = [c for c in calls if c["state"] == "answered"]
    assert answered and all(c["estimated"] and c["cost"] > 0.1 for c in answered)  # flagged, and not free
    assert 0.7 * cap <= spent(run.out_dir) <= cap
    assert len(server.requests) == len(calls) < 40
    assert (run.out_dir / "distill.log").read_text().count("reports no token usage") == 1  # one warning per run
    manifest = run.manifest
    assert manifest["requests"]["usage_estimated_calls"] == len(answered)
    assert manifest["budget"]["spent_cost_usd_all_runs"] == pytest.approx(spent(run.out_dir))


def test_a_server_that_counts_more_than_the_client_cannot_carry_spend_past_the_cap(distill, tmp_path, prices) -> None:
    """Non-Latin text, hidden reasoning tokens, completions over max_tokens: the server's count is what is billed."""

    def over_counting(body: dict, count: int) -> Reply:
        chars = sum(len(m["content"]) for m in body["messages"])  # a token per character: ~3x the client's count
        return answer(finsight_reply(), usage={"prompt_tokens": chars, "completion_tokens": 1500})  # > max_tokens

    news = write_news(tmp_path, 60)
    cap = 5.0  # an answer is billed ~6,500 tokens ($0.65); the client's first worst case is ~2,740 ($0.27)
    with FakeOpenAI(over_counting, latency=0.05) as server:
        run = distill(*args(server, news, prices, "--max-cost", str(cap), "--concurrency", "16"))
    assert run.code == 4, run.err
    assert spent(run.out_dir) <= cap  # 16 requests in flight at ~$0.27 reserved each would have spent ~$10
    assert spent(run.out_dir) >= 0.6 * cap
    assert not any(c["estimated"] for c in ledger(run.out_dir))  # the server's own numbers


def test_an_uncapped_earlier_run_counts_toward_a_later_cap(distill, tmp_path, prices) -> None:
    news = write_news(tmp_path, 12)
    out = tmp_path / "out"
    with FakeOpenAI(realistic_usage=True) as server:
        first = distill(*args(server, news, prices, "--limit", "6"), out=out)  # no cap: still in the ledger
        assert first.code == 0 and len(ledger(out)) == 6
        paid = spent(out)
        assert paid > 0 and first.manifest["budget"]["spent_cost_usd_all_runs"] == pytest.approx(paid)
        sent_before = len(server.requests)
        capped = distill(*args(server, news, prices, "--max-cost", f"{paid * 0.9:.4f}"), out=out)
        assert capped.code == 4 and len(server.requests) == sent_before  # the folder is over this cap already
    assert f"${paid:.4f} of --max-cost" in capped.err


@pytest.mark.parametrize(
    ("flag", "value"),
    [*(("--max-cost", v) for v in ("nan", "inf", "-inf", "0", "-1")), ("--max-tokens", "0"), ("--max-tokens", "-5")],
)
def test_caps_must_be_positive_and_finite(distill, tmp_path, prices, flag: str, value: str) -> None:
    news = write_news(tmp_path, 2)
    with FakeOpenAI() as server:
        run = distill(*args(server, news, prices, f"{flag}={value}"))
        assert server.requests == []
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1 and flag in run.err
    assert not run.out_dir.exists()


def test_a_token_cap_that_is_not_a_whole_number_is_refused_by_the_parser(distill, tmp_path, prices, capsys) -> None:
    with FakeOpenAI() as server, pytest.raises(SystemExit) as stopped:
        distill(*args(server, write_news(tmp_path, 2), prices, "--max-tokens", "nan"))
    assert stopped.value.code == 2 and "--max-tokens: invalid int value: 'nan'" in capsys.readouterr().err


def test_the_stop_message_says_what_is_spent_what_is_reserved_and_how_to_resume(distill, tmp_path, prices) -> None:
    news = write_news(tmp_path, 30)
    with FakeOpenAI(realistic_usage=True) as server:
        run = distill(*args(server, news, prices, "--max-cost", "1.5", "--concurrency", "16"))
    assert run.code == 4
    message = run.err.strip().splitlines()[-1]
    paid = spent(run.out_dir)
    assert f"${paid:.4f} of --max-cost $1.5000 is spent" in message and "reserved by requests in flight" in message
    assert "rerun the same command with a higher cap" in message
    rejected = run.manifest["counts"]["rejected_by_reason"]["budget_exhausted"]
    assert f"{rejected:,} rows not asked are rejected as budget_exhausted" in message
    assert paid >= 0.75 * 1.5  # near the cap fewer requests are in flight, rather than a stop at a third of it


def test_requests_in_flight_at_a_kill_are_reserved_durably_and_counted_by_the_next_run(
    distill, tmp_path, prices
) -> None:
    news = write_news(tmp_path, 8)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with FakeOpenAI(lambda body, count: answer(finsight_reply(), delay=30)) as server:  # answers nothing in time
        command = [sys.executable, "-m", "data_gen.distill", *args(server, news, prices, "--concurrency", "4"),
                   "--out", str(out), "--no-progress"]  # fmt: skip
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while len(server.requests) < 4 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert len(server.requests) == 4, "the run did not get 4 requests in flight"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    held = ledger(out)
    assert [c["state"] for c in held] == ["reserved"] * 4  # on record before they were sent
    reserved = sum(c["cost"] for c in held)
    assert reserved > 4 * 0.2  # each at its worst case (~2,740 tokens)
    with FakeOpenAI(realistic_usage=True) as server:
        stopped = distill(*args(server, news, prices, "--max-cost", f"{reserved * 0.99:.4f}"), out=out)
        assert stopped.code == 4 and server.requests == []  # the provider may have billed them: they count
        assert "4 requests in flight when an earlier run stopped count at their worst case" in stopped.err
        resumed = distill(*args(server, news, prices), out=out)
    assert resumed.code == 0 and resumed.manifest["budget"]["in_flight_at_a_stop"] == 4
    assert resumed.manifest["budget"]["spent_cost_usd_all_runs"] == pytest.approx(spent(out))
    assert json.loads((out / "manifest.json").read_text())["counts"]["accepted"] == 8


def test_a_tokenizer_makes_the_client_count_exact(distill, tmp_path, prices) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from data_gen.client.tokens import TokenCounter

    vocabulary = Tokenizer(models.BPE(unk_token="[UNK]"))
    vocabulary.pre_tokenizer = pre_tokenizers.ByteLevel()
    corpus = [finsight_reply(), "Company Oyj said quarter sales rose in region.", *("financial analyst JSON",) * 5]
    vocabulary.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["[UNK]"]))
    vocabulary.save(str(tmp_path / "tokenizer.json"))
    news = write_news(tmp_path, 3)
    with FakeOpenAI(lambda body, count: answer(finsight_reply(), usage=None)) as server:
        run = distill(*args(server, news, prices, "--tokenizer", str(tmp_path / "tokenizer.json")))
    assert run.code == 0
    counter = TokenCounter(str(tmp_path))  # a folder holding tokenizer.json works too
    expected = [(counter.messages(body["messages"]), counter.count(finsight_reply())) for body in server.requests]
    assert [(c["prompt_tokens"], c["completion_tokens"]) for c in ledger(run.out_dir)] == expected
    assert expected[0][0] != TokenCounter().messages(server.requests[0]["messages"])  # not the estimate
