"""Sharded distillation on the real CLI: `--shard K/N` runs (by hand, through `--workers N`, through `xargs -P` and a
Slurm array's variables) merged by `python -m data_gen.merge` give the dataset one process writes, byte for byte,
with a near duplicate whose pair falls into two shards still rejected; the merge refuses anything but one complete
job; a budget given to a sharded run holds for the whole job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_gen.merge import main as merge_main
from data_gen.sources.splits import shard_of
from tests.conftest import ROOT
from tests.fake_server import FakeOpenAI

WORDS = ["sales", "profit", "orders", "margin", "revenue", "costs", "debt", "dividend", "guidance", "demand"]
TRAINING = ("sharegpt_train.jsonl", "sharegpt_validation.jsonl", "sharegpt_test.jsonl", "alpaca_train.jsonl",
            "alpaca_validation.jsonl", "alpaca_test.jsonl", "rejects.jsonl", "dataset_info.json")  # fmt: skip


def sentence(i: int) -> str:
    moved = "rose" if i % 3 else "fell"
    return f"Company {i} said its {WORDS[i % 10]} {moved} {i % 7 + 2} percent in quarter {i % 4 + 1}."


def write_input(path: Path, rows: int = 40) -> tuple[Path, str, str]:
    """JSON Lines with ids and gold labels, an exact duplicate, an empty text, and a near duplicate of row 1 whose
    id puts it into the other of two shards; returns (path, the near duplicate's id, its original's id)."""
    items = [
        {"id": f"r{i}", "text": sentence(i), "label": "negative" if i % 3 == 0 else "positive"} for i in range(rows)
    ]
    original = items[1]
    twin = next(f"twin{j}" for j in range(100) if shard_of(f"twin{j}", 2) != shard_of(original["id"], 2))
    items.append({"id": twin, "text": original["text"].replace("percent", "per cent"), "label": original["label"]})
    items.append({"id": "copy", "text": items[5]["text"], "label": items[5]["label"]})
    items.append({"id": "blank", "text": " ", "label": "neutral"})
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path, twin, original["id"]


def job(path: Path, *extra: str) -> list[str]:
    return ["--input", str(path), "--task", "finsight", "--id-column", "id", "--label-column", "label", *extra]


def merge(capsys: pytest.CaptureFixture[str], out: Path, *shards: Path) -> tuple[int, str]:
    code = merge_main(["--out", str(out), *map(str, shards)])
    return code, capsys.readouterr().err


def assert_same_dataset(one: Path, merged: Path) -> None:
    for name in TRAINING:
        assert (merged / name).read_bytes() == (one / name).read_bytes(), name
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (one, merged))
    assert a["counts"] == b["counts"] and a["requests"] == b["requests"] and a["usage"] == b["usage"]
    assert a["gold_agreement"] == b["gold_agreement"] and a["files"] == b["files"]
    assert b["input"]["shard"] is None and len(b["shards"]) == 2


def test_two_shards_merged_are_the_one_process_dataset(distill, tmp_path, capsys) -> None:
    path, twin, original = write_input(tmp_path / "news.jsonl")
    one = distill(*job(path), out=tmp_path / "one")
    parts = [distill(*job(path, "--shard", f"{k}/2"), out=tmp_path / f"part{k}") for k in (1, 2)]
    assert one.code == 0 and all(p.code == 0 for p in parts), [p.err for p in parts]
    assert sum(p.manifest["counts"]["input"] for p in parts) == one.manifest["counts"]["input"] == 43
    code, err = merge(capsys, tmp_path / "merged", *(p.out_dir for p in parts))
    assert code == 0, err
    assert_same_dataset(one.out_dir, tmp_path / "merged")
    # the near duplicate was in the other shard than its original, and is rejected there, naming it
    holder = next(p for p in parts if twin in {r["id"] for r in p.jsonl("rejects.jsonl")})
    assert original not in {r["id"] for r in holder.jsonl("rejects.jsonl")} | {
        e["id"] for e in holder.jsonl("examples.jsonl")
    }
    found = next(r for r in holder.jsonl("rejects.jsonl") if r["id"] == twin)
    assert found["reason"] == "near_duplicate_text" and f"({original})" in found["detail"]
    card = (tmp_path / "merged" / "README.md").read_text()
    assert "43 input rows" in card


def test_the_merge_refuses_anything_but_one_complete_job(distill, tmp_path, capsys) -> None:
    path, _, _ = write_input(tmp_path / "news.jsonl", rows=12)
    first, second = (distill(*job(path, "--shard", f"{k}/2"), out=tmp_path / f"part{k}").out_dir for k in (1, 2))
    other = distill(*job(path, "--shard", "2/2", "--near-dup-threshold", "0.9"), out=tmp_path / "other").out_dir
    thirds = distill(*job(path, "--shard", "1/3"), out=tmp_path / "third").out_dir
    whole = distill(*job(path), out=tmp_path / "whole").out_dir
    running = tmp_path / "running"
    running.mkdir()
    cases = [
        ((first,), "incomplete set of shards: 2/2 missing (of 2)"),
        ((first, first), "shard 1/2 given twice"),
        ((first, other), "are shards of different jobs: their near_dup_threshold differ"),
        ((first, thirds), "is shard 1/3 but"),
        ((first, whole), "is not the output of a --shard K/N run"),
        ((first, running), "holds no manifest.json: not a finished data_gen output"),
    ]
    for shards, expected in cases:
        code, err = merge(capsys, tmp_path / "merged", *shards)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (shards, err)
        assert not (tmp_path / "merged").exists()  # refused before anything is written
    # a shard whose files were cut after it finished is found half-way through the merge: one line, no folder
    broken = shutil.copytree(second, tmp_path / "broken")
    train = broken / "sharegpt_train.jsonl"
    train.write_text("".join(train.read_text().splitlines(True)[:-1]))
    code, err = merge(capsys, tmp_path / "merged", first, broken)
    assert code == 2 and "has fewer records than examples.jsonl" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "merged").exists()
    code, err = merge(capsys, tmp_path / "merged", second, first)  # any order
    assert code == 0, err


def test_workers_run_the_shards_here_and_merge_them(distill, tmp_path) -> None:
    path, _, _ = write_input(tmp_path / "news.jsonl")
    one = distill(*job(path), out=tmp_path / "one")
    run = distill(*job(path, "--workers", "2"), out=tmp_path / "two")
    assert run.code == 0, run.err
    assert_same_dataset(one.out_dir, run.out_dir)
    shards = sorted(p.name for p in (run.out_dir / "shards").iterdir() if p.is_dir())
    assert shards == ["1-of-2", "2-of-2"]
    again = distill(*job(path, "--workers", "2"), out=tmp_path / "two")  # a rerun resumes each shard's folder
    assert again.code == 0, again.err
    assert_same_dataset(one.out_dir, again.out_dir)
    refused = distill(*job(path, "--workers", "2", "--shard", "1/2"))
    assert refused.code == 2 and "--workers runs the --shard processes itself" in refused.err


def test_the_documented_xargs_and_slurm_launches(tmp_path) -> None:
    """data_gen/README.md's lines: `xargs -P` over K, and scripts/distill_array.sbatch as two Slurm array tasks."""
    path, _, _ = write_input(tmp_path / "news.jsonl")
    distill = [sys.executable, "-m", "data_gen.distill", *job(path), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}

    def run(args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(args, cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    run([*distill, "--out", str(tmp_path / "one")])
    line = " ".join(distill) + f" --shard {{}}/2 --out {tmp_path}/x.{{}}"
    run(["sh", "-c", f"seq 1 2 | xargs -P 2 -I{{}} {line}"])
    run([sys.executable, "-m", "data_gen.merge", "--out", str(tmp_path / "x"), str(tmp_path / "x.1"),
         str(tmp_path / "x.2")])  # fmt: skip
    assert_same_dataset(tmp_path / "one", tmp_path / "x")
    config = tmp_path / "job.yaml"  # scripts/distill_array.sbatch as an array task runs it: sbatch --array=4-5
    config.write_text(f"input: {path}\ntask: finsight\nid_column: id\nlabel_column: label\n")
    for task in ("4", "5"):  # --shard slurm: ids 4 and 5 of an array counted from _MIN, of _COUNT tasks
        run(["sh", "scripts/distill_array.sbatch", str(config), str(tmp_path / "s")], PYTHON=sys.executable,
            SLURM_ARRAY_TASK_ID=task, SLURM_ARRAY_TASK_MIN="4", SLURM_ARRAY_TASK_COUNT="2")  # fmt: skip
    run([sys.executable, "-m", "data_gen.merge", "--out", str(tmp_path / "s"), str(tmp_path / "s.4"),
         str(tmp_path / "s.5")])  # fmt: skip
    assert_same_dataset(tmp_path / "one", tmp_path / "s")


def test_a_budget_given_to_sharded_runs_holds_for_the_whole_job(distill, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FIN_DISTILL_TEST_KEY", "sk-test-" + os.urandom(8).hex())
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  priced: {input: 100.0, output: 100.0}\n")  # a token is $0.0001
    path, _, _ = write_input(tmp_path / "news.jsonl", rows=60)
    cap = 3.0  # about 20 answers at ~$0.15 each: less than the 63 rows need

    def paid(out: Path) -> float:
        return json.loads((out / "manifest.json").read_text())["budget"]["spent_cost_usd_all_runs"]

    with FakeOpenAI(realistic_usage=True) as server:
        teacher = ["--teacher", "openai", "--base-url", server.base_url, "--model", "priced", "--api-key-env",
                   "FIN_DISTILL_TEST_KEY", "--prices", str(prices), "--max-cost", str(cap),
                   "--concurrency", "4"]  # fmt: skip
        first = distill(*job(path, *teacher, "--shard", "1/2"), out=tmp_path / "part1")
        assert first.code == 4, first.err  # stopped by its half
        assert first.manifest["budget"]["max_cost_usd_this_run"] == cap / 2 and paid(first.out_dir) <= cap / 2
        second = distill(*job(path, *teacher, "--shard", "2/2"), out=tmp_path / "part2")
        assert second.code == 4 and paid(first.out_dir) + paid(second.out_dir) <= cap
        code, err = merge(capsys, tmp_path / "merged", first.out_dir, second.out_dir)
        assert code == 2 and "was stopped by its budget" in err and "rerun it with a higher cap" in err
        workers = distill(*job(path, *teacher, "--workers", "2"), out=tmp_path / "both")
    assert workers.code == 4 and "stopped by its share of the budget" in workers.err
    assert sum(paid(d) for d in (tmp_path / "both" / "shards").iterdir() if d.is_dir()) <= cap


def test_merge_reads_row_and_split_from_the_line_head() -> None:
    """The merge takes the row and split from the start of each line as write.py writes it (ids with quotes,
    backslashes, non-ASCII or none at all), and parses any other line whole: the same answer either way."""
    import json

    from data_gen.run.merge import example_head, reject_row
    from data_gen.writers.atomic import jsonl_line

    ids = ["r1", 'a "quoted", "split": "x", "row": 9, id', "back\\slash\\", "Ünï\u2028code", ""]
    for i, rid in enumerate(ids, 1):
        example = jsonl_line({"id": rid, "split": "validation", "row": i * 1000, "text": '", "row": 5'}) + "\n"
        assert example_head(example) == (i * 1000, "validation")
        reject = jsonl_line({"id": rid, "row": i, "reason": "no_json", "detail": "d"}) + "\n"
        assert reject_row(reject) == i
    assert reject_row(jsonl_line({"id": None, "row": 7, "reason": "empty_text"})) == 7
    reordered = json.dumps({"split": "test", "id": "r2", "row": 12})  # not write.py's order: parsed whole
    assert example_head(reordered) == (12, "test") and reject_row(json.dumps({"row": 3, "id": "q"})) == 3
