"""data_gen.schemas: jsonschema-rs answers ``is_valid`` for jsonschema; the two must agree on every schema of the
repository, on valid instances and on every small way of breaking them."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from data_gen.schemas import SchemaValidator
from data_gen.tasks.loader import load_task
from data_gen.writers.training import FORMATS, SCHEMAS_DIR, Example

BREAKS: list[Any] = [None, 0, 1.5, -3, True, "", "Positive", "x" * 5000, [], [None], {}, {"extra": 1}]


def variants(instance: Any) -> Iterator[Any]:
    """``instance`` with one change anywhere in it: a key removed or added, a value replaced by each of BREAKS, a
    list emptied or with an item repeated."""
    yield instance
    for path, value in walk(instance):
        for replacement in BREAKS:
            yield replaced(instance, path, replacement)
        if isinstance(value, dict):
            for key in value:
                broken = copy.deepcopy(instance)
                del at(broken, path)[key]
                yield broken
            yield replaced(instance, path, {**value, "unexpected": "field"})
        if isinstance(value, list) and value:
            yield replaced(instance, path, [])
            yield replaced(instance, path, [*value, value[0]])


def walk(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from walk(child, (*path, key))


def at(instance: Any, path: tuple) -> Any:
    for key in path:
        instance = instance[key]
    return instance


def replaced(instance: Any, path: tuple, value: Any) -> Any:
    if not path:
        return copy.deepcopy(value)
    broken = copy.deepcopy(instance)
    at(broken, path[:-1])[path[-1]] = copy.deepcopy(value)
    return broken


def task_cases() -> Iterator[tuple[str, dict[str, Any], Any]]:
    finsight, qa = load_task("finsight"), load_task("qa")
    for example in finsight.examples:
        yield "finsight", finsight.schema, example["answer"]
    yield "qa", qa.schema, {"answer": "Net interest margin is interest income less interest expense, over assets."}


def record_cases() -> Iterator[tuple[str, dict[str, Any], Any]]:
    rows = {"logprobs": [[-0.1, -2.5], [-0.01, -4.0]], "target_token_ids": [[5, 9], [7, 2]]}
    reply = '<think>Down.</think>\n{"a": 1}'
    example = Example("r1", "train", "You are an analyst.", "Text: shares fell 7%.", reply, {"row": 1}, rows)
    for fmt, spec in FORMATS.items():
        schema = json.loads((Path(SCHEMAS_DIR) / f"{fmt}.schema.json").read_text(encoding="utf-8"))
        yield fmt, schema, spec.record(example)


@pytest.mark.parametrize(("name", "schema", "valid"), [pytest.param(*case, id=f"{case[0]}-{n}") for n, case in
                                                       enumerate([*task_cases(), *record_cases()])])  # fmt: skip
def test_the_compiled_validator_agrees_with_jsonschema(name: str, schema: dict[str, Any], valid: Any) -> None:
    fast, reference = SchemaValidator(schema), Draft202012Validator(schema)
    assert reference.is_valid(valid) and fast.is_valid(valid), name
    checked = invalid = 0
    for instance in variants(valid):
        assert fast.is_valid(instance) == reference.is_valid(instance), (name, instance)
        checked, invalid = checked + 1, invalid + (not reference.is_valid(instance))
    assert checked > 20 and invalid > 10, (name, checked, invalid)  # the breaks reached the schema's rules
