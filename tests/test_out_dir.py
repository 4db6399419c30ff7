"""`--out` never destroys what it did not write: someone else's folder, the project root, another job's output, a
file, a read-only folder; and a refused run leaves nothing behind. Both CLIs, for real."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from eval.run import main as eval_main
from tests.conftest import ROOT, SAMPLES, free_port
from tests.fake_server import FakeOpenAI

NEWS = ["--input", str(SAMPLES / "news.csv"), "--limit", "5"]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def run_eval(*argv: str) -> int:
    return eval_main([*argv, "--no-progress", "--bootstrap", "50"])


@pytest.fixture
def users_folder(tmp_path: Path) -> Path:
    """A folder of the user's own: training files under data_gen's names, a README, notes."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "sharegpt_train.jsonl").write_text('{"conversations": "hand-written"}\n')
    (folder / "alpaca_test.jsonl").write_text('{"instruction": "mine"}\n')
    (folder / "README.md").write_text("# my project\n")
    (folder / "notes.txt").write_text("keep me\n")
    return folder


def test_a_folder_that_is_not_a_data_gen_output_is_refused_untouched(distill, users_folder: Path) -> None:
    before = snapshot(users_folder)
    run = distill(*NEWS, "--out", str(users_folder))
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1
    assert "is not empty and is not a data_gen output" in run.err and "sharegpt_train.jsonl" in run.err
    overwrite = distill(*NEWS, "--out", str(users_folder), "--overwrite")  # not even with --overwrite
    assert overwrite.code == 2
    assert snapshot(users_folder) == before


def test_the_project_root_is_refused(distill) -> None:
    before = (ROOT / "README.md").read_bytes()
    run = distill(*NEWS, "--out", ".")
    assert run.code == 2 and "--out . is not empty" in run.err
    assert (ROOT / "README.md").read_bytes() == before and not (ROOT / "manifest.json").exists()


def test_another_job_is_refused_unless_overwrite_and_the_same_job_resumes(distill, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert distill(*NEWS, "--out", str(out)).code == 0
    (out / "my-notes.txt").write_text("mine\n")
    same = distill(*NEWS, "--out", str(out), "--formats", "alpaca")  # the same task and input: it resumes
    assert same.code == 0 and not (out / "sharegpt_train.jsonl").exists()  # its own stale file, removed
    qa = ["--input", str(SAMPLES / "questions.jsonl"), "--task", "qa", "--text-column", "question", "--out", str(out)]
    refused = distill(*qa)
    assert refused.code == 2 and "holds a data_gen output of task 'finsight'" in refused.err
    assert "--overwrite" in refused.err
    other_input = tmp_path / "other.csv"
    shutil.copy(SAMPLES / "news.csv", other_input)
    assert distill("--input", str(other_input), "--limit", "5", "--out", str(out)).code == 2
    replaced = distill(*qa, "--overwrite")
    assert replaced.code == 0 and replaced.manifest["task"] == "qa"
    assert (out / "my-notes.txt").read_text() == "mine\n"  # never a file data_gen did not write
    assert distill(*qa).code == 0  # now it is the qa job's folder


def test_an_output_of_an_earlier_version_without_a_marker_is_still_recognised(distill, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert distill(*NEWS, "--out", str(out)).code == 0
    (out / ".fin-distill.json").unlink()  # as written before the marker existed
    assert distill(*NEWS, "--out", str(out)).code == 0
    assert distill("--input", str(SAMPLES / "questions.jsonl"), "--task", "qa", "--text-column", "question",
                   "--out", str(out)).code == 2  # fmt: skip


def test_an_out_that_is_a_file_is_one_line_in_both_clis(distill, tmp_path: Path, capsys) -> None:
    target = tmp_path / "a-file"
    target.write_text("do not touch\n")
    run = distill(*NEWS, "--out", str(target))
    assert run.code == 2 and "is a file, not a folder" in run.err and len(run.err.strip().splitlines()) == 1
    assert run_eval("--data", str(SAMPLES / "news.csv"), "--label-column", "label", "--teacher", "rules",
                    "--out", str(target)) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "Traceback" not in err
    assert target.read_text() == "do not touch\n"


@pytest.fixture
def readonly(tmp_path: Path) -> Iterator[Path]:
    """A folder that cannot be written, whoever runs the tests: permission bits for a normal user; for root, who
    writes anywhere, the immutable attribute (chattr +i) or, failing that, a read-only mount."""
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "data_gen_output").mkdir()
    undo: list[list[str]] = []
    if os.geteuid() != 0:
        for path in (folder / "data_gen_output", folder):
            path.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(folder / "data_gen_output"), str(folder)], capture_output=True
                        ).returncode == 0:  # fmt: skip
        undo = [["chattr", "-i", str(folder), str(folder / "data_gen_output")]]
    elif subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
                        ).returncode == 0:  # fmt: skip
        undo = [["umount", str(folder)]]
    else:
        pytest.skip("this machine can make no folder read-only for root (no chattr +i, no mount)")
    try:
        yield folder
    finally:
        for command in undo:
            subprocess.run(command, check=True)
        for path in (folder / "data_gen_output", folder):
            if path.exists():
                path.chmod(0o755)


