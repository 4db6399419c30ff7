"""LLaMA-Factory itself, on a tiny locally built model (CPU, no downloads):

- its own data loader reads every file we write, keeps every row, and sees the prompt and answer we meant;
- `llamafactory-cli train` runs a few LoRA steps on our files through our dataset_info.json;
- `llamafactory-cli api` is a real OpenAI-compatible teacher: the random model's garbage is rejected with
  reasons, the counts add up, and the key is sent but never written.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import LF_CLI, LF_PYTHON, ROOT, SAMPLES, engine_env

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def lf_report(model: Path, dataset_dir: Path, names: list[str]) -> dict:
    result = subprocess.run(
        [str(LF_PYTHON), str(ROOT / "tests" / "engines" / "lf_check_dataset.py"), str(model), str(dataset_dir), *names],
        capture_output=True,
        text=True,
        env=engine_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("LF_REPORT "))
    assert "Invalid role tag" not in result.stderr and "Skipping this abnormal example" not in result.stderr
    return json.loads(line.removeprefix("LF_REPORT "))


def test_llamafactory_loader_keeps_every_row_we_write(tiny_model: Path, distilled: dict[str, Path]) -> None:
    for task, out in distilled.items():
        info = json.loads((out / "dataset_info.json").read_text())
        manifest = json.loads((out / "manifest.json").read_text())
        report = lf_report(tiny_model, out, sorted(info))
        assert set(report) == set(info)
        for name, result in report.items():
            written = manifest["files"][info[name]["file_name"]]
            assert result["converted_rows"] == result["valid_rows"] == result["tokenized_rows"] == written, name
            first = json.loads((out / info[name]["file_name"]).read_text().splitlines()[0])
            if name.split("_")[1] == "sharegpt":
                system, user, assistant = (turn["value"] for turn in first["conversations"])
            else:
                system, user, assistant = first["system"], first["instruction"], first["output"]
            assert result["first"]["system"] == system  # the system prompt was lifted, not lost
            assert result["first"]["prompt"] == [{"role": "user", "content": user}]
            assert result["first"]["response"] == [{"role": "assistant", "content": assistant}]
        if task == "finsight":
            response = report["finsight_sharegpt_train"]["first"]["response"][0]["content"]
            assert response.startswith("<thinking>") and json.loads(response.split("</thinking>\n", 1)[1])


def test_llamafactory_trains_on_our_files(tiny_model: Path, distilled: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    config = tmp_path / "train.yaml"
    settings = {
        "model_name_or_path": str(tiny_model),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 4,
        "lora_target": "all",
        "dataset_dir": str(distilled["finsight"]),
        "dataset": "finsight_sharegpt_train,finsight_alpaca_train",
        "eval_dataset": "finsight_sharegpt_validation",
        "template": "qwen",
        "cutoff_len": 2048,
        "max_samples": 16,
        "output_dir": str(out),
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "max_steps": 3,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_steps": 3,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "plot_loss": True,
        "overwrite_output_dir": True,
    }
    config.write_text(yaml.safe_dump(settings))
    result = subprocess.run(
        [str(LF_CLI), "train", str(config)],
        capture_output=True,
        text=True,
        timeout=900,
        env=engine_env(FORCE_TORCHRUN="0"),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (out / "adapter_model.safetensors").exists()
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == 3 and all(loss == loss and loss > 0 for loss in losses)  # finite, positive
    assert any("eval_loss" in entry for entry in state["log_history"])


def teacher_args(server, news: Path, extra: str = "") -> list[str]:
    """Flags for the `openai` teacher pointed at the LLaMA-Factory server (key in $LF_TEST_KEY)."""
    return shlex.split(
        f"--input {news} --task finsight --teacher openai --base-url {server.base_url} --model tiny "
        f"--api-key-env LF_TEST_KEY --timeout 120 --concurrency 4 {extra}"
    )


def test_real_openai_compatible_server_garbage_is_rejected_with_reasons(
    lf_server, distill, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LF_TEST_KEY", lf_server.api_key)
    news = tmp_path / "news.csv"
    rows = (SAMPLES / "news.csv").read_text().splitlines()[:9]  # header + 8 rows
    news.write_text("\n".join(rows) + "\n")
    # temperature 1 so that some replies end early (no thinking) and others run out of tokens (truncated)
    args = teacher_args(lf_server, news, "--id-column id --max-completion-tokens 300 --temperature 1.0 --max-reasks 1")
    run = distill(*args)
    assert run.code == 0, run.err
    counts = run.manifest["counts"]
    assert counts["input"] == 8 and counts["accepted"] + counts["rejected"] == 8
    assert counts["accepted"] == 0  # a random model writes noise: nothing of it may pass
    reasons = set(counts["rejected_by_reason"])
    assert reasons and reasons <= {
        "truncated",
        "no_thinking",
        "no_json",
        "invalid_json",
        "schema_invalid",
        "empty_response",
        "thinking_mismatch",
    }
    # the right reason for what the server really sent: re-derive it from each stored raw reply
    from data_gen.client.cache import ResponseCache
    from data_gen.tasks.loader import load_task
    from data_gen.tasks.parsing import RowRejected

    task, cache = load_task("finsight"), ResponseCache(run.out_dir / "cache.sqlite")
    for reject in run.jsonl("rejects.jsonl"):
        reply = cache.get(reject["request_key"])
        assert reply is not None and reject["detail"]
        if reply.finish_reason == "length":
            expected = "truncated"
        else:
            with pytest.raises(RowRejected) as caught:
                task.parse(reply.text, reply.reasoning)
            expected = caught.value.reason
        assert reject["reason"] == expected
    cache.close()
    requests = run.manifest["requests"]
    assert requests["sent"] >= 8 and run.manifest["usage"]["completion_tokens"] > 0  # real usage came back

    again = distill(*args, out=run.out_dir)  # everything stored: a rerun sends nothing to the server
    assert again.manifest["requests"]["sent"] == 0
    assert again.manifest["counts"] == counts

    files = [p.read_bytes().decode("utf-8", "replace") for p in run.out_dir.rglob("*") if p.is_file()]
    assert not any(lf_server.api_key in text for text in [*files, run.out, run.err, again.out, again.err])


def test_real_server_rejects_a_wrong_key_before_any_row(lf_server, distill, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LF_TEST_KEY", "sk-wrong")
    run = distill(*teacher_args(lf_server, SAMPLES / "news.csv"))
    assert run.code == 3 and "rejected the API key" in run.err
