"""Logit-distillation rows from a teacher behind a server (`--kd-teacher http://.../v1`, the `vllm serve` path).

vLLM needs a CUDA GPU, so `tests/vllm_like_server.py` answers in vLLM's response format with a real local model;
the rows it leads to must equal, position for position, those the same model gives when run in process. Servers
that cannot give rows (token names as text, too few log-probabilities, another tokenizer, a chat-only server: the
real `llamafactory-cli api`) are refused before anything is asked; rows a server cannot score are rejected with the
reason; rows already scored are never asked for again.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from data_gen.distill import main as distill

from .conftest import LF_PYTHON, SAMPLES, Server, free_port, recipe_module, start_in_session, stop_process

pytestmark = [pytest.mark.engine, pytest.mark.slow]
pytest.importorskip("transformers")

TOP_K = 8
DEFAULTS = {"names_as_text": False, "max_logprobs": 20, "max_model_len": 32768}


def call(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The scripted vLLM stand-in serving the tiny model on 127.0.0.1; stopped after the module."""
    import sys
    import time

    port = free_port()
    log = tmp_path_factory.mktemp("vllm_like") / "server.log"
    argv = [sys.executable, "-m", "tests.vllm_like_server", "--model", str(tiny_model), "--port", str(port)]
    proc = start_in_session(argv, log, env=None)  # type: ignore[arg-type]
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                call(root + "/v1/models")
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start within 120 s"
                time.sleep(0.3)
        yield root
    finally:
        stop_process(proc)


@pytest.fixture
def server(served: str) -> str:
    call(served + "/configure", DEFAULTS)
    return served


def argv(tiny_model: Path, teacher: str, out: Path, *extra: str) -> list[str]:
    return ["--config", "data_gen/configs/finsight.yaml", "--input", str(SAMPLES / "news.csv"), "--limit", "6",
            "--kd-teacher", teacher, "--kd-top-k", str(TOP_K), "--student-tokenizer", str(tiny_model),
            "--out", str(out), "--no-progress", *extra]  # fmt: skip


def kd_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for split in ("train", "validation", "test") if (out / f"kd_{split}.jsonl").exists()
            for line in (out / f"kd_{split}.jsonl").read_text().splitlines()]  # fmt: skip


def asked(root: str) -> int:
    return call(root + "/stats")["completions"]


