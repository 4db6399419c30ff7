"""The LLaMA-Factory recipes, proven by LLaMA-Factory itself on CPU with tiny local models:

- every recipe passes LLaMA-Factory's own argument parser, which refuses unknown keys;
- smoke mode changes only the model, sizes, step counts and what a CPU needs, never the method, template or data;
- every training recipe trains for real in smoke mode through the launcher (4-bit QLoRA on bitsandbytes' CPU
  backend, LoRA, full fine-tuning); a trained adapter is merged; the API server answers a chat request;
- the launchers stop bad input with one line before anything heavy starts.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import (
    LF_PYTHON,
    ROOT,
    engine_env,
    free_port,
    need_engine,
    recipe_module,
    start_in_session,
    stop_process,
    wait_until_answers,
)

pytestmark = [pytest.mark.engine, pytest.mark.slow]
RECIPES = ROOT / "recipes" / "llamafactory"
TRAIN = sorted(p for p in RECIPES.glob("*.yaml") if p.name != "smoke.yaml")
MERGE = sorted((RECIPES / "merge").glob("*.yaml"))
SERVE = sorted((RECIPES / "serve").glob("*.yaml"))
DATA = {"datasets/finsight": "finsight", "datasets/finqa": "qa"}  # dataset_dir -> task of the `distilled` fixture
# what smoke mode may change; anything else (stage, finetuning_type, lora_*, quantization_*, template, cutoff_len,
# dataset, dataset_dir, learning_rate, ...) must stay as the recipe says
SMOKE_MAY_CHANGE = {
    "model_name_or_path", "output_dir",  # the tiny twin, and outputs under saves/smoke/
    "max_steps", "max_samples", "per_device_train_batch_size", "per_device_eval_batch_size",  # sizes and steps
    "gradient_accumulation_steps", "warmup_steps", "warmup_ratio", "logging_steps", "eval_strategy", "eval_steps",
    "save_strategy", "preprocessing_num_workers", "ddp_timeout",
    "use_cpu", "bf16", "flash_attn",  # what a CPU needs
}  # fmt: skip
CPU = {"bf16": False, "use_cpu": True}  # the parser checks hardware: bf16 needs a GPU


def lf_parse(kind: str, configs: list[dict], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    paths = []
    for i, config in enumerate(configs):
        paths.append(tmp_path / f"{kind}-{i}.yaml")
        paths[-1].write_text(yaml.safe_dump(config))
    return subprocess.run(
        [str(LF_PYTHON), str(ROOT / "tests" / "engines" / "lf_parse_recipe.py"), kind, *map(str, paths)],
        capture_output=True,
        text=True,
        env=engine_env(),
        timeout=300,
    )


def test_every_recipe_passes_llamafactorys_own_parser(tmp_path: Path) -> None:
    need_engine()
    train = [{**yaml.safe_load(p.read_text()), **CPU} for p in TRAIN]
    result = lf_parse("train", train, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("LF_PARSED") == len(TRAIN) == 5
    result = lf_parse("api", [yaml.safe_load(p.read_text()) for p in MERGE + SERVE], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("LF_PARSED") == len(MERGE) + len(SERVE) == 4
    misspelled = {**train[0], "lora_rnak": 16}  # the parser is strict: this is what a typo in a recipe does
    result = lf_parse("train", [misspelled], tmp_path)
    assert result.returncode != 0 and "Some keys are not used by the HfArgumentParser: ['lora_rnak']" in result.stderr


@pytest.mark.parametrize("recipe", TRAIN, ids=lambda p: p.stem)
def test_smoke_mode_changes_only_the_model_sizes_and_steps(recipe: Path, distilled: dict[str, Path]) -> None:
    need_engine()
    smoke = yaml.safe_load((RECIPES / "smoke.yaml").read_text())
    assert set(smoke["overrides"]) <= SMOKE_MAY_CHANGE
    original = yaml.safe_load(recipe.read_text())
    data = f"dataset_dir={distilled[DATA[original['dataset_dir']]]}"  # a clean clone has no datasets/finsight yet
    composed = recipe_module().compose(recipe, True, [data], str(LF_PYTHON))
    composed["dataset_dir"] = original["dataset_dir"]
    changed = {k for k in original.keys() | composed.keys() if original.get(k) != composed.get(k)}
    assert changed <= SMOKE_MAY_CHANGE, changed - SMOKE_MAY_CHANGE
    assert "model_name_or_path" in changed and composed["output_dir"].startswith("saves/smoke/")
    assert Path(composed["model_name_or_path"], "config.json").exists()  # the tiny twin was built


def launch(script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    result = subprocess.run(
        ["sh", str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        env=env or engine_env(),
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def trained(distilled: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every training recipe run for real in smoke mode; recipe stem -> output_dir."""
    outputs = {}
    for recipe in TRAIN:
        data = distilled[DATA[yaml.safe_load(recipe.read_text())["dataset_dir"]]]
        out = tmp_path_factory.mktemp(recipe.stem)
        # the test harness points the recipe at its own copy of the data and outputs (user overrides, not smoke)
        launch("train.sh", "llamafactory", str(recipe.relative_to(ROOT)), "--smoke", f"dataset_dir={data}",
               f"output_dir={out}")  # fmt: skip
        outputs[recipe.stem] = out
    return outputs


