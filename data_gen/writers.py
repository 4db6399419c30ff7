"""Training files the engines load without edits: ShareGPT and Alpaca JSONL per split, the matching
``dataset_info.json`` for LLaMA-Factory and a ``datasets:`` snippet for Axolotl.

Each record is validated against the JSON Schema of its format (``data_gen/schemas/``) before it is written,
and every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SCHEMAS_DIR = Path(__file__).parent / "schemas"
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})
_UMASK = os.umask(0)
os.umask(_UMASK)
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


FORMATS = {"sharegpt": sharegpt_record, "alpaca": alpaca_record}


def dataset_info_entry(fmt: str, file_name: str) -> dict[str, Any]:
    """A LLaMA-Factory dataset_info.json entry whose columns and tags match what ``FORMATS[fmt]`` writes."""
    if fmt == "sharegpt":
        return {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations"},
            "tags": dict(SHAREGPT_TAGS),
        }
    if fmt == "alpaca":
        return {
            "file_name": file_name,
            "formatting": "alpaca",
            "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"},
        }
    raise ValueError(f"unknown format {fmt!r}")


def axolotl_dataset(fmt: str, path: str, split: str | None = None) -> dict[str, Any]:
    """An Axolotl ``datasets:`` entry for one of our files (``type: chat_template`` for ShareGPT)."""
    entry: dict[str, Any] = {"path": path, "ds_type": "json"}
    if split:
        entry["split"] = split
    if fmt == "sharegpt":
        entry.update(
            {
                "type": "chat_template",
                "field_messages": "conversations",
                "message_property_mappings": {"role": "from", "content": "value"},
                "roles": {"system": ["system"], "user": ["human"], "assistant": ["gpt"]},
                "roles_to_train": ["assistant"],
            }
        )
    else:
        entry["type"] = "alpaca"
    return entry


@cache
def record_validator(fmt: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS_DIR / f"{fmt}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def record_errors(fmt: str, record: dict[str, Any]) -> str | None:
    from data_gen.parsing import schema_error

    validator = record_validator(fmt)
    return None if validator.is_valid(record) else schema_error(record, validator)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonl_line(row: dict[str, Any]) -> str:
    """One JSON line; characters that some readers take for line breaks (U+2028, U+2029, U+0085) are escaped."""
    return json.dumps(row, ensure_ascii=False).translate(_LINE_BREAKS)


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    lines = [jsonl_line(row) for row in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def write_training_files(
    out: Path, out_as_given: str, name: str, examples: list[Example], formats: list[str], splits: list[str]
) -> dict[str, Any]:
    """Write ``<format>_<split>.jsonl`` for every non-empty split, ``dataset_info.json`` (LLaMA-Factory) and
    ``axolotl_<format>.yaml`` (Axolotl ``datasets:`` / ``test_datasets:``). Returns what was written."""
    by_split = {s: [e for e in examples if e.split == s] for s in splits}
    files: dict[str, int] = {}
    info: dict[str, Any] = {}
    for fmt in formats:
        make = FORMATS[fmt]
        axolotl: dict[str, list[dict[str, Any]]] = {}
        for split, rows in by_split.items():
            if not rows:
                continue
            file_name = f"{fmt}_{split}.jsonl"
            files[file_name] = atomic_write_jsonl(out / file_name, (make(e) for e in rows))
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
        atomic_write_text(out / f"axolotl_{fmt}.yaml", header + yaml.safe_dump(axolotl, sort_keys=False))
    atomic_write_json(out / "dataset_info.json", info)
    return {"files": files, "dataset_info": sorted(info)}
