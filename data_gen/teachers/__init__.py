"""Teachers behind one interface: ``await teacher.complete(ChatRequest) -> Completion``.

- ``openai``: any OpenAI-compatible endpoint (DeepSeek, OpenAI, ``vllm serve``, ``llamafactory-cli api``).
- ``rules``: an embedded deterministic baseline that needs no network, key or model (see ``rules/``).
- ``local``: a Hugging Face model run in process with ``transformers``; also scores replies for logit
  distillation (see ``local.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from data_gen import redact
from data_gen.client.api import ChatClient
from data_gen.client.limits import Governor
from data_gen.client.tokens import TokenCounter
from data_gen.client.types import ChatRequest, Completion
from data_gen.errors import ConfigError
from data_gen.tasks.task import Task


class Teacher(Protocol):
    kind: str
    model: str
    endpoint: str
    cacheable: bool
    reaskable: bool

    async def check(self) -> None: ...

    async def complete(self, request: ChatRequest, refresh: bool = False) -> Completion: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class TeacherSpec:
    """Which teacher to build and how to reach it: the teacher flags of ``data_gen.distill`` and ``eval.run``."""

    kind: str = "rules"  # rules, openai or local
    base_url: str | None = None
    model: str | None = None  # the served model's name; for ``local``, the model folder
    api_key_env: str | None = "OPENAI_API_KEY"  # the NAME of the variable that holds the key, never the key
    concurrency: int = 16
    timeout: float = 120.0
    max_retries: int = 6
    tokenizer: str | None = None  # counts tokens exactly where the server reports no usage


def make_teacher(spec: TeacherSpec, task: Task, require_key: bool = True, governor: Governor | None = None) -> Teacher:
    """Build the configured teacher; a missing key is a one-line ConfigError naming the variable
    (unless ``require_key`` is false, as in a dry run, which sends nothing)."""
    if spec.kind == "rules":
        from data_gen.teachers.rules import RulesTeacher

        return RulesTeacher(task)
    if spec.kind == "openai":
        api_key = None
        if spec.api_key_env:
            api_key = os.environ.get(spec.api_key_env)
            redact.register(api_key)  # masked in every error text and log line from now on
            if not api_key and require_key:
                raise ConfigError(
                    f"the API key variable {spec.api_key_env} is not set: export {spec.api_key_env}=... "
                    "(or pass --api-key-env NAME; an empty name sends no key, for local servers)"
                )
        return ChatClient(
            base_url=spec.base_url or "",
            model=spec.model or "",
            api_key=api_key,
            concurrency=spec.concurrency,
            timeout=spec.timeout,
            max_retries=spec.max_retries,
            governor=governor,
            counter=TokenCounter(spec.tokenizer),
        )
    if spec.kind == "local":
        from data_gen.teachers.local import LocalTeacher

        return LocalTeacher(spec.model or "")
    raise ConfigError(f"unknown teacher {spec.kind!r}; choose rules, openai or local")