def test_a_served_teacher_gives_the_rows_the_local_teacher_gives(server: str, tiny_model: Path, tmp_path: Path):
    assert distill(argv(tiny_model, str(tiny_model), tmp_path / "local")) == 0
    before = asked(server)
    assert distill(argv(tiny_model, server + "/v1", tmp_path / "served")) == 0
    assert asked(server) - before == 6 + 1  # one request per reply, and the probe
    local, remote = kd_rows(tmp_path / "local"), kd_rows(tmp_path / "served")
    assert len(remote) == len(local) == 6
    for a, b in zip(remote, local, strict=True):
        assert a["id"] == b["id"] and a["messages"] == b["messages"]
        assert a["target_token_ids"] == b["target_token_ids"]  # same tokens at every position, same order
        assert max(abs(x - y) for ra, rb in zip(a["logprobs"], b["logprobs"], strict=True)
                   for x, y in zip(ra, rb, strict=True)) < 1e-4  # fmt: skip
    manifest = json.loads((tmp_path / "served" / "manifest.json").read_text())
    assert manifest["kd"]["scored"] == manifest["counts"]["accepted"] == 6
    assert manifest["kd"]["teacher"] == {"model": "teacher", "path": server + "/v1"}

    files = {p.name: p.read_bytes() for p in (tmp_path / "served").glob("kd_*.jsonl")}
    before = asked(server)
    assert distill(argv(tiny_model, server + "/v1", tmp_path / "served")) == 0  # a re-run (or one after a crash)
    assert asked(server) - before == 1  # only the probe: every row came from the cache
    assert {p.name: p.read_bytes() for p in (tmp_path / "served").glob("kd_*.jsonl")} == files
    assert json.loads((tmp_path / "served" / "manifest.json").read_text())["kd"]["from_cache"] == 6


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"names_as_text": True}, "not token_id:<n>: it ignores return_tokens_as_token_ids"),
        ({"max_logprobs": 5}, "greater than max allowed: 5 (vllm serve allows 20 unless started with --max-logprobs"),
        ({}, "tokenizes a probe conversation into"),  # with the llama twin's tokenizer as the student's
        ({"url": ""}, "lists no models (HTTP 404"),  # the server's root, not its /v1 base URL
        ({"model": "nosuch"}, "serves ['teacher'], not 'nosuch': pass --kd-model NAME"),
    ],
    ids=["token-names-as-text", "max-logprobs", "other-tokenizer", "no-v1", "unknown-model"],
)
def test_servers_that_cannot_give_rows_are_refused_before_anything_is_asked(
    server: str, tiny_model: Path, tmp_path: Path, capsys, fault: dict[str, Any], message: str
) -> None:
    fault = dict(fault)
    url, model = server + fault.pop("url", "/v1"), fault.pop("model", None)
    call(server + "/configure", fault)
    args = argv(tiny_model, url, tmp_path / "out", *(["--kd-model", model] if model else []))
    if not fault and url.endswith("/v1") and not model:
        llama = recipe_module().tiny_twin("llama", str(LF_PYTHON))
        args[args.index("--student-tokenizer") + 1] = llama
    before = asked(server)
    assert distill(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err  # one line
    assert asked(server) - before <= 1  # at most the probe
    assert not (tmp_path / "out" / "examples.jsonl").exists()


def test_rows_the_server_cannot_score_are_rejected_with_the_reason(server: str, tiny_model: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    assert distill(argv(tiny_model, server + "/v1", tmp_path / "all")) == 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    lengths = {row["id"]: len(tokenizer.apply_chat_template(row["messages"], return_dict=True)["input_ids"])
               for row in kd_rows(tmp_path / "all")}  # fmt: skip
    limit = sorted(lengths.values())[len(lengths) // 2]  # the longer half cannot be scored
    call(server + "/configure", {"max_model_len": limit})
    assert distill(argv(tiny_model, server + "/v1", tmp_path / "some")) == 0
    manifest = json.loads((tmp_path / "some" / "manifest.json").read_text())
    too_long = {rid for rid, n in lengths.items() if n + 1 > limit}
    assert 0 < len(too_long) < 6
    counts = manifest["counts"]
    assert counts["rejected_by_reason"] == {"kd_score_failed": len(too_long)}
    assert counts["accepted"] + counts["rejected"] == counts["input"] == 6
    rejects = [json.loads(line) for line in (tmp_path / "some" / "rejects.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rejects} == too_long
    assert all("maximum context length" in r["detail"] for r in rejects)
    assert {row["id"] for row in kd_rows(tmp_path / "some")} == set(lengths) - too_long


def test_a_chat_only_server_is_refused_before_anything_is_asked(
    lf_server: Server, tiny_model: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real `llamafactory-cli api` (like OpenAI's and DeepSeek's APIs) cannot score a given text."""
    monkeypatch.setenv("LF_TEST_KEY", lf_server.api_key)
    args = ["--config", "data_gen/configs/finsight.yaml", "--input", str(SAMPLES / "news.csv"), "--limit", "3",
            "--teacher", "openai", "--base-url", lf_server.base_url, "--model", "tiny", "--api-key-env", "LF_TEST_KEY",
            "--kd-top-k", str(TOP_K), "--student-tokenizer", str(tiny_model), "--out", str(tmp_path / "out"),
            "--no-progress"]  # fmt: skip
    assert distill(args) == 2
    err = capsys.readouterr().err
    assert "cannot tokenize (HTTP 404" in err and "vllm serve" in err and lf_server.api_key not in err
    log = lf_server.log.read_text(errors="replace")
    assert "/tokenize" in log and "chat/completions" not in log  # asked to tokenize, then nothing
    assert not (tmp_path / "out" / "examples.jsonl").exists()
