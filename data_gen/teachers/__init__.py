"""Teachers behind one interface: ``await teacher.complete(ChatRequest) -> Completion``.

- ``openai``: any OpenAI-compatible endpoint (DeepSeek, OpenAI, ``vllm serve``, ``llamafactory-cli api``).
- ``rules``: an embedded deterministic baseline that needs no network, key or model (see ``rules.py``).
- ``local``: a Hugging Face model run in process with ``transformers``; also scores replies for logit
  distillation (see ``local.py``).
"""

from __future__ import annotations

import os
from typing import Protocol

from data_gen import redact
from data_gen.client.api import ChatClient
from data_gen.client.limits import Governor
from data_gen.client.tokens import TokenCounter
from data_gen.client.types import ChatRequest, Completion
from data_gen.config import ConfigError, DistillConfig
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


def make_teacher(
    config: DistillConfig, task: Task, require_key: bool = True, governor: Governor | None = None
) -> Teacher:
    """Build the configured teacher; a missing key is a one-line ConfigError naming the variable
    (unless ``require_key`` is false, as in a dry run, which sends nothing)."""
    if config.teacher == "rules":
        from data_gen.teachers.rules import RulesTeacher

        return RulesTeacher(task)
    if config.teacher == "openai":
        api_key = None
        if config.api_key_env:
            api_key = os.environ.get(config.api_key_env)
            redact.register(api_key)  # masked in every error text and log line from now on
            if not api_key and require_key:
                raise ConfigError(
                    f"the API key variable {config.api_key_env} is not set: export {config.api_key_env}=... "
                    "(or pass --api-key-env NAME; an empty name sends no key, for local servers)"
                )
        return ChatClient(
            base_url=config.base_url or "",
            model=config.model or "",
            api_key=api_key,
            concurrency=config.concurrency,
            timeout=config.timeout,
            max_retries=config.max_retries,
            governor=governor,
            counter=TokenCounter(config.tokenizer),
        )
    if config.teacher == "local":
        from data_gen.teachers.local import LocalTeacher

        return LocalTeacher(config.model or "")
    raise ConfigError(f"unknown teacher {config.teacher!r}; choose rules, openai or local")
