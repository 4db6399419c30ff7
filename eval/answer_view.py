"""One model's reply as HTML for the chat page: the verdict of the task's parser and schema, the answer's fields
(class fields as labels, entity lists as a table, text as a paragraph), the thinking in a collapsible block, and
the latency. Everything the model wrote is escaped: a reply is data, never markup."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any

from data_gen.reasons import REASONS
from data_gen.tasks.kinds import KINDS
from data_gen.tasks.task import Reading, Task

CSS = """
.answer { font-size: 15px; line-height: 1.45; }
.answer .verdict { font-weight: 600; padding: 6px 10px; border-radius: 6px; margin-bottom: 8px; }
.answer .verdict.ok { background: #e7f6ec; color: #146c2e; }
.answer .verdict.fail { background: #fdecea; color: #a3231a; }
.answer .verdict.wait, .answer .verdict.error { background: #f3f4f6; color: #374151; }
.answer .verdict.error { background: #fff4e5; color: #8a4b00; }
.answer .field { margin: 6px 0; }
.answer .field-name { color: #6b7280; margin-right: 6px; }
.answer .label { display: inline-block; padding: 2px 10px; border-radius: 999px; font-weight: 600;
  background: #e5e7eb; color: #111827; }
.answer .label.positive, .answer .label.Low { background: #d1fae5; color: #065f46; }
.answer .label.negative, .answer .label.High { background: #fee2e2; color: #991b1b; }
.answer .label.Medium { background: #fef3c7; color: #92400e; }
.answer table.entities { border-collapse: collapse; margin-top: 4px; }
.answer table.entities th, .answer table.entities td { border: 1px solid #e5e7eb; padding: 3px 8px; text-align: left; }
.answer details { margin-top: 8px; }
.answer pre { white-space: pre-wrap; word-break: break-word; background: #f9fafb; padding: 8px; border-radius: 6px; }
.answer .meta { color: #6b7280; font-size: 13px; margin-top: 8px; }
"""


@dataclass
class Shown:
    """What a panel shows for one model: its reply (text, reasoning, why it stopped) or an error, and the time."""

    text: str = ""
    reasoning: str | None = None
    finish_reason: str | None = None
    seconds: float | None = None
    completion_tokens: int | None = None
    error: str | None = None


def waiting(label: str) -> str:
    """The panel while its model is asked."""
    return f'<div class="answer"><div class="verdict wait">{escape(label)} is answering…</div></div>'


def message(text: str) -> str:
    """A panel that shows a notice instead of an answer (bad input, a server that is down)."""
    return f'<div class="answer"><div class="verdict error">{escape(text)}</div></div>'


def render(task: Task, shown: Shown) -> str:
    """The panel for one reply: verdict, fields, thinking, raw reply when it failed, latency."""
    if shown.error is not None:
        return message(shown.error)
    reading = task.inspect(shown.text, shown.reasoning)
    parts = ['<div class="answer">', _verdict(reading, shown)]
    if reading.answer is not None:
        parts += [_field(task, name, reading.answer[name]) for name in task.field_names if name in reading.answer]
    if reading.thinking:
        parts.append(f"<details open><summary>Thinking</summary><pre>{escape(reading.thinking)}</pre></details>")
    if reading.failure is not None:
        parts.append(f"<details><summary>Raw reply</summary><pre>{escape(shown.text)}</pre></details>")
    parts += [_meta(shown), "</div>"]
    return "".join(parts)


def _verdict(reading: Reading, shown: Shown) -> str:
    failure = reading.failure
    if failure is None:
        return '<div class="verdict ok">✓ parses and fits the schema</div>'
    meaning = REASONS[failure.reason].meaning if failure.reason in REASONS else ""
    cut = " (cut at max_tokens)" if shown.finish_reason == "length" else ""
    detail = f": {failure.detail}" if failure.detail else ""
    return (
        f'<div class="verdict fail" data-reason="{escape(failure.reason)}">✗ {escape(failure.reason)}{cut}'
        f"{escape(detail)}<br><small>{escape(meaning)}</small></div>"
    )


def _field(task: Task, name: str, value: Any) -> str:
    kind = KINDS.get(task.metrics.get(name, ""))
    head = f'<div class="field" data-field="{escape(name)}"><span class="field-name">{escape(name)}</span>'
    if kind is not None and kind.classes and isinstance(value, str):
        return f'{head}<span class="label {escape(value)}">{escape(value)}</span></div>'
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return head + _table(value) + "</div>"
    if isinstance(value, str):
        return f"{head}<span>{escape(value)}</span></div>"
    return f"{head}<code>{escape(json.dumps(value, ensure_ascii=False))}</code></div>"


def _table(items: list[dict[str, Any]]) -> str:
    if not items:
        return "<span>(none)</span>"
    columns = list(dict.fromkeys(key for item in items for key in item))
    header = "".join(f"<th>{escape(c)}</th>" for c in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(item.get(c)))}</td>" for c in columns) + "</tr>" for item in items
    )
    return f'<table class="entities"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>'


def _cell(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _meta(shown: Shown) -> str:
    facts = []
    if shown.seconds is not None:
        facts.append(f"{shown.seconds:.2f} s")
    if shown.completion_tokens:
        facts.append(f"{shown.completion_tokens} tokens")
    if shown.finish_reason:
        facts.append(f"stopped: {shown.finish_reason}")
    return f'<div class="meta">{escape(" · ".join(facts))}</div>'