@pytest.mark.parametrize("recipe", TRAIN, ids=lambda p: p.stem)
def test_every_training_recipe_trains_in_smoke_mode(trained: dict[str, Path], recipe: Path) -> None:
    out = trained[recipe.stem]
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == 2 and all(0 < loss < 100 for loss in losses)  # two steps, finite losses
    assert any("eval_loss" in entry for entry in state["log_history"])  # evaluated on the validation split
    assert (out / "training_loss.png").exists()  # plot_loss
    method = yaml.safe_load(recipe.read_text())["finetuning_type"]
    weights = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    assert (out / weights).exists()
    log = (ROOT / "saves" / "runs" / f"llamafactory-{recipe.stem}-smoke" / "train.log").read_text()
    if yaml.safe_load(recipe.read_text()).get("quantization_bit") == 4:
        assert "Quantizing model to 4 bit with bitsandbytes" in log  # the real QLoRA path, on CPU


def test_a_trained_adapter_merges_and_is_served(trained: dict[str, Path], tmp_path: Path) -> None:
    recipe = "qwen2.5-7b-instruct_finsight_qlora"
    adapter, merged = trained[recipe], tmp_path / "merged"
    launch("merge.sh", f"recipes/llamafactory/merge/{recipe}.yaml", "--smoke", f"adapter_name_or_path={adapter}",
           f"export_dir={merged}")  # fmt: skip
    assert (merged / "model.safetensors").exists() and (merged / "config.json").exists()

    port = free_port()
    env = engine_env(PORT=str(port), HOST="127.0.0.1")
    log = tmp_path / "serve.log"
    argv = ["sh", str(ROOT / "scripts" / "serve.sh"), f"recipes/llamafactory/serve/{recipe}.yaml", "--smoke",
            f"adapter_name_or_path={adapter}"]  # fmt: skip
    proc = start_in_session(argv, log, env)
    try:
        answer = ask_when_ready(f"http://127.0.0.1:{port}/v1", recipe, proc, log)
    finally:
        stop_process(proc)
    assert answer.text  # a random tiny model writes noise, but it answers through the real API
    assert answer.usage.completion_tokens > 0