@pytest.mark.parametrize("where", ["data_gen_output", "new/out", "."])
def test_a_read_only_out_is_one_line_in_both_clis(distill, readonly: Path, where: str, capsys) -> None:
    out = readonly / where
    run = distill(*NEWS, "--out", str(out))
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1, run.err
    assert "not writable" in run.err or "cannot be created" in run.err
    assert run_eval("--data", str(SAMPLES / "news.csv"), "--label-column", "label", "--teacher", "rules",
                    "--out", str(out)) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"--out {out}" in err and len(err.strip().splitlines()) == 1


def test_a_refused_run_leaves_no_folder_and_no_store_behind(distill, tmp_path: Path) -> None:
    unreachable = ["--teacher", "openai", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--model", "m",
                   "--api-key-env", "", "--timeout", "2"]  # fmt: skip
    out = tmp_path / "new"
    run = distill(*NEWS, *unreachable, "--out", str(out))
    assert run.code == 3 and not out.exists()
    labelled = tmp_path / "labels.csv"
    labelled.write_text("text,label\nAcme rose.,up\n")
    bad_labels = distill("--input", str(labelled), "--label-column", "label", "--out", str(out))
    assert bad_labels.code == 2 and "unknown gold label" in bad_labels.err and not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert distill(*NEWS, *unreachable, "--out", str(existing)).code == 3
    assert list(existing.iterdir()) == []  # no empty cache.sqlite, no log, no marker
    with FakeOpenAI(models=("served-model",)) as server:  # eval: a model the endpoint does not list
        assert run_eval("--data", str(SAMPLES / "news.csv"), "--label-column", "label", "--endpoint",
                        server.base_url, "--model", "other", "--out", str(out)) == 2  # fmt: skip
        assert server.requests == [] and not out.exists()


def test_eval_out_follows_the_same_rules(tmp_path: Path, users_folder: Path, capsys) -> None:
    before = snapshot(users_folder)
    base = ["--label-column", "label", "--teacher", "rules", "--limit", "5"]
    assert run_eval("--data", str(SAMPLES / "news.csv"), *base, "--out", str(users_folder)) == 2
    assert "is not empty and is not an eval.run output" in capsys.readouterr().err
    assert snapshot(users_folder) == before
    out = tmp_path / "report"
    assert run_eval("--data", str(SAMPLES / "news.csv"), *base, "--out", str(out)) == 0
    assert run_eval("--data", str(SAMPLES / "news.csv"), *base, "--out", str(out)) == 0  # the same job resumes
    other = tmp_path / "other.csv"
    shutil.copy(SAMPLES / "news.csv", other)
    assert run_eval("--data", str(other), *base, "--out", str(out)) == 2
    assert "holds an eval.run output" in capsys.readouterr().err
    assert run_eval("--data", str(other), *base, "--out", str(out), "--overwrite") == 0
    assert json.loads((out / "results.json").read_text())["data"]["path"] == str(other)
