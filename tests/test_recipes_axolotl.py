"""The Axolotl recipes (recipes/axolotl/*.yaml), checked with the real Axolotl 0.19 on tiny local twins (CPU, offline):

- every key of every recipe and of the smoke overrides is one Axolotl knows (recursing into dataset entries) and
  none is deprecated; each recipe, exactly as written, passes Axolotl's own validator for a bf16 GPU (sm_90);
- that key check does fail, naming the key, on a misspelled or deprecated key;
- smoke mode (recipes/axolotl/smoke.yaml) changes only allowed keys: never the method, chat template or data;
- `axolotl preprocess` of each smoke config keeps every row of our files (none dropped for length) and puts the loss
  on exactly the assistant turn (plus its end-of-turn token);
- `axolotl train` runs two real 4-bit QLoRA steps per recipe: finite losses and a saved adapter with the recipe's LoRA.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ENGINE_ENV, LF_PYTHON, ROOT, SAMPLES, need_engine, recipe_module, stop_process

pytestmark = [pytest.mark.engine, pytest.mark.slow]

AX_BIN = ROOT / ".venvs" / "axolotl" / "bin"
AX_CLI = AX_BIN / "axolotl"
AX_PYTHON = AX_BIN / "python"
RECIPE_DIR = ROOT / "recipes" / "axolotl"
SMOKE = RECIPE_DIR / "smoke.yaml"
RECIPES = sorted(path for path in RECIPE_DIR.glob("*.yaml") if path != SMOKE)
SFT_RECIPES = [path for path in RECIPES if "_kd" not in path.stem]  # the KD recipe is run by tests/test_kd.py
# What smoke mode may change: the model, sizes and step counts, and what a CPU strictly needs.
ALLOWED_SMOKE_KEYS = frozenset(
    {
        # the model
        "base_model",
        "base_model_config",
        "tokenizer_config",
        "tokenizer_type",
        # outputs, moved under saves/smoke/
        "output_dir",
        "dataset_prepared_path",
        # sizes and step counts
        "max_steps",
        "num_epochs",
        "micro_batch_size",
        "eval_batch_size",
        "gradient_accumulation_steps",
        "sequence_len",
        "logging_steps",
        "eval_steps",
        "evals_per_epoch",
        "save_steps",
        "saves_per_epoch",
        "val_set_size",
        "warmup_steps",
        "warmup_ratio",
        # CPU necessities
        "bf16",
        "fp16",
        "tf32",
        "attn_implementation",
        "flash_attention",
        "lora_mlp_kernel",
        "lora_qkv_kernel",
        "lora_o_kernel",
    }
)
# What smoke mode must never change: the method, the chat template, the data.
FROZEN_KEYS = (
    "adapter",
    "load_in_4bit",
    "load_in_8bit",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_linear",
    "lora_target_modules",
    "peft_layers_to_transform",
    "chat_template",
    "datasets",
    "test_datasets",
    "train_on_inputs",
)
AX_ENV = {
    **ENGINE_ENV,
    "AXOLOTL_DO_NOT_TRACK": "1",  # otherwise a telemetry upload retries forever after training on a closed network
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # `axolotl train` execs `accelerate` from PATH: the environment's bin must come first, as when it is activated
    "PATH": f"{AX_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "PYTHONPATH": str(RECIPE_DIR / "plugins"),  # our plugins, as the launchers set it (scripts/lib.sh)
}
SEVEN_PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def smoke_config(path: Path) -> dict[str, Any]:
    """The effective smoke config of a recipe, composed by the launchers' own scripts/recipe.py (it builds the tiny
    twin into .cache/)."""
    python = LF_PYTHON if LF_PYTHON.exists() else AX_PYTHON
    return recipe_module().apply_smoke(load_yaml(path), "axolotl", path, str(python))


def run_logged(command: list[str], log: Path, timeout: float) -> tuple[int, str]:
    """Run an engine command in its own session with a hard timeout; return its exit code and its output."""
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            env={**os.environ, **AX_ENV},
            start_new_session=True,
        )
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = -1
    finally:
        stop_process(proc)
    output = log.read_text(errors="replace")
    assert code != -1, f"{' '.join(command[:2])} ran past {timeout} s:\n{output[-3000:]}"
    return code, output


def run_helper(script: str, tag: str, *args: str) -> Any:
    """Run a script of tests/engines/ with the Axolotl environment's Python; return the JSON it prints after `tag`."""
    result = subprocess.run(
        [str(AX_PYTHON), str(ROOT / "tests" / "engines" / script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **AX_ENV},
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith(tag + " "))
    return json.loads(line.removeprefix(tag + " "))


# --- key check against Axolotl's schema ------------------------------------------------------------------------------


@dataclass
class AxolotlSchema:
    top: dict[str, Any]  # key -> {"type": ..., "default": ...} from `axolotl config-schema`
    nested: dict[str, dict[str, Any]]  # class path -> JSON schema of the pydantic model the type names
    deprecated: dict[str, str]  # key -> Axolotl's deprecation message
    validation: dict[str, str]  # recipe path -> "ok" or Axolotl's validation error
    plugin_keys: dict[str, list[str]]  # recipe path -> the keys its plugins add


MODEL_NAME = re.compile(r"axolotl(?:\.\w+)+\.[A-Z]\w*")


def nested_models(config: Mapping[str, Any], type_string: str) -> list[str]:
    """Pydantic models a key's value is made of. Dataset entries are SFTDataset unless `rl` is set (as Axolotl's
    validate_config() coerces them)."""
    models = MODEL_NAME.findall(type_string)
    sft = [model for model in models if model.endswith(".SFTDataset")]
    return sft if sft and not config.get("rl") else models


def check_node(value: Any, node: Mapping[str, Any], defs: Mapping[str, Any], where: str) -> list[str]:
    """Unknown keys in `value` against a JSON schema node, recursively."""
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node or "oneOf" in node:
        options = [option for option in node.get("anyOf", node.get("oneOf")) if option.get("type") != "null"]
        tries = [check_node(value, option, defs, where) for option in options] or [[]]
        return min(tries, key=len)
    if isinstance(value, dict):
        if "properties" in node:
            problems = []
            for key, item in value.items():
                if key in node["properties"]:
                    problems += check_node(item, node["properties"][key], defs, f"{where}.{key}")
                else:
                    problems.append(f"{where}.{key}: not a key of this entry")
            return problems
        extra = node.get("additionalProperties")  # a free-form mapping such as `roles`: any key, checked values
        if isinstance(extra, dict):
            return [p for key, item in value.items() for p in check_node(item, extra, defs, f"{where}.{key}")]
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [p for i, item in enumerate(value) for p in check_node(item, node["items"], defs, f"{where}[{i}]")]
    return []


def key_problems(config: Mapping[str, Any], schema: AxolotlSchema, plugin_keys: list[str] = ()) -> list[str]:
    """Every key Axolotl would silently ignore (or has deprecated), named with its path."""
    problems = []
    for key, value in config.items():
        if key in plugin_keys:
            continue
        if key not in schema.top:
            problems.append(f"{key}: not an Axolotl config key")
            continue
        if key in schema.deprecated:
            problems.append(f"{key}: deprecated ({schema.deprecated[key]})")
        models = [m for m in nested_models(config, str(schema.top[key].get("type", ""))) if m in schema.nested]
        if not models or not isinstance(value, list | dict):
            continue
        if broken := [f"{m}: {schema.nested[m]['error']}" for m in models if "error" in schema.nested[m]]:
            problems.append(f"{key}: cannot check ({broken})")
            continue
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            where = f"{key}[{i}]" if isinstance(value, list) else key
            tries = [check_node(item, schema.nested[m], schema.nested[m].get("$defs", {}), where) for m in models]
            problems += min(tries, key=len)
    return problems


@pytest.fixture(scope="session")
def axolotl_schema(tmp_path_factory: pytest.TempPathFactory) -> AxolotlSchema:
    """`axolotl config-schema`, once per session, with the nested dataset models it names."""
    need_engine("axolotl")
    log = tmp_path_factory.mktemp("axolotl_schema") / "config-schema.log"
    code, output = run_logged([str(AX_CLI), "config-schema"], log, timeout=180)
    assert code == 0, output[-3000:]
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line == "{")  # a banner and log lines come first
    top = json.loads("\n".join(lines[start:]))["properties"]
    assert len(top) > 300 and {"base_model", "datasets", "adapter", "lora_r"} <= set(top)
    models = sorted({m for prop in top.values() for m in MODEL_NAME.findall(str(prop.get("type", "")))})
    answer = run_helper(
        "ax_schema.py", "AX_HELPER", json.dumps({"models": models, "validate": [str(path) for path in RECIPES]})
    )
    return AxolotlSchema(top, answer["nested"], answer["deprecated"], answer["validation"], answer["plugin_keys"])


