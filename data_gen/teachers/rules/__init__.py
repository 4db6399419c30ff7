"""The offline ``rules`` teacher: a deterministic, rule-based baseline. No network, no key, no model download.

For ``finsight``-shaped tasks it reads a finance cue lexicon (``finance_lexicon.yaml``, ``lexicon.py``,
``finsight.py``): metric + direction
cues ("operating profit rose to X from Y", "cut costs"), polarity cues with negation and clause weighting,
severity cues for risk, and cashtags / tickers / company names for entities. Its ``<thinking>`` block states
which cues fired and why they matter. For free-text tasks (``qa``) it answers from a glossary
(``qa_glossary.yaml``, ``glossary.py``) and declines questions the glossary does not cover.

It is a baseline that lets the whole pipeline run anywhere; a real teacher is an LLM behind ``--teacher openai``.
Its measured accuracy is in the README and docs/benchmarks.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from data_gen.client.types import ChatRequest, Completion, Usage
from data_gen.tasks.task import Task
from data_gen.teachers.rules.finsight import FinsightRules
from data_gen.teachers.rules.glossary import GlossaryQA

__all__ = ["FinsightRules", "GlossaryQA", "RulesTeacher"]


class RulesTeacher:
    """The offline teacher: same interface as ChatClient, answers computed locally from the input text."""

    kind = "rules"
    endpoint = "rules://local"
    cacheable = False  # free and instant: storing its replies would only cost time
    reaskable = False  # deterministic: the same question gets the same answer

    def __init__(self, task: Task) -> None:
        self.task = task
        if task.answer_kind == "text":
            self.engine: Any = GlossaryQA(task)
        else:
            self.engine = FinsightRules(task)
        rules = sorted(Path(__file__).parent.glob("*.py")) + sorted(Path(__file__).parent.glob("*.yaml"))
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in rules))
        self.model = f"rules-{digest.hexdigest()[:8]}"  # changes whenever the rules change

    async def check(self) -> None:
        return None

    async def complete(self, request: ChatRequest, refresh: bool = False) -> Completion:
        text = request.text if request.text is not None else request.messages[-1]["content"]
        return Completion(text=self.engine.reply(text), finish_reason="stop", usage=Usage(), model=self.model)

    async def close(self) -> None:
        return None
