"""Long, paid runs: cache layers, budgets that hold, batch files, every fault at once, the dataset card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from data_gen.client.cache import ResponseCache
from data_gen.client.types import request_key
from tests.fake_server import FakeOpenAI, Reply, answer, finsight_reply, user_text

KEY_NAME = "FIN_DISTILL_TEST_KEY"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_NAME, "sk-test-long-runs")


def write_news(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "news.csv"
    lines = [f'"Company {i:03d} Oyj reported quarter number {i} with {i * 7 % 13} new stores in region {i % 5}."'
             for i in range(n)]  # fmt: skip
    path.write_text("text\n" + "\n".join(lines) + "\n")
    return path


def args(server: FakeOpenAI, news: Path, *extra: str) -> list[str]:
    return ["--input", str(news), "--task", "finsight", "--teacher", "openai", "--base-url", server.base_url,
            "--model", "deepseek-chat", "--api-key-env", KEY_NAME, "--timeout", "5", "--max-retries", "3",
            "--no-dedup", *extra]  # fmt: skip


# ---------------------------------------------------------------- cache layers
def test_changing_max_tokens_asks_only_the_truncated_rows(distill, tmp_path: Path) -> None:
    news = write_news(tmp_path, 8)

    def script(body: dict, count: int) -> Reply:
        long_reply = "3" in user_text(body) or "5" in user_text(body).split()[1]  # rows whose answer is long
        if long_reply and body["max_tokens"] < 4096:
            return Reply(content="<thinking>cut", finish_reason="length")
        return answer(finsight_reply(), usage={"prompt_tokens": 100, "completion_tokens": 300})

    out = tmp_path / "out"
    with FakeOpenAI(script) as server:
        first = distill(*args(server, news), out=out).manifest  # 1024, doubled once to 2048: still too short
        truncated = first["counts"]["rejected_by_reason"]["truncated"]
        assert truncated >= 1 and first["counts"]["accepted"] == 8 - truncated
        before = len(server.requests)
        second = distill(*args(server, news, "--max-completion-tokens", "4096"), out=out).manifest
        assert len(server.requests) - before == truncated  # only the truncated rows were asked again
        assert second["counts"]["accepted"] == 8
        before = len(server.requests)
        third = distill(*args(server, news, "--max-completion-tokens", "512"), out=out).manifest
        # every stored reply that finished used 300 tokens, within a smaller limit too: nothing is asked
        assert len(server.requests) == before and third["counts"]["accepted"] == 8


def test_a_stored_reply_longer_than_a_smaller_limit_counts_as_cut(tmp_path: Path) -> None:
    from data_gen.client.types import Completion, Usage

    cache = ResponseCache(tmp_path / "cache.sqlite")
    cache.put("k", "e", {"model": "m", "max_tokens": 2048}, Completion("long", finish_reason="stop",
                                                                        usage=Usage(10, 1500)))  # fmt: skip
    assert cache.lookup("k", 2048).finish_reason == "stop"
    assert cache.lookup("k", 1024).finish_reason == "length"  # it needed 1,500 tokens
    cache.put("t", "e", {"model": "m", "max_tokens": 1024}, Completion("cut", finish_reason="length"))
    assert cache.lookup("t", 512).finish_reason == "length"  # cut at 1024 is cut at 512 too
    assert cache.lookup("t", 2048) is None  # a larger limit may let it finish: ask
    cache.close()


def test_refresh_rejected_asks_again_only_for_rejected_rows(distill, tmp_path: Path) -> None:
    news = write_news(tmp_path, 6)
    fixed = {"on": False}

    def script(body: dict, count: int) -> Reply:
        if "001" in user_text(body) and not fixed["on"]:
            return answer("no reasoning, no json")
        return answer(finsight_reply())

    out = tmp_path / "out"
    with FakeOpenAI(script) as server:
        first = distill(*args(server, news, "--max-reasks", "0"), out=out).manifest
        assert first["counts"]["rejected_by_reason"] == {"no_thinking": 1}
        before = len(server.requests)
        again = distill(*args(server, news, "--max-reasks", "0"), out=out).manifest
        assert len(server.requests) == before and again["counts"] == first["counts"]  # plain rerun: from cache
        fixed["on"] = True
        refreshed = distill(*args(server, news, "--max-reasks", "0", "--refresh-rejected"), out=out).manifest
        assert len(server.requests) == before + 1  # just the rejected row
        assert refreshed["counts"]["accepted"] == 6


def test_changing_the_prompt_asks_everything_it_changes(distill, tmp_path: Path) -> None:
    news = write_news(tmp_path, 4)
    out = tmp_path / "out"
    with FakeOpenAI() as server:
        distill(*args(server, news), out=out)
        distill(*args(server, news, "--formats", "alpaca", "--splits", "train=1.0", "--require-gold-agreement"),
                out=out)  # fmt: skip
        assert len(server.requests) == 4  # output format, splits and validation rules re-ask nothing
        distill(*args(server, news, "--seed", "7"), out=out)
        assert len(server.requests) == 8  # a sampling parameter is part of the request


# ---------------------------------------------------------------- budget
def test_the_budget_is_never_exceeded_retries_included_and_a_higher_cap_resumes(distill, tmp_path: Path) -> None:
    news = write_news(tmp_path, 12)

    def script(body: dict, count: int) -> Reply:
        return Reply(status=500) if count == 1 else answer(finsight_reply())  # every first attempt fails

    out = tmp_path / "out"
    cap = 0.0030  # deepseek-chat prices; each attempt reserves ~1,700 prompt + 1,024 completion tokens
    with FakeOpenAI(script, realistic_usage=True) as server:
        stopped = distill(*args(server, news, "--max-cost", str(cap), "--concurrency", "3"), out=out)
        assert stopped.code == 4 and "stopped by the budget" in stopped.err
        manifest = stopped.manifest
        counts = manifest["counts"]
        assert counts["accepted"] + counts["rejected"] == 12
        assert counts["rejected_by_reason"]["budget_exhausted"] >= 1 and counts["accepted"] >= 1
        cache = ResponseCache(out / "cache.sqlite")
        spent = cache.spent()
        assert spent.cost <= cap  # the contract
        assert spent.calls == len(server.requests)  # every call is in the ledger, failed attempts included
        assert manifest["budget"]["spent_cost_usd_all_runs"] == pytest.approx(spent.cost)
        stored = {request_key(server.base_url, body) for body in server.requests if cache.get(
            request_key(server.base_url, body))}  # fmt: skip
        cache.close()
        seen_before = len(server.requests)
        resumed = distill(*args(server, news, "--max-cost", "1.0", "--concurrency", "3"), out=out)
        assert resumed.code == 0 and resumed.manifest["counts"]["accepted"] == 12
        later = [request_key(server.base_url, body) for body in server.requests[seen_before:]]
        assert not stored & set(later)  # nothing stored was asked again


def test_a_cost_cap_needs_a_price(distill, tmp_path: Path) -> None:
    news = write_news(tmp_path, 2)
    with FakeOpenAI() as server:
        run = distill(*[a if a != "deepseek-chat" else "unpriced-model" for a in args(server, news)],
                      "--max-cost", "1")  # fmt: skip
    assert run.code == 2 and "--max-cost needs a price for model 'unpriced-model'" in run.err


# ---------------------------------------------------------------- batch files
def batch_results(request_file: Path, results: Path, skip: set[int] = frozenset(), fail: set[int] = frozenset()):
    """Answer a batch input file in the documented output format (as OpenAI's Batch API and vllm run-batch do)."""
    lines = []
    for i, line in enumerate(request_file.read_text().splitlines()):
        item = json.loads(line)
        assert item["method"] == "POST" and item["url"] == "/v1/chat/completions"
        if i in skip:
            continue
        if i in fail:
            lines.append({"id": f"batch_req_{i}", "custom_id": item["custom_id"], "response": None,
                          "error": {"code": "batch_expired", "message": "expired"}})  # fmt: skip
            continue
        body = {"id": f"chatcmpl-{i}", "object": "chat.completion", "created": 0, "model": item["body"]["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": finsight_reply()},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}  # fmt: skip
        lines.append(
            {
                "id": f"batch_req_{i}",
                "custom_id": item["custom_id"],
                "response": {"status_code": 200, "request_id": f"req_{i}", "body": body},
                "error": None,
            }
        )
    lines.reverse()  # output order is not input order
    results.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_batch_round_trip_completes_with_zero_live_requests(distill, tmp_path: Path) -> None:
    news = write_news(tmp_path, 10)
    out = tmp_path / "out"
    with FakeOpenAI() as server:
        written = distill(*args(server, news, "--batch-write"), out=out)
        assert written.code == 0 and "10 requests written to 1 batch file(s)" in written.out
        assert server.requests == []  # nothing was sent
        requests = out / "batch" / "requests-0001.jsonl"
        custom_ids = [json.loads(line)["custom_id"] for line in requests.read_text().splitlines()]
        assert len(set(custom_ids)) == 10 and all(len(c) == 64 for c in custom_ids)  # the cache keys
        batch_results(requests, tmp_path / "results.jsonl")
        ingested = distill("--batch-ingest", str(tmp_path / "results.jsonl"), *args(server, news), out=out)
        assert ingested.code == 0 and "10 result lines: 10 answers stored" in ingested.out
        done = distill(*args(server, news), out=out)
        assert done.code == 0 and done.manifest["counts"]["accepted"] == 10
        assert server.requests == [] and done.manifest["requests"]["sent"] == 0
    # the answers were paid for at batch prices: the ledger holds them, and a later cap counts them
    batch_cost = 10 * (100 * 0.27 + 50 * 1.10) / 1e6 * 0.5  # deepseek-chat list prices, half for batch
    assert done.manifest["budget"]["spent_cost_usd_all_runs"] == pytest.approx(batch_cost)
    assert done.manifest["budget"]["calls_all_runs"] == 10


def test_failed_and_missing_batch_lines_are_reported_and_asked_again(distill, tmp_path: Path) -> None:
    news = write_news(tmp_path, 6)
    out = tmp_path / "out"
    with FakeOpenAI() as server:
        distill(*args(server, news, "--batch-write"), out=out)
        batch_results(out / "batch" / "requests-0001.jsonl", tmp_path / "results.jsonl", skip={0}, fail={1})
        report = distill("--batch-ingest", str(tmp_path / "results.jsonl"), *args(server, news), out=out)
        assert "6 result lines" not in report.out and "5 result lines: 4 answers stored" in report.out
        assert "1 failed (error_batch_expired 1)" in report.out
        assert "2 requests written to batch files still have no answer" in report.out
        done = distill(*args(server, news), out=out)
        assert done.manifest["counts"]["accepted"] == 6 and len(server.requests) == 2  # only those two, live


def test_batch_files_split_at_the_line_and_size_limits(tmp_path: Path) -> None:
    from data_gen.client.batch import BatchWriter

    writer = BatchWriter(tmp_path, max_lines=3, max_bytes=10_000)
    for i in range(7):
        writer.add(f"key{i}", {"model": "m", "messages": [{"role": "user", "content": "x" * 100}]})
    assert writer.add("key0", {"model": "m"}) is None  # a key is written once
    writer.close()
    assert [len(p.read_text().splitlines()) for p in writer.files] == [3, 3, 1]
    small = BatchWriter(tmp_path / "small", max_lines=50_000, max_bytes=500)
    for i in range(5):
        small.add(f"k{i}", {"model": "m", "messages": [{"role": "user", "content": "y" * 150}]})
    small.close()
    assert len(small.files) == 5 and all(p.stat().st_size <= 500 for p in small.files)


def test_dry_run_prices_online_and_batch(distill, tmp_path: Path) -> None:
    news = write_news(tmp_path, 10)
    with FakeOpenAI() as server:
        run = distill(*args(server, news, "--dry-run"))
    online = float(run.out.split("cost online")[1].split("$")[1].split()[0].replace(",", ""))
    batch = float(run.out.split("cost as batch files")[1].split("$")[1].split()[0].replace(",", ""))
    assert batch == pytest.approx(online / 2, rel=1e-3) and server.requests == []


# ---------------------------------------------------------------- every fault at once
FAULTS = {  # row number -> what the server does with that row's requests
    0: "ok", 1: "429-retry-after", 2: "429", 3: "500", 4: "503", 5: "timeout", 6: "reset", 7: "truncated",
    8: "invalid-json", 9: "schema", 10: "no-choices", 11: "always-500", 12: "ok-after-reask",
}  # fmt: skip


def fault_script(body: dict, count: int) -> Reply:
    row = int(user_text(body).split()[1])
    fault = FAULTS.get(row, "ok")
    reask = len(body["messages"]) > 2
    first = count == 1
    if fault == "429-retry-after" and first:
        return Reply(status=429, headers={"Retry-After": "1"})
    if fault == "429" and first:
        return Reply(status=429)
    if fault in ("500", "503") and first:
        return Reply(status=int(fault))
    if fault == "timeout" and first:
        return Reply(delay=3.0, content=finsight_reply())
    if fault == "reset" and first:
        return Reply(drop=True)
    if fault == "no-choices" and first:
        return Reply(no_choices=True)
    if fault == "always-500":
        return Reply(status=500)
    if fault == "truncated":
        return Reply(content="<thinking>never ends", finish_reason="length")
    if fault == "invalid-json":
        return answer("<thinking>x\nConclusion: sentiment is positive.</thinking>\n{{{ not json ]]")
    if fault == "schema":
        return answer(finsight_reply().replace('"Low"', '"Severe"'))
    if fault == "ok-after-reask" and not reask:
        return answer("<thinking>x</thinking> no object here")
    return answer(finsight_reply())


def test_every_fault_at_once_every_row_accounted_for_exactly(distill, tmp_path: Path) -> None:
    news = tmp_path / "news.csv"
    news.write_text("text\n" + "".join(f"row {i} news text number {i}\n" for i in range(16)))
    with FakeOpenAI(fault_script) as server:
        run = distill(*args(server, news, "--timeout", "1.5", "--max-retries", "2", "--max-reasks", "1"))
    assert run.code == 0, run.err
    counts = run.manifest["counts"]
    assert counts["rejected_by_reason"] == {"teacher_error": 1, "truncated": 1, "invalid_json": 1,
                                            "schema_invalid": 1}  # fmt: skip
    assert counts["accepted"] == 12 and counts["input"] == 16
    by_row = {r["row"]: r["reason"] for r in run.jsonl("rejects.jsonl")}
    assert by_row == {12: "teacher_error", 8: "truncated", 9: "invalid_json", 10: "schema_invalid"}  # rows 1-based


# ---------------------------------------------------------------- the dataset card
def test_dataset_card_loads_with_datasets_and_says_what_happened(distill, tmp_path: Path) -> None:
    import datasets

    news = write_news(tmp_path, 20)
    with FakeOpenAI() as server:
        run = distill(*args(server, news))
    card = (run.out_dir / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert {c["config_name"] for c in header["configs"]} == {"sharegpt", "alpaca"}
    assert "finance" in header["tags"] and header["size_categories"] == ["n<1K"]
    assert "| accepted" not in card and "20 input rows: 20 accepted" in card and run.manifest["command"] in card
    loaded = datasets.load_dataset(str(run.out_dir), "sharegpt")
    assert sum(len(split) for split in loaded.values()) == 20
    assert set(loaded) == {s for s, n in run.manifest["counts"]["accepted_by_split"].items() if n}
    provenance = run.jsonl("examples.jsonl")[0]["provenance"]
    assert provenance["endpoint_host"].startswith("127.0.0.1:") and provenance["received_at"].endswith("+00:00")