@pytest.mark.parametrize("path", [*RECIPES, SMOKE], ids=lambda path: path.stem)
def test_every_key_is_an_axolotl_key(path: Path, axolotl_schema: AxolotlSchema) -> None:
    config = load_yaml(path)
    if path == SMOKE:
        assert set(config) == {"twins", "overrides"}
        config = config["overrides"]
    assert key_problems(config, axolotl_schema, axolotl_schema.plugin_keys.get(str(path), [])) == []
    if path != SMOKE:
        assert axolotl_schema.validation[str(path)] == "ok"


def test_key_check_names_a_misspelled_key(axolotl_schema: AxolotlSchema) -> None:
    bad = load_yaml(SFT_RECIPES[0])
    bad["lora_rank"] = bad.pop("lora_r")  # Axolotl itself would accept this and train with its default rank
    bad["datasets"][0]["field_message"] = bad["datasets"][0].pop("field_messages")
    bad["test_datasets"][0]["message_property_mappings"] = {"role": "from", "content": "value"}  # free-form: fine
    bad["flash_attention"] = True
    problems = key_problems(bad, axolotl_schema)
    assert [problem.split(":", 1)[0] for problem in problems] == [
        "datasets[0].field_message",
        "lora_rank",
        "flash_attention",
    ], problems
    assert "attn_implementation" in problems[2]