def ask_when_ready(base_url: str, model: str, proc: subprocess.Popen[bytes], log: Path):
    """One chat request through the project's own client once the server is up (bounded in time)."""
    import asyncio

    from data_gen.client.api import ChatClient
    from data_gen.client.types import ChatRequest

    wait_until_answers(base_url + "/models", proc, log, "serve.sh")

    async def ask():
        client = ChatClient(base_url, model, api_key=None, timeout=120, max_retries=1)
        try:
            request = ChatRequest(model, [{"role": "user", "content": "Is a rate cut good for banks?"}],
                                  {"max_tokens": 16, "temperature": 0})  # fmt: skip
            return await client.complete(request)
        finally:
            await client.close()

    return asyncio.run(ask())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train.sh", "llamafactory", "recipes/llamafactory/nope.yaml"], "nope.yaml does not exist"),
        (["train.sh", "megatron", "recipes/llamafactory/gpt2_qa_full.yaml"], "unknown engine 'megatron'"),
        (["train.sh", "llamafactory", "recipes/llamafactory/gpt2_qa_full.yaml", "dataset_dir=/nowhere"],
         "/nowhere/dataset_info.json is missing: distil the data first"),
        (["train.sh", "llamafactory", "recipes/llamafactory/gpt2_qa_full.yaml", "dataset=qa_sharegpt_trian",
          f"dataset_dir={ROOT / 'tests'}"], None),
        (["merge.sh", "recipes/llamafactory/merge/tinyllama-1.1b-chat_qa_qlora.yaml",
          "adapter_name_or_path=/no/adapter"], "adapter /no/adapter does not exist yet: train its recipe first"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_before_anything_starts(argv: list[str], message: str | None, tmp_path: Path) -> None:
    need_engine()
    if message is None:  # a dataset name that is not registered: the error lists what is
        info = tmp_path / "dataset_info.json"
        info.write_text(json.dumps({"qa_sharegpt_train": {"file_name": "x.jsonl"}}))
        argv = [a if not a.startswith("dataset_dir=") else f"dataset_dir={tmp_path}" for a in argv]
        message = "dataset 'qa_sharegpt_trian' is not in"
    start = time.monotonic()
    result = subprocess.run(["sh", str(ROOT / "scripts" / argv[0]), *argv[1:]], capture_output=True, text=True,
                            env=engine_env(), cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and time.monotonic() - start < 30


def test_a_missing_environment_or_engine_is_named() -> None:
    if (ROOT / ".venvs" / "vllm" / "bin" / "vllm").exists():
        pytest.skip("the vllm environment exists here")
    check = subprocess.run(["sh", "-c", ". scripts/lib.sh; need_env vllm"], capture_output=True, text=True, cwd=ROOT,
                           timeout=60)  # fmt: skip
    assert check.returncode == 2
    assert check.stderr.strip() == "error: the vllm environment is missing: run sh scripts/setup_env.sh vllm"
    setup = subprocess.run(["sh", "scripts/setup_env.sh", "megatron"], capture_output=True, text=True, cwd=ROOT,
                           timeout=60)  # fmt: skip
    assert setup.returncode == 2 and "unknown environment 'megatron'" in setup.stderr


def test_sweep_runs_the_grid_and_tabulates_the_losses(distilled: dict[str, Path], tmp_path: Path) -> None:
    need_engine()
    sweep = tmp_path / "sweep"
    out = launch("sweep.sh", "recipes/llamafactory/tinyllama-1.1b-chat_qa_qlora.yaml", "--smoke",
                 f"dataset_dir={distilled['qa']}", env=engine_env(SWEEP_DIR=str(sweep)))  # fmt: skip
    import csv

    rows = list(csv.DictReader((sweep / "results.csv").open()))
    assert {(r["learning_rate"], r["lora_rank"]) for r in rows} == {("1e-4", "8"), ("1e-4", "16"), ("2e-4", "8"),
                                                                    ("2e-4", "16")}  # fmt: skip
    assert all(0 < float(r["train_loss"]) < 100 and 0 < float(r["eval_loss"]) < 100 for r in rows)
    evals = [float(r["eval_loss"]) for r in rows]
    assert evals == sorted(evals) and "| learning rate | LoRA rank |" in out  # best first, printed
    for r in rows:  # each run really used its own settings
        adapter = json.loads((Path(r["output_dir"]) / "adapter_config.json").read_text())
        assert adapter["r"] == int(r["lora_rank"]) and adapter["lora_alpha"] == 2 * int(r["lora_rank"])


def test_a_recipe_kept_outside_the_repository_is_composed_for_its_engine(tmp_path: Path) -> None:
    own = tmp_path / "my_recipe.yaml"
    own.write_text((RECIPES / "gpt2_qa_full.yaml").read_text())
    out = tmp_path / "composed.yaml"
    result = subprocess.run([str(LF_PYTHON if LF_PYTHON.exists() else "python3"), str(ROOT / "scripts" / "recipe.py"),
                             str(own), "--out", str(out), f"dataset_dir={ROOT / 'tests'}"], capture_output=True,
                            text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "tests/dataset_info.json is missing" in result.stderr  # it got to the data check
    (tmp_path / "not_a_recipe.yaml").write_text("foo: 1\n")
    result = subprocess.run([str(LF_PYTHON if LF_PYTHON.exists() else "python3"), str(ROOT / "scripts" / "recipe.py"),
                             str(tmp_path / "not_a_recipe.yaml"), "--out", str(out)], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "has no model_name_or_path or base_model key" in result.stderr
