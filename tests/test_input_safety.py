"""No input row crashes a run: lone surrogates, broken bytes in a UTF-8 file, UTF-16 and UTF-32 files, NUL and other
control characters, empty files, a billed reply that cannot be stored as text. Through the real CLIs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data_gen.tasks.loader import TASKS_DIR
from eval.run import main as eval_main
from tests.fake_server import FakeOpenAI, Reply, finsight_reply

GOOD = ["Acme Corp's net sales rose 12% to EUR 40 mn.", "Beta Oyj warned that profit will fall."]


def jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rejects(run) -> dict[int, str]:
    return {r["row"]: r["reason"] for r in run.jsonl("rejects.jsonl")}


@pytest.mark.parametrize("dedup", ["--dedup", "--no-dedup"])
def test_a_lone_surrogate_is_a_rejected_row_not_a_traceback(distill, tmp_path: Path, dedup: str) -> None:
    lines = [json.dumps({"text": GOOD[0]}), '{"text": "Bad \\ud800 text."}', '{"text": "Fine", "id": "x\\udfff"}',
             json.dumps({"text": GOOD[1]})]  # fmt: skip
    path = jsonl(tmp_path / "in.jsonl", lines)
    run = distill("--input", str(path), "--id-column", "id", dedup)
    assert run.code == 0, run.err
    assert rejects(run) == {2: "undecodable_text", 3: "undecodable_text"}
    details = [r["detail"] for r in run.jsonl("rejects.jsonl")]
    assert "U+D800" in details[0] and "'text' field" in details[0] and "'id' field" in details[1]
    assert run.manifest["counts"]["accepted"] == 2


def test_eval_rejects_a_lone_surrogate_row_too(distill, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "test.jsonl", [json.dumps({"text": GOOD[0], "label": "positive"}),
                                           '{"text": "Bad \\ud800", "label": "negative"}'])  # fmt: skip
    out = tmp_path / "report"
    code = eval_main(["--data", str(path), "--label-column", "label", "--teacher", "rules", "--out", str(out),
                      "--no-progress", "--bootstrap", "50"])  # fmt: skip
    assert code == 0
    data = json.loads((out / "results.json").read_text())["data"]
    assert data["evaluated"] == 1 and data["rejected_reasons"] == {"undecodable_text": 1}


def test_a_billed_reply_with_a_lone_surrogate_is_stored_and_never_paid_for_again(distill, tmp_path: Path) -> None:
    reply = json.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": finsight_reply()[:-2] + '\\ud83d"}'}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10}})  # fmt: skip
    reply = reply.replace("\\\\ud83d", "\\ud83d")  # an escaped half of a surrogate pair, as a broken server sends it
    path = jsonl(tmp_path / "in.jsonl", [json.dumps({"text": GOOD[0]})])
    out = tmp_path / "out"
    with FakeOpenAI(lambda body, count: Reply(raw=reply.encode())) as server:
        common = ["--input", str(path), "--teacher", "openai", "--base-url", server.base_url, "--model", "m",
                  "--api-key-env", ""]  # fmt: skip
        first = distill(*common, out=out)
        again = distill(*common, out=out)
        assert len(server.requests) == 1  # stored (escaped) when it was paid for, so the rerun asks nothing
    assert first.code == 0 and again.code == 0
    assert rejects(first) == rejects(again) == {1: "undecodable_reply"}


def test_a_utf8_file_with_one_broken_line_stays_utf8(distill, tmp_path: Path) -> None:
    path = tmp_path / "news.txt"
    path.write_bytes("Café Oy opened a new store.\n".encode() + b"Broken caf\xe9 line.\n" + "Déjà vu at Ålandsbanken.\n"
                     .encode())  # fmt: skip
    run = distill("--input", str(path))
    assert run.code == 0
    texts = [e["text"] for e in run.jsonl("examples.jsonl")]
    assert texts == ["Café Oy opened a new store.", "Déjà vu at Ålandsbanken."]  # not "CafÃ©"
    assert rejects(run) == {2: "undecodable_text"} and "byte 0xe9" in run.jsonl("rejects.jsonl")[0]["detail"]
    assert run.manifest["input"]["encoding"] == "utf-8" and "1 line(s) are not valid UTF-8" in str(
        run.manifest["input"]["notes"])  # fmt: skip


def test_a_latin1_file_still_reads_as_latin1(distill, tmp_path: Path) -> None:
    path = tmp_path / "fpb.txt"
    lines = ["Café Oyj's operating profit rose to EUR 5 mn.@positive", "Nokia cut 500 jobs in Espoo.@negative",
             "The AGM will be held in Jyväskylä.@neutral"]  # fmt: skip
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    run = distill("--input", str(path))
    assert run.code == 0 and run.manifest["counts"]["accepted"] == 3
    assert run.manifest["input"]["encoding"] == "latin-1"
    assert run.jsonl("examples.jsonl")[2]["text"] == "The AGM will be held in Jyväskylä."


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
@pytest.mark.parametrize("suffix", ["csv", "jsonl", "txt"])
def test_files_with_a_byte_order_mark_are_decoded(distill, tmp_path: Path, encoding: str, suffix: str) -> None:
    rows = {"csv": "text\n" + "\n".join(f'"{t}"' for t in GOOD) + "\n",
            "jsonl": "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in GOOD),
            "txt": "".join(t + "\n" for t in GOOD)}  # fmt: skip
    path = tmp_path / f"in.{suffix}"
    data = rows[suffix].encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # Python writes big-endian UTF-16 without a mark; files in the wild have one
    path.write_bytes(data)
    run = distill("--input", str(path))
    assert run.code == 0, run.err
    assert [e["text"] for e in run.jsonl("examples.jsonl")] == GOOD
    assert "\x00" not in run.err and "\x00" not in (run.out_dir / "manifest.json").read_text()


@pytest.mark.parametrize(("name", "content"), [("empty.jsonl", ""), ("empty.txt", "\n\n"), ("header.csv", "text\n"),
                                               ("header.tsv", "text\tlabel\n")])  # fmt: skip
def test_an_input_without_rows_is_one_line_and_exit_2(distill, tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    run = distill("--input", str(path))
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1
    assert str(path) in run.err and "no rows" in run.err
    assert not run.out_dir.exists()


def test_nul_and_control_characters_are_rejected_unless_the_task_keeps_them(distill, tmp_path: Path) -> None:
    texts = [GOOD[0], "Has a NUL\x00 byte.", "Has a bell\x07 in it.", "Tab\tand\r\nnewlines are fine.",
             "C1 control \x85 from bad decoding."]  # fmt: skip
    path = jsonl(tmp_path / "in.jsonl", [json.dumps({"text": t}) for t in texts])
    run = distill("--input", str(path))
    assert run.code == 0
    assert rejects(run) == {2: "control_characters", 3: "control_characters", 5: "control_characters"}
    assert "U+0000" in run.jsonl("rejects.jsonl")[0]["detail"] and "never allowed" in run.jsonl("rejects.jsonl")[0][
        "detail"]  # fmt: skip
    for name in ("sharegpt_train.jsonl", "sharegpt_validation.jsonl", "sharegpt_test.jsonl"):
        if (run.out_dir / name).exists():
            assert "\\u0000" not in (run.out_dir / name).read_text()

    task = tmp_path / "logs_task"  # a task that keeps control characters (never NUL)
    shutil.copytree(TASKS_DIR / "finsight", task)
    (task / "task.yaml").write_text((task / "task.yaml").read_text() + "\ncontrol_characters: keep\n")
    kept = distill("--input", str(path), "--task", str(task), out=tmp_path / "kept")
    assert kept.code == 0 and rejects(kept) == {2: "control_characters"}