# --- smoke overrides --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_smoke_changes_only_allowed_keys(path: Path) -> None:
    recipe, smoke = load_yaml(path), load_yaml(SMOKE)
    assert not ALLOWED_SMOKE_KEYS & set(FROZEN_KEYS)
    assert set(smoke["overrides"]) <= ALLOWED_SMOKE_KEYS, set(smoke["overrides"]) - ALLOWED_SMOKE_KEYS
    assert smoke["twins"][recipe["base_model"]] in {"qwen2", "llama", "self"}
    effective = smoke_config(path)
    changed = {key for key in recipe.keys() | effective.keys() if recipe.get(key, ...) != effective.get(key, ...)}
    assert "base_model" in changed and changed <= ALLOWED_SMOKE_KEYS, changed - ALLOWED_SMOKE_KEYS
    assert {key: effective.get(key) for key in FROZEN_KEYS} == {key: recipe.get(key) for key in FROZEN_KEYS}
    header = path.read_text().split("\n\n", 1)[0]
    assert "sh scripts/train_axolotl.sh" in header and "SMOKE=1" in header


# --- preprocess and train on the tiny twins ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Training files written by the real distiller from the shipped samples, one folder per data_gen config."""
    need_engine("axolotl")
    from data_gen.distill import main

    folders = {}
    for config, sample in (("finsight", "news.csv"), ("qa", "questions.jsonl")):
        cfg = load_yaml(ROOT / "data_gen" / "configs" / f"{config}.yaml")
        out = tmp_path_factory.mktemp(config)
        argv = ["--config", str(ROOT / "data_gen" / "configs" / f"{config}.yaml"), "--input", str(SAMPLES / sample)]
        assert main([*argv, "--out", str(out), "--no-progress"]) == 0
        folders[cfg["out"].rstrip("/") + "/"] = out  # e.g. "datasets/finsight/" -> the temporary folder
    return folders


@dataclass
class SmokeRun:
    recipe: dict[str, Any]
    config: dict[str, Any]
    path: Path  # the merged config Axolotl reads
    work: Path

    def split_file(self, key: str) -> Path:
        return Path(self.config[key][0]["path"])


