"""Turning a model's reply into (thinking, answer): split the reasoning off, find the JSON, repair it cheaply.

Every function here is pure and local: no API call is ever spent on a repair that can be done in code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import json_repair

from data_gen.reasons import registered

# Tags that reasoning models and our prompts use; the task's own tag is tried first.
THINKING_TAGS = ("thinking", "think", "reasoning")


class RowRejected(Exception):
    """A reply (or row) that cannot become a training example; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = registered(reason)
        self.detail = detail


@dataclass
class Split:
    """A reply split into its reasoning and the rest."""

    thinking: str | None
    rest: str
    repairs: list[str] = field(default_factory=list)


def split_thinking(text: str, reasoning: str | None = None, tag: str = "thinking") -> Split:
    """Separate reasoning from the answer.

    Reasoning that the server returned in a separate field (``reasoning`` / ``reasoning_content``) wins; an inline
    ``<tag>...</tag>`` block is removed from the answer either way. A reply whose opening tag was swallowed by a
    chat template (only ``</tag>`` present) still splits at the closing tag.
    """
    repairs: list[str] = []
    inline: str | None = None
    rest = text
    for name in dict.fromkeys((tag, *THINKING_TAGS)):
        match = re.search(rf"<{name}>(.*?)</{name}>", text, flags=re.S | re.I)
        if match:
            inline = match.group(1)
            rest = text[: match.start()] + text[match.end() :]
            break
        close = re.search(rf"</{name}>", text, flags=re.I)
        if close:
            inline = text[: close.start()]
            rest = text[close.end() :]
            repairs.append("missing_open_tag")
            break
        opened = re.search(rf"<{name}>", text, flags=re.I)
        if opened:  # opened, never closed: everything after it is reasoning, there is no answer
            inline = text[opened.end() :]
            rest = text[: opened.start()]
            repairs.append("missing_close_tag")
            break
    thinking = reasoning.strip() if reasoning and reasoning.strip() else None
    if thinking is None and inline is not None and inline.strip():
        thinking = inline.strip()
    return Split(thinking=thinking, rest=rest.strip(), repairs=repairs)


def extract_json_object(text: str) -> tuple[dict[str, Any], list[str]]:
    """Find exactly one JSON object in ``text``; returns it with the list of repairs that were needed.

    Strict parsing first; then the complete objects embedded in surrounding text or code fences; then a local
    repair (trailing commas, single quotes, unquoted words) by ``json_repair``. Two different objects are
    ambiguous and rejected. Raises RowRejected(no_json | invalid_json).
    """
    stripped = text.strip()
    if "{" not in stripped:
        raise RowRejected("no_json", f"no JSON object in the answer: {_excerpt(stripped)}")
    try:
        value = json.loads(stripped)
        if isinstance(value, dict):
            return value, []
    except json.JSONDecodeError:
        pass
    embedded = _embedded_objects(stripped)
    if embedded:
        if any(obj != embedded[0] for obj in embedded[1:]):
            raise RowRejected("invalid_json", f"{len(embedded)} different JSON objects in the answer, expected one")
        return embedded[0], ["text_around_json"]
    try:
        value = json_repair.loads(stripped)
    except Exception as exc:  # json_repair raises plain exceptions on hopeless input
        raise RowRejected("invalid_json", f"unparseable JSON ({exc}): {_excerpt(stripped)}") from None
    if isinstance(value, list):
        objects = [v for v in value if isinstance(v, dict)]
        if len(objects) > 1:
            raise RowRejected("invalid_json", f"{len(objects)} JSON objects in the answer, expected one")
        value = objects[0] if objects else value
    if not isinstance(value, dict) or not value:
        raise RowRejected("invalid_json", f"unparseable JSON: {_excerpt(stripped)}")
    return value, ["json_repair"]


def _embedded_objects(text: str) -> list[dict[str, Any]]:
    """Every complete, valid top-level JSON object inside ``text`` (prose or code fences around them)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    outside: list[str] = []
    position = 0
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
            outside.append(text[position:start])
            position = end
        start = text.find("{", end)
    outside.append(text[position:])
    if any(ch in part for part in outside for ch in "{}"):
        return []  # a broken object around or between them: not a clean extraction, leave it to the repair step
    return found


def fix_enum_case(instance: Any, validator: Any) -> list[str]:
    """Schema-guided coercion: ``"Positive"`` -> ``"positive"`` where the schema's enum says so. In place."""
    repairs: list[str] = []
    for _ in range(50):  # each pass fixes at least one value; bounded for safety
        fixed = False
        for error in validator.iter_errors(instance):
            if error.validator != "enum" or not isinstance(error.instance, str) or not error.path:
                continue
            matches = [
                v
                for v in error.validator_value
                if isinstance(v, str) and v.casefold() == error.instance.strip().casefold()
            ]
            if len(matches) == 1:
                _set_path(instance, list(error.path), matches[0])
                repairs.append("enum_case")
                fixed = True
                break
        if not fixed:
            break
    return repairs


def schema_error(instance: Any, validator: Any) -> str | None:
    """The most relevant validation error as one readable line, or None when the instance is valid."""
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{where}: {error.message}"


def _set_path(obj: Any, path: list[Any], value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")
