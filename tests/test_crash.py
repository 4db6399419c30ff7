"""Exactly-once spend: `kill -9` a real distillation process at random moments, rerun until it finishes, and check
that no stored answer was ever asked for again and that the final files equal those of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_gen.client.types import request_key
from tests.conftest import ROOT
from tests.fake_server import FakeOpenAI, Reply, answer, finsight_reply, user_text

pytestmark = pytest.mark.slow
ROWS = 40
OUTPUTS = ("sharegpt_train.jsonl", "sharegpt_validation.jsonl", "sharegpt_test.jsonl", "alpaca_train.jsonl",
           "rejects.jsonl", "dataset_info.json")  # fmt: skip


def script(body: dict, count: int) -> Reply:
    row = int(user_text(body).split()[1])
    if row % 7 == 0 and len(body["messages"]) == 2:
        return answer("<thinking>no answer yet</thinking>")  # re-asked, then fine
    if row % 11 == 0:
        return answer("no thinking at all")  # rejected after its re-asks
    return answer(finsight_reply("negative" if row % 2 else "positive", "Medium"))


def command(server: FakeOpenAI, news: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "data_gen.distill", "--input", str(news), "--task", "finsight", "--teacher",
            "openai", "--base-url", server.base_url, "--model", "m", "--api-key-env", "CRASH_KEY", "--out", str(out),
            "--concurrency", "2", "--no-progress", "--no-dedup", "--timeout", "10"]  # fmt: skip


def stored_keys(out: Path) -> set[str]:
    path = out / "cache.sqlite"
    if not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {key for (key,) in db.execute("SELECT key FROM responses")}
    except sqlite3.OperationalError:  # killed before the table was created
        return set()
    finally:
        db.close()


def lines_all_parse(out: Path) -> None:
    for path in out.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line:
                json.loads(line)  # a half-written record would fail here


def without_provenance(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().split("\n") if line]
    for row in rows:
        row.pop("provenance")
    return rows


def test_kill_9_at_random_points_never_pays_twice_and_finishes_identically(tmp_path: Path) -> None:
    news = tmp_path / "news.csv"
    news.write_text("text\n" + "".join(f"row {i} of the crash test news, item {i}\n" for i in range(ROWS)))
    env = {**os.environ, "CRASH_KEY": "sk-crash", "PYTHONPATH": str(ROOT)}
    rng = random.Random(20261121)
    with FakeOpenAI(script, latency=0.15) as server:
        reference = tmp_path / "reference"
        subprocess.run(command(server, news, reference), env=env, check=True, capture_output=True, timeout=120)
        reference_requests = len(server.requests)

        out = tmp_path / "crashing"
        checkpoints: list[tuple[set[str], int]] = []  # (keys stored at the kill, requests the server had by then)
        kills = 0
        for _ in range(5):
            proc = subprocess.Popen(command(server, news, out), env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(rng.uniform(1.2, 3.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
            checkpoints.append((stored_keys(out), len(server.requests)))
            lines_all_parse(out)
        final = subprocess.run(command(server, news, out), env=env, capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr

        keys = [request_key(server.base_url, body) for body in server.requests[reference_requests:]]
        for stored, seen in checkpoints:  # after each kill, nothing already stored was requested again
            assert not stored & set(keys[seen - reference_requests :])
        # the only requests sent twice were in flight (sent, not yet answered) when a kill came: at most the
        # concurrency per kill, and never one whose answer had been stored
        assert len(keys) - len(set(keys)) <= 2 * kills
    total = len(stored_keys(reference))
    assert sum(0 < len(stored) < total for stored, _ in checkpoints) >= 2  # kills landed while it was asking
    for name in OUTPUTS:
        assert (out / name).read_text() == (reference / name).read_text(), name
    assert without_provenance(out / "examples.jsonl") == without_provenance(reference / "examples.jsonl")
    assert json.loads((out / "manifest.json").read_text())["counts"] == json.loads(
        (reference / "manifest.json").read_text())["counts"]  # fmt: skip
    assert not list(out.glob(".*.tmp")) and not (out / ".work.sqlite").exists()  # leftovers cleaned up
