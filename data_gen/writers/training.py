"""Training files the engines load without edits: ShareGPT and Alpaca JSONL per split, the matching
``dataset_info.json`` for LLaMA-Factory and a ``datasets:`` snippet for Axolotl.

Each record is validated against the JSON Schema of its format (``data_gen/writers/schemas/``) before it is written,
and every file is written through ``data_gen.writers.atomic``, so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from data_gen.schemas import SchemaValidator
from data_gen.writers.atomic import AtomicFiles, jsonl_line
from data_gen.writers.outdir import recorded_files

SCHEMAS_DIR = Path(__file__).parent / "schemas"
# ShareGPT role tags: LLaMA-Factory's defaults (human / gpt / system); Axolotl maps them with `roles:`.
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "system_tag": "system",
}


@dataclass
class Example:
    """One accepted example: the conversation to learn plus what it came from."""

    id: str
    split: str
    system: str
    user: str
    assistant: str
    meta: dict[str, Any] = field(default_factory=dict)
    kd: dict[str, Any] | None = None  # logprobs + target_token_ids (data_gen.kd.rows), with --kd-top-k

    def messages(self) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user},
            {"role": "assistant", "content": self.assistant},
        ]


def sharegpt_record(example: Example) -> dict[str, Any]:
    """System prompt as the first message: LLaMA-Factory lifts it, Axolotl's chat_template maps it."""
    return {
        "id": example.id,
        "conversations": [
            {"from": "system", "value": example.system},
            {"from": "human", "value": example.user},
            {"from": "gpt", "value": example.assistant},
        ],
    }


def alpaca_record(example: Example) -> dict[str, Any]:
    """The whole user turn is the instruction, so the prompt is identical to ShareGPT's and to eval's."""
    return {
        "id": example.id,
        "instruction": example.user,
        "input": "",
        "output": example.assistant,
        "system": example.system,
    }


def kd_record(example: Example) -> dict[str, Any]:
    """Axolotl's KD dataset type: role/content messages plus the teacher's top-k rows for the reply."""
    return {"id": example.id, "messages": example.messages(), **(example.kd or {})}


@dataclass(frozen=True)
class Format:
    """A training file format, in one place: how an example becomes a record (checked against
    ``schemas/<name>.schema.json``), how LLaMA-Factory's dataset_info.json reads the file (None: it cannot), and
    how an Axolotl ``datasets:`` entry reads it. ``selectable``: named by ``--formats`` (KD rows come with
    ``--kd-top-k``)."""

    record: Callable[[Example], dict[str, Any]]
    llamafactory: dict[str, Any] | None
    axolotl: dict[str, Any]
    selectable: bool = True


FORMATS: dict[str, Format] = {
    "sharegpt": Format(
        sharegpt_record,
        {"formatting": "sharegpt", "columns": {"messages": "conversations"}, "tags": SHAREGPT_TAGS},
        {
            "type": "chat_template",
            "field_messages": "conversations",
            "message_property_mappings": {"role": "from", "content": "value"},
            "roles": {"system": ["system"], "user": ["human"], "assistant": ["gpt"]},
            "roles_to_train": ["assistant"],
        },
    ),
    "alpaca": Format(
        alpaca_record,
        {
            "formatting": "alpaca",
            "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"},
        },
        {"type": "alpaca"},
    ),
    "kd": Format(
        kd_record,
        None,  # LLaMA-Factory has no logit distillation
        {
            "type": "axolotl.integrations.kd.chat_template",
            "field_messages": "messages",
            "logprobs_field": "logprobs",
            "temperature": 1.0,  # the log-probabilities are the teacher's at temperature 1
        },
        selectable=False,
    ),
}
TRAINING_FORMATS = [name for name, fmt in FORMATS.items() if fmt.selectable]


def dataset_info_entry(fmt: str, file_name: str) -> dict[str, Any]:
    """A LLaMA-Factory dataset_info.json entry whose columns and tags match what ``FORMATS[fmt]`` writes."""
    reader = FORMATS[fmt].llamafactory
    if reader is None:
        raise ValueError(f"LLaMA-Factory cannot read the {fmt!r} format")
    return {"file_name": file_name, **copy.deepcopy(reader)}


def axolotl_dataset(fmt: str, path: str, split: str | None = None) -> dict[str, Any]:
    """An Axolotl ``datasets:`` entry for one of our files."""
    entry: dict[str, Any] = {"path": path, "ds_type": "json"}
    if split:
        entry["split"] = split
    return {**entry, **copy.deepcopy(FORMATS[fmt].axolotl)}