@pytest.fixture(scope="module")
def smoke_runs(distilled: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, SmokeRun]:
    """The effective smoke config of each recipe, written to a temporary folder. Test-only rewrites: data paths
    point at the freshly distilled files, and outputs stay in the temporary folder."""
    runs = {}
    for path in SFT_RECIPES:
        recipe = load_yaml(path)
        config = smoke_config(path)
        for key in ("datasets", "test_datasets"):
            for entry in config.get(key) or []:
                prefix = next(prefix for prefix in distilled if entry["path"].startswith(prefix))
                entry["path"] = str(distilled[prefix] / entry["path"].removeprefix(prefix))
        work = tmp_path_factory.mktemp(path.stem)
        config["output_dir"] = str(work / "out")
        config["dataset_prepared_path"] = str(work / "prepared")
        (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        runs[path.stem] = SmokeRun(recipe, config, work / "config.yaml", work)
    return runs


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.mark.parametrize("name", [path.stem for path in SFT_RECIPES])
def test_preprocess_keeps_every_row_and_trains_on_answers(name: str, smoke_runs: dict[str, SmokeRun]) -> None:
    run = smoke_runs[name]
    code, output = run_logged([str(AX_CLI), "preprocess", str(run.path)], run.work / "preprocess.log", timeout=300)
    assert code == 0 and "Success! Preprocessed data path" in output, output[-3000:]
    assert "Dropped" not in output, [line for line in output.splitlines() if "Dropped" in line]
    twin = load_yaml(SMOKE)["twins"][run.recipe["base_model"]]
    eos = {"qwen2": "<|im_end|>", "self": "<|im_end|>", "llama": "</s>"}[twin]  # self: SmolLM2's ChatML
    expected = {}  # rows written per split -> the assistant turn of each, as the loss should see it
    for key in ("datasets", "test_datasets"):
        rows = jsonl(run.split_file(key))
        expected[len(rows)] = sorted(turn["value"] + eos for row in rows for turn in row["conversations"][-1:])
        assert all(row["conversations"][-1]["from"] == "gpt" for row in rows)
    prepared_dir, model = run.config["dataset_prepared_path"], run.config["base_model"]
    prepared = run_helper("ax_prepared.py", "AX_PREPARED", prepared_dir, model)
    assert sorted(folder["rows"] for folder in prepared) == sorted(expected), (prepared, list(expected))
    for folder in prepared:  # the loss covers the assistant turn and its end token, nothing of system or user
        assert sorted(folder["trained"]) == expected[folder["rows"]], folder["folder"]


LOSS = re.compile(r"'(?:train_)?loss': '?([-+\w.]+)'?")


@pytest.mark.parametrize("name", [path.stem for path in SFT_RECIPES])
def test_train_runs_lora_steps_on_cpu(name: str, smoke_runs: dict[str, SmokeRun]) -> None:
    run = smoke_runs[name]
    code, output = run_logged([str(AX_CLI), "train", str(run.path)], run.work / "train.log", timeout=420)
    assert code == 0, output[-4000:]
    if run.recipe["adapter"] == "qlora":
        assert "prepare_model_for_kbit_training" in output  # the 4-bit (QLoRA) path, not plain LoRA
    losses = [float(value) for value in LOSS.findall(output)]
    assert len(losses) >= run.config["max_steps"] + 1, losses  # one per step, then the run's mean
    assert all(math.isfinite(loss) for loss in losses), losses
    out = Path(run.config["output_dir"])
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    recipe = run.recipe
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (
        recipe["lora_r"],
        recipe["lora_alpha"],
        recipe["lora_dropout"],
    )
    targets = set(recipe["lora_target_modules"]) if recipe.get("lora_target_modules") else SEVEN_PROJECTIONS
    assert set(adapter["target_modules"]) == targets
    assert adapter["layers_to_transform"] == recipe.get("peft_layers_to_transform")  # None: every layer


# --- the launcher -----------------------------------------------------------------------------------------------------


def test_the_launchers_train_and_merge_an_axolotl_recipe(distilled: dict[str, Path], tmp_path: Path) -> None:
    """`sh scripts/train_axolotl.sh RECIPE --smoke` as a user runs it (data and outputs pointed at the test's copies
    with key=value overrides, the launcher's own mechanism)."""
    path = RECIPE_DIR / "tinyllama-1.1b-chat_qa_qlora.yaml"
    recipe = load_yaml(path)
    overrides = [f"output_dir={tmp_path / 'out'}", f"dataset_prepared_path={tmp_path / 'prepared'}"]
    for key in ("datasets", "test_datasets"):
        entries = copy.deepcopy(recipe[key])
        for entry in entries:
            prefix = next(prefix for prefix in distilled if entry["path"].startswith(prefix))
            entry["path"] = str(distilled[prefix] / entry["path"].removeprefix(prefix))
        overrides.append(f"{key}={yaml.safe_dump(entries, default_flow_style=True, width=10**6).strip()}")
    env = {**os.environ, **AX_ENV}
    result = subprocess.run(["sh", str(ROOT / "scripts" / "train_axolotl.sh"), str(path.relative_to(ROOT)), "--smoke",
                             *overrides], capture_output=True, text=True, env=env, cwd=ROOT, timeout=420)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
    assert f"done: model or adapter in {tmp_path / 'out'}" in result.stdout
    merge = subprocess.run(["sh", str(ROOT / "scripts" / "merge.sh"), str(path.relative_to(ROOT)), "--smoke",
                            *overrides], capture_output=True, text=True, env=env, cwd=ROOT, timeout=420)  # fmt: skip
    assert merge.returncode == 0, merge.stdout[-3000:] + merge.stderr[-3000:]
    merged = tmp_path / "out" / "merged"
    assert (merged / "model.safetensors").exists() and f"done: merged model in {merged}" in merge.stdout


def test_the_launcher_names_a_missing_recipe() -> None:
    need_engine("axolotl")
    result = subprocess.run(["sh", str(ROOT / "scripts" / "train_axolotl.sh"), "recipes/axolotl/nope.yaml"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: recipe recipes/axolotl/nope.yaml does not exist (see recipes/README.md for the list)"
    )
