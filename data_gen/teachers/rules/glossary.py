"""Free-text answers (``qa``) from a glossary (``qa_glossary.yaml``); questions it does not cover are declined."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from data_gen.tasks.task import Task
from data_gen.teachers.rules.lexicon import phrase_regex

GLOSSARY_PATH = Path(__file__).parent / "qa_glossary.yaml"


class GlossaryQA:
    """Answers a question from the glossary entry whose term (or alias) it mentions; declines otherwise."""

    def __init__(self, task: Task, path: Path = GLOSSARY_PATH) -> None:
        self.task = task
        self.entries = yaml.safe_load(path.read_text(encoding="utf-8"))
        self.entry_of: dict[str, dict[str, Any]] = {}
        for entry in self.entries:
            for name in [entry["term"], *entry.get("aliases", [])]:
                self.entry_of.setdefault(name.lower(), entry)
        self.pattern = phrase_regex(list(self.entry_of))

    def reply(self, question: str) -> str:
        low = question.lower()
        matched: list[tuple[str, dict[str, Any]]] = []
        for m in self.pattern.finditer(low):
            entry = self.entry_of[m.group(0)]
            if all(entry is not e for _, e in matched):
                matched.append((m.group(0), entry))
        tag = self.task.thinking_tag
        if not matched:
            thinking = "No term from the glossary appears in the question, so I cannot answer it reliably."
            return f"<{tag}>\n{thinking}\n</{tag}>\nI don't know."
        comparing = len(matched) > 1 and re.search(r"\b(difference|differ|compare|comparison|versus|vs)\b", low)
        if comparing:
            chosen = matched[:2]
            answer = "\n\n".join(f"{e['term'][0].upper() + e['term'][1:]}: {e['answer'].strip()}" for _, e in chosen)
        else:
            chosen = [max(matched, key=lambda me: len(me[0]))]  # the most specific term
            answer = chosen[0][1]["answer"].strip()
        found = ", ".join(f"'{e['term']}' (matched '{w}')" for w, e in chosen)
        thinking = f"The question is about {found}. " + (
            "It asks for a comparison, so I explain both terms."
            if comparing
            else "I answer with the glossary's explanation of that term."
        )
        return f"<{tag}>\n{thinking}\n</{tag}>\n{answer}"
