"""A task: prompt files, a JSON Schema, a parser and a label set, defined once in ``data_gen/tasks/<name>/``.

The same Task object builds the teacher's messages, parses and validates replies, writes the training target,
and (in ``eval``) scores a student. Adding a task means adding a folder with a ``task.yaml``, prompt files
and a schema (read by ``loader.py``); no code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from string import Template
from typing import Any

from data_gen.errors import ConfigError
from data_gen.schemas import SchemaValidator
from data_gen.tasks.parsing import RowRejected, extract_json_object, fix_enum_case, schema_error, split_thinking

PROMPTS = ("student", "teacher")


@dataclass
class Parsed:
    """A reply that parsed and validated: the reasoning, the answer object and the local repairs applied."""

    thinking: str | None
    answer: dict[str, Any]
    repairs: list[str] = field(default_factory=list)
    conclusion: str | None = None


@dataclass
class Reading:
    """Every step of reading a reply, without stopping at the first failure (what ``eval`` scores).

    ``answer`` is the object found (after local repairs), valid or not; ``failure`` is the first failed check
    in ladder order (what ``Task.parse`` raises), None for a fully valid reply."""

    thinking: str | None
    answer: dict[str, Any] | None
    repairs: list[str]
    failure: RowRejected | None
    conclusion: str | None = None
    json_found: bool = False
    schema_valid: bool = False

    @property
    def parsed(self) -> bool:
        return self.answer is not None


@dataclass
class Task:
    name: str
    directory: Path
    answer_kind: str
    schema: dict[str, Any]
    system_template: str
    user_template: str
    reask_template: str
    examples: list[dict[str, Any]]
    input_column: str
    thinking: str
    keep_thinking: bool
    thinking_tag: str
    label_field: str | None
    label_aliases: dict[str, str]
    conclusion_pattern: str | None
    refusal_pattern: str | None
    temperature: float
    max_completion_tokens: int
    expected_completion_tokens: int
    description: str = ""
    metrics: dict[str, str] = field(default_factory=dict)  # answer field -> how eval scores it (tasks.kinds)
    student_template: str = ""  # the student's short system prompt (empty: the student is asked like the teacher)
    # input texts with control characters (other than tab, LF, CR): reject (the default) or keep; NUL never passes
    control_characters: str = "reject"

    # ---- definitions derived from the schema (the single source of names and values) ----
    @cached_property
    def validator(self) -> SchemaValidator:
        return SchemaValidator(self.schema)

    def enum(self, field_name: str) -> list[str]:
        """Allowed values of a top-level answer field, resolving local ``$ref``s."""
        node = self.schema.get("properties", {}).get(field_name)
        while isinstance(node, dict) and "$ref" in node and "enum" not in node:
            node = self._resolve_local(node["$ref"])
        if not isinstance(node, dict) or "enum" not in node:
            raise ConfigError(f"task {self.name}: schema field {field_name!r} has no enum")
        return list(node["enum"])

    def _resolve_local(self, ref: str) -> Any:
        """Follow a local JSON pointer such as ``#/$defs/sentiment``."""
        if not ref.startswith("#/"):
            raise ConfigError(f"task {self.name}: only local $refs are supported, got {ref!r}")
        node: Any = self.schema
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    @cached_property
    def labels(self) -> list[str]:
        """The label set that gold labels and metrics use (empty for tasks without a label field)."""
        return self.enum(self.label_field) if self.label_field else []

    @cached_property
    def field_names(self) -> list[str]:
        return list(self.schema.get("properties", {}))

    @cached_property
    def _conclusion_re(self) -> re.Pattern[str] | None:
        if not self.conclusion_pattern or not self.labels:
            return None
        alternation = "|".join(re.escape(label) for label in self.labels)
        return re.compile(Template(self.conclusion_pattern).substitute(labels=alternation), re.I)

    @cached_property
    def _refusal_re(self) -> re.Pattern[str] | None:
        return re.compile(self.refusal_pattern, re.I) if self.refusal_pattern else None

    # ---- prompts ----
    @cached_property
    def _enums(self) -> dict[str, str]:
        """``$enum_<field>`` for every field with an enum: prompts name the allowed values from the schema."""
        enums = {}
        for name in self.schema.get("properties", {}):
            try:
                enums[f"enum_{name}"] = ", ".join(self.enum(name))
            except ConfigError:
                continue
        return enums

    @cached_property
    def system_prompt(self) -> str:
        """The teacher's system prompt: instructions, the JSON Schema and the few-shot examples."""
        enums = self._enums
        rendered_examples = "\n\n".join(
            self.user_prompt(ex["text"]) + "\n" + self.render_target(ex.get("thinking"), ex["answer"], keep=True)
            for ex in self.examples
        )
        schema_text = json.dumps(self.schema_for_prompt, ensure_ascii=False, indent=1)
        return Template(self.system_template).substitute(schema=schema_text, examples=rendered_examples, **enums)

    @cached_property
    def student_system_prompt(self) -> str:
        """The student's system prompt: the output contract in a few lines, no schema dump, no examples. It is what
        training files carry (by default) and what base and fine-tuned models are asked with; without a
        ``student_prompt`` file, the teacher's."""
        if not self.student_template:
            return self.system_prompt
        return Template(self.student_template).substitute(**self._enums)

    def system_for(self, prompt: str) -> str:
        """The system prompt named ``student`` or ``teacher``."""
        if prompt not in PROMPTS:
            raise ConfigError(f"unknown prompt {prompt!r}; choose {' or '.join(PROMPTS)}")
        return self.student_system_prompt if prompt == "student" else self.system_prompt

    @cached_property
    def schema_for_prompt(self) -> dict[str, Any]:
        """The schema without bookkeeping keys (and the note for maintainers) that mean nothing to a model."""
        return {k: v for k, v in self.schema.items() if k not in ("$schema", "$id", "description")}

    def user_prompt(self, text: str) -> str:
        return Template(self.user_template).substitute(text=text)

    def messages(self, text: str, prompt: str = "teacher") -> list[dict[str, str]]:
        """Chat messages for one input: the static system prompt (the teacher's, or the ``student``'s) first, the
        text last."""
        return [
            {"role": "system", "content": self.system_for(prompt)},
            {"role": "user", "content": self.user_prompt(text)},
        ]

    def reask_messages(self, messages: list[dict[str, str]], reply: str, error: str) -> list[dict[str, str]]:
        """The original two messages, the rejected reply and the error: bounded context, never the whole history."""
        return [
            *messages[:2],
            {"role": "assistant", "content": reply},
            {"role": "user", "content": Template(self.reask_template).substitute(error=error)},
        ]

    # ---- parsing and checks ----
    def parse(self, text: str, reasoning: str | None = None) -> Parsed:
        """Reply -> Parsed, or RowRejected with a reason code."""
        reading = self.inspect(text, reasoning)
        if reading.failure is not None:
            raise reading.failure
        assert reading.answer is not None
        return Parsed(reading.thinking, reading.answer, reading.repairs, reading.conclusion)

    def inspect(self, text: str, reasoning: str | None = None) -> Reading:
        """Read a reply step by step: reasoning, JSON found, parsed, schema-valid, conclusion; the first failure
        in that order is kept in ``failure``, and the later steps still run."""
        if not text.strip() and not (reasoning or "").strip():
            return Reading(None, None, [], RowRejected("empty_response", "the reply is empty"))
        parts = split_thinking(text, reasoning, self.thinking_tag)
        repairs = list(parts.repairs)
        failures: list[RowRejected] = []
        if self.thinking == "required" and not parts.thinking:
            failures.append(
                RowRejected("no_thinking", f"no <{self.thinking_tag}>...</{self.thinking_tag}> reasoning block")
            )
        answer: dict[str, Any] | None
        json_found = True
        if self.answer_kind == "json":
            try:
                answer, json_repairs = extract_json_object(parts.rest)
                repairs += json_repairs
            except RowRejected as rejection:
                answer, json_found = None, rejection.reason != "no_json"
                failures.append(rejection)
        else:
            answer = {"answer": parts.rest.strip()}
            if self._refusal_re and self._refusal_re.search(answer["answer"]):
                failures.append(RowRejected("declined", "the teacher declined to answer"))
        valid = False
        conclusion = self.conclusion(parts.thinking)
        if answer is not None:
            error = None
            if not self.validator.is_valid(answer):  # the common case skips the slower error search
                repairs += fix_enum_case(answer, self.validator)
                error = schema_error(answer, self.validator)
            if error:
                failures.append(RowRejected("schema_invalid", error))
            valid = error is None
            answer = self._ordered(answer)
            stated = answer.get(self.label_field) if self.label_field else None
            if conclusion is not None and self.label_field and conclusion != stated:
                failures.append(
                    RowRejected(
                        "thinking_mismatch",
                        f"the thinking concludes {self.label_field} is {conclusion!r} but the JSON says {stated!r}",
                    )
                )
        return Reading(
            parts.thinking, answer, repairs, failures[0] if failures else None, conclusion, json_found, valid
        )

    def conclusion(self, thinking: str | None) -> str | None:
        """The label the reasoning concludes (its last statement of one), or None when it states none."""
        if not thinking or self._conclusion_re is None:
            return None
        found = self._conclusion_re.findall(thinking)
        if not found:
            return None
        last = found[-1].casefold()
        return next(label for label in self.labels if label.casefold() == last)

    def predicted_label(self, parsed: Parsed) -> str | None:
        return parsed.answer.get(self.label_field) if self.label_field else None

    def check_gold(self, parsed: Parsed, gold: str | None) -> None:
        """Reject an answer whose label disagrees with the gold label (used with --require-gold-agreement)."""
        predicted = self.predicted_label(parsed)
        if gold is not None and predicted is not None and predicted != gold:
            raise RowRejected("gold_disagreement", f"teacher said {predicted!r}, gold label is {gold!r}")

    def normalize_label(self, raw: Any, label_map: dict[str, str]) -> str | None:
        """Map a raw gold label to the task's label set; None when it has no counterpart."""
        if raw is None or (isinstance(raw, float) and raw != raw):
            return None
        text = str(raw).strip()
        text = label_map.get(text, text)
        folded = text.casefold()
        aliases = {k.casefold(): v for k, v in self.label_aliases.items()}
        folded = aliases.get(folded, folded).casefold()
        return next((label for label in self.labels if label.casefold() == folded), None)

    # ---- training target ----
    def target(self, parsed: Parsed) -> str:
        """The assistant turn the student learns: ``<thinking>...</thinking>`` + canonical JSON, or the answer."""
        return self.render_target(parsed.thinking, parsed.answer, keep=self.keep_thinking)

    def render_target(self, thinking: str | None, answer: dict[str, Any], keep: bool) -> str:
        body = json.dumps(self._ordered(answer), ensure_ascii=False) if self.answer_kind == "json" else answer["answer"]
        if keep and thinking:
            return f"<{self.thinking_tag}>\n{thinking}\n</{self.thinking_tag}>\n{body}"
        return body

    def _ordered(self, answer: dict[str, Any]) -> dict[str, Any]:
        """Keys in schema order, so every target has the same shape."""
        order = {name: i for i, name in enumerate(self.field_names)}
        return dict(sorted(answer.items(), key=lambda kv: order.get(kv[0], len(order))))
