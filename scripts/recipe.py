"""Compose the config an engine runs: a recipe, plus the smoke overrides (``--smoke``), plus ``key=value`` overrides.

    python scripts/recipe.py recipes/llamafactory/qwen2.5-7b-instruct_finsight_qlora.yaml --out run.yaml [--smoke]
        [learning_rate=5e-5 ...]

Checks what would otherwise fail late, each with one line and exit status 2: the recipe exists, its engine is
known, the training data it names exists (for LLaMA-Factory: the names in ``dataset_dir/dataset_info.json``), and
for merge / serve configs the adapter has been trained. With ``--smoke`` the model becomes a tiny local twin of
the same architecture and chat template (built by ``scripts/build_tiny_model.py``), and the recipe's engine
``smoke.yaml`` changes sizes and step counts only; output paths move under ``saves/smoke/``. Prints where the
composed config, outputs and logs are. Runs in any environment with PyYAML (the engines' have it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {  # engine -> (the key naming the model, keys holding output paths)
    "llamafactory": ("model_name_or_path", ("output_dir", "adapter_name_or_path", "export_dir")),
    "axolotl": ("base_model", ("output_dir", "dataset_prepared_path", "lora_model_dir")),
}
SMOKE_DIR = Path("saves/smoke")


class RecipeError(Exception):
    """A problem to report in one line before anything heavy starts."""


def engine_of(recipe: Path, config: dict[str, Any]) -> str:
    """recipes/<engine>/... names the engine; a recipe kept elsewhere is known by its model key."""
    parts = recipe.resolve().parts
    for engine in ENGINES:
        if engine in parts:
            return engine
    for engine, (model_key, _) in ENGINES.items():
        if model_key in config:
            return engine
    raise RecipeError(f"{recipe}: not under recipes/<engine>/ and has no model_name_or_path or base_model key")


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise RecipeError(f"override {text!r} is not key=value")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value) if value else ""


def smoke_path(value: str) -> str:
    """saves/a/b -> saves/smoke/a/b (an output of a smoke run never lands where a real run writes)."""
    path = Path(value)
    if path.is_absolute() or path.parts[:2] == SMOKE_DIR.parts:
        return value
    rest = path.parts[1:] if path.parts and path.parts[0] == "saves" else path.parts
    return str(SMOKE_DIR.joinpath(*rest))


def tiny_twin(arch: str, python: str, model: str = "") -> str:
    """Build (once) the tiny local model of ``arch``; returns its folder. ``self``: the model is small enough to run
    as it is (a real 135M model on CPU): its folder, which ``make model`` makes."""
    if arch == "self":
        folder = (ROOT / model).resolve()
        if not (folder / "config.json").is_file():
            raise RecipeError(f"{model} is missing: make model (scripts/get_model.py) fetches and converts it")
        return str(folder)
    out = ROOT / ".cache" / f"tiny-{arch}"
    subprocess.run(
        [python, str(ROOT / "scripts" / "build_tiny_model.py"), "--arch", arch, "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return str(out)


def apply_smoke(config: dict[str, Any], engine: str, recipe: Path, python: str) -> dict[str, Any]:
    smoke = yaml.safe_load((ROOT / "recipes" / engine / "smoke.yaml").read_text())
    model_key, path_keys = ENGINES[engine]
    model = config.get(model_key)
    arch = smoke["twins"].get(model)
    if arch is None:
        raise RecipeError(f"{recipe}: no tiny twin for model {model!r} in recipes/{engine}/smoke.yaml")
    config = dict(config)
    config[model_key] = tiny_twin(arch, python, model)
    if "tokenizer_config" in config:  # Axolotl: the tokenizer comes with the twin
        config["tokenizer_config"] = config[model_key]
    is_training = not any(part in ("merge", "serve") for part in recipe.parts)
    if is_training:  # merge and serve configs take no training settings
        config.update(smoke["overrides"])
    for key in path_keys:
        if isinstance(config.get(key), str):
            config[key] = smoke_path(config[key])
    return config


def check_inputs(config: dict[str, Any], engine: str, recipe: Path) -> None:
    """The data (and for merge / serve, the adapter) must exist before an engine starts."""
    if engine == "llamafactory" and config.get("do_train"):
        info_path = ROOT / config.get("dataset_dir", "data") / "dataset_info.json"
        shown = info_path.relative_to(ROOT) if info_path.is_relative_to(ROOT) else info_path
        if not info_path.is_file():
            raise RecipeError(
                f"{recipe}: {shown} is missing: distil the data first "
                f"(python -m data_gen.distill --config data_gen/configs/<task>.yaml --out {config.get('dataset_dir')})"
            )
        known = yaml.safe_load(info_path.read_text())
        for field in ("dataset", "eval_dataset"):
            for name in str(config.get(field) or "").split(","):
                if name and name.strip() not in known:
                    raise RecipeError(
                        f"{recipe}: dataset {name.strip()!r} is not in {shown} (it has: {', '.join(sorted(known))})"
                    )
    if engine == "axolotl":
        for entry in [*(config.get("datasets") or []), *(config.get("test_datasets") or [])]:
            path = ROOT / str(entry.get("path", ""))
            if not path.exists():
                raise RecipeError(f"{recipe}: dataset file {entry.get('path')} is missing: distil the data first")
    adapter = config.get("adapter_name_or_path")
    if adapter and not (ROOT / adapter).exists():  # an absolute path stays itself under ROOT /
        raise RecipeError(f"{recipe}: adapter {adapter} does not exist yet: train its recipe first")


def compose(recipe: Path, smoke: bool, overrides: list[str], python: str) -> dict[str, Any]:
    if not recipe.is_file():
        raise RecipeError(f"recipe {recipe} does not exist (see recipes/README.md for the list)")
    config = yaml.safe_load(recipe.read_text()) or {}
    engine = engine_of(recipe, config)
    if smoke:
        config = apply_smoke(config, engine, recipe, python)
    config.update(dict(parse_override(o) for o in overrides))
    check_inputs(config, engine, recipe)
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("overrides", nargs="*", help="key=value settings that replace the recipe's")
    parser.add_argument("--out", type=Path, required=True, help="where to write the composed config")
    parser.add_argument("--smoke", action="store_true", help="tiny local model, a few steps, on CPU")
    parser.add_argument("--python", default=sys.executable, help="interpreter that builds the tiny model")
    args = parser.parse_intermixed_args()  # key=value pairs may follow the options
    try:
        config = compose(args.recipe, args.smoke, args.overrides, args.python)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(yaml.safe_dump(config, sort_keys=False))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