@cache
def record_validator(fmt: str) -> SchemaValidator:
    return SchemaValidator(json.loads((SCHEMAS_DIR / f"{fmt}.schema.json").read_text(encoding="utf-8")))


def record_errors(fmt: str, record: dict[str, Any]) -> str | None:
    from data_gen.tasks.parsing import schema_error

    validator = record_validator(fmt)
    if fmt == "kd":  # every row's length and values were checked when it was scored (data_gen.kd.rows.check_rows);
        # the schema checks the record on its first and last rows (all of them: ~0.2 s an example in jsonschema)
        record = {**record, **{k: ends(record[k]) for k in ("logprobs", "target_token_ids") if k in record}}
    return None if validator.is_valid(record) else schema_error(record, validator)


def ends(rows: Any) -> Any:
    return rows[:1] + rows[-1:] if isinstance(rows, list) and len(rows) > 2 else rows


class TrainingWriter:
    """Streams accepted examples into ``<format>_<split>.jsonl`` files, validating every record against its
    format's schema first; then writes ``dataset_info.json`` (LLaMA-Factory) and ``axolotl_<format>.yaml``."""

    def __init__(self, files: AtomicFiles, formats: list[str]) -> None:
        self.files = files
        self.formats = formats
        self.counts: dict[str, int] = {}

    def add(self, example: Example) -> str | None:
        """Write the example in every format; returns the validation errors instead when a record is invalid."""
        records = {fmt: FORMATS[fmt].record(example) for fmt in self.formats}
        errors = [f"{fmt}: {err}" for fmt, record in records.items() if (err := record_errors(fmt, record))]
        if errors:
            return "; ".join(errors)
        for fmt, record in records.items():
            name = f"{fmt}_{example.split}.jsonl"
            self.files.open(name).write(jsonl_line(record) + "\n")
            self.counts[name] = self.counts.get(name, 0) + 1
        return None

    def copy(self, fmt: str, split: str, line: str) -> None:
        """Write a record that was validated when it was first written (``data_gen.merge``), as it is."""
        name = f"{fmt}_{split}.jsonl"
        self.files.open(name).write(line if line.endswith("\n") else line + "\n")
        self.counts[name] = self.counts.get(name, 0) + 1

    def finish(self, name: str, out_as_given: str, splits: list[str]) -> dict[str, Any]:
        """Registries for the files written (only non-empty splits get a file); returns what was written."""
        info: dict[str, Any] = {}
        for fmt in self.formats:
            axolotl: dict[str, list[dict[str, Any]]] = {}
            for split in splits:
                file_name = f"{fmt}_{split}.jsonl"
                if file_name not in self.counts:
                    continue
                if FORMATS[fmt].llamafactory is not None:
                    info[f"{name}_{fmt}_{split}"] = dataset_info_entry(fmt, file_name)
                path = os.path.join(out_as_given, file_name)
                if split == "train":
                    axolotl.setdefault("datasets", []).append(axolotl_dataset(fmt, path))
                elif split == "validation":
                    axolotl.setdefault("test_datasets", []).append(axolotl_dataset(fmt, path, split="train"))
            header = (
                f"# Axolotl dataset entries for the {fmt} files written by data_gen; paste them into an Axolotl\n"
                "# config. Paths are relative to where --out was given (run axolotl from the same directory).\n"
            )
            self.files.open(f"axolotl_{fmt}.yaml").write(header + yaml.safe_dump(axolotl, sort_keys=False))
        self.files.open("dataset_info.json").write(json.dumps(info, ensure_ascii=False, indent=2) + "\n")
        return {"files": dict(self.counts), "dataset_info": sorted(info)}


def stale_training_files(folder: Path, written: set[str], recorded: set[str]) -> list[Path]:
    """Training files and snippets that the earlier run ``recorded`` writing and this run did not write (another
    format or split): only those, never a file data_gen did not write."""
    names = [p for p in folder.glob("*_*.jsonl") if p.name.split("_", 1)[0] in FORMATS]
    names += [p for p in folder.glob("axolotl_*.yaml")]
    return [p for p in names if p.name not in written and p.name in recorded]


@contextlib.contextmanager
def output_files(out: Path) -> Iterator[AtomicFiles]:
    """The files of one data_gen output (a run's, or a merge's), renamed into place together: a killed run's
    temporary files are removed first, and afterwards the training files the earlier manifest recorded that this
    write did not produce (another format or split). On an error nothing is renamed and nothing removed."""
    for leftover in out.glob(".*.tmp"):
        leftover.unlink()
    previous = recorded_files(out)  # read before this write's manifest replaces it
    with AtomicFiles(out) as files:
        yield files
        names = files.names
    for stale in stale_training_files(out, names, previous):
        stale.unlink()
