"""Configuration: YAML file, flags that override it, and one-line errors."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_gen.errors import ConfigError
from data_gen.options import build_parser, load_config
from data_gen.run.config import DistillConfig, validate
from eval.config import EvalConfig

from .conftest import ROOT


def config_from(*argv: str) -> DistillConfig:
    return load_config(build_parser(DistillConfig, "test").parse_args(list(argv)), DistillConfig, validate)


def test_flags_override_the_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "input: a.csv\nout: o\nconcurrency: 4\nformats: [alpaca]\nlabel_map: {'0': negative}\n"
        "require_gold_agreement: true\nsplits: {train: 0.5, test: 0.5}\n"
    )
    config = config_from("--config", str(path), "--concurrency", "8", "--no-require-gold-agreement")
    assert config.input == "a.csv" and config.concurrency == 8 and config.formats == ["alpaca"]
    assert config.label_map == {"0": "negative"} and config.require_gold_agreement is False
    assert config.splits == {"train": 0.5, "test": 0.5}
    flags = config_from(
        "--input",
        "b.csv",
        "--out",
        "o",
        "--label-map",
        "0=negative,1=positive",
        "--splits",
        "train=0.9,test=0.1",
        "--formats",
        "sharegpt",
    )
    assert flags.label_map == {"0": "negative", "1": "positive"} and flags.splits == {"train": 0.9, "test": 0.1}


def test_the_config_hash_ignores_cosmetic_settings() -> None:
    a = config_from("--input", "a.csv", "--out", "o")
    b = config_from("--input", "a.csv", "--out", "o", "--no-progress")
    c = config_from("--input", "a.csv", "--out", "o", "--temperature", "0.5")
    assert a.hash() == b.hash() != c.hash()


@pytest.mark.parametrize(
    ("yaml_text", "argv", "message"),
    [
        ("input: a.csv\nout: o\nconcurency: 3\n", [], "unknown key(s) concurency"),
        ("input: a.csv\nout: o\nconcurrency: many\n", [], "config key 'concurrency'"),
        ("input: a.csv\nout: o\ndedup: maybe\n", [], "expected true or false"),
        ("- a\n- b\n", [], "expected a mapping"),
        ("out: o\n", [], "no input"),
        ("input: a.csv\n", [], "no output directory"),
        ("input: a.csv\nout: o\nteacher: openai\nbase_url: http://x\n", [], "needs --model"),
        ("input: a.csv\nout: o\nsplits: {train: 0.5, test: 0.6}\n", [], "sum to 1"),
        ("input: a.csv\nout: o\n", ["--concurrency", "0"], "at least 1"),
        ("input: a.csv\nout: o\n", ["--kd-top-k", "8", "--kd-teacher", "nowhere"], "neither a model folder"),
        ("input: a.csv\nout: o\n", ["--kd-top-k", "8", "--kd-teacher", "http://h:8000/v1"], "--student-tokenizer"),
        (
            "input: a.csv\nout: o\nteacher: openai\nbase_url: http://h/v1\nmodel: m\n",
            ["--kd-top-k", "8"],
            "served teacher http://h/v1 needs --student-tokenizer",
        ),
    ],
)
def test_bad_configuration_is_one_clear_line(tmp_path: Path, yaml_text: str, argv: list[str], message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as caught:
        config_from("--config", str(path), *argv)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match=r"config file not found: nope\.yaml"):
        config_from("--config", "nope.yaml")


def test_distillation_and_evaluation_read_one_description_of_tfns() -> None:
    """data_gen/configs/tfns.yaml and eval/configs/tfns.yaml both extend sources/tfns.yaml: the same label map."""
    from eval.config import EvalConfig
    from eval.config import validate as validate_eval

    distill = config_from("--config", str(ROOT / "data_gen/configs/tfns.yaml"), "--input", "sent_train.csv")
    parser = build_parser(EvalConfig, "test")
    argv = ["--config", str(ROOT / "eval/configs/tfns.yaml"), "--data", "v.csv", "--endpoint", "http://127.0.0.1:1/v1"]
    evaluate = load_config(parser.parse_args([*argv, "--model", "m"]), EvalConfig, validate_eval)
    assert distill.label_map == evaluate.label_map == {"0": "negative", "1": "positive", "2": "neutral"}
    assert distill.text_column == evaluate.text_column == "text" and distill.out == "datasets/tfns"


def test_a_file_overrides_what_it_extends_and_a_loop_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("concurrency: 2\nout: base-out\n")
    (tmp_path / "c.yaml").write_text("extends: base.yaml\ninput: a.csv\nout: mine\n")
    config = config_from("--config", str(tmp_path / "c.yaml"))
    assert (config.concurrency, config.out, config.input) == (2, "mine", "a.csv")
    (tmp_path / "base.yaml").write_text("extends: c.yaml\nconcurency: 2\n")
    with pytest.raises(ConfigError, match=r"unknown key.*concurency"):
        config_from("--config", str(tmp_path / "c.yaml"))
    (tmp_path / "base.yaml").write_text("extends: c.yaml\n")
    with pytest.raises(ConfigError, match="goes round in a circle") as caught:
        config_from("--config", str(tmp_path / "c.yaml"))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("module", "sections"),
    [
        ("data_gen.distill", ["input", "task and teacher", "limits and budget", "filters", "logit distillation (KD)",
                              "output", "run"]),
        ("eval.run", ["input", "models", "teacher reference", "generation", "engines", "output"]),
    ],
)  # fmt: skip
def test_help_is_grouped_by_section_with_one_line_per_option(module: str, sections: list[str]) -> None:
    env = {**os.environ, "COLUMNS": "120"}
    text = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    headers = [line[:-1] for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headers[1:] == sections  # after argparse's own "options:"
    config = DistillConfig if module == "data_gen.distill" else EvalConfig
    lines = text.split("\n\n" + sections[0] + ":\n", 1)[1].split("\n\n", len(sections))
    options = [line for block in lines[: len(sections)] for line in block.splitlines() if line.startswith("  ")]
    flags = [line.split()[0].replace("--[no-]", "--") for line in options]
    assert all(line.startswith("  --") for line in options), "an option's help runs onto a second line"
    assert sorted(flags) == sorted("--" + f.name.replace("_", "-") for f in dataclasses.fields(config))
    assert "(default: OPENAI_API_KEY)" in text and "--[no-]dry-run" in text and "(default: off)" in text
