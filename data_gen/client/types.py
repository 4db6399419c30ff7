"""The data of one chat exchange: the request, its cache key, the completion and its token usage.

Shared by the client (HTTP), the cache, batch files and every teacher, so none of them depends on another.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# The completion-token limit is not part of a request's identity: a stored reply that ended within a new limit is
# the reply that limit would get; one cut at a smaller limit is asked again (see cache.ResponseCache.lookup).
LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True)
class ChatRequest:
    """The exact request body (minus the key); ``text`` is the input row, for teachers that are not models."""

    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any]
    text: str | None = field(default=None, compare=False)
    key: str | None = field(default=None, compare=False)  # its request_key, when the caller computed it already

    def body(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": self.messages,
            **{k: v for k, v in self.params.items() if v is not None},
        }

    @property
    def max_tokens(self) -> int:
        return int(self.params.get("max_tokens") or 0)

    def prompt_chars(self) -> int:
        return sum(len(m.get("content") or "") for m in self.messages)


def request_key(endpoint: str, body: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the endpoint and the exact body, but its completion-token limit: any other
    change to what is sent (model, messages, temperature, seed, ...) is a new key."""
    content = {k: v for k, v in body.items() if k not in LIMIT_FIELDS}
    canonical = json.dumps(
        {"endpoint": endpoint, "body": content}, sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def normalize_endpoint(base_url: str) -> str:
    """``HTTPS://Api.Example.com/v1/`` -> ``https://api.example.com/v1`` (so equivalent URLs share a cache)."""
    parts = urlsplit(base_url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_prompt_tokens += other.cached_prompt_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Completion:
    """What came back: the reply, any separate reasoning, why it stopped, and what it cost."""

    text: str
    reasoning: str | None = None
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    attempts: int = 1
    latency_s: float = 0.0
    created_at: float = field(default_factory=time.time)
    from_cache: bool = False
    usage_estimated: bool = False  # the server reported no usage: the client counted the tokens
    # per completion token, when the request asked for logprobs: {"token", "logprob", "top": [[token, logprob], ...]}
    logprobs: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        # the fields as they are (asdict deep-copies them: a tenth of a millisecond per request, for nothing)
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "from_cache"}
        data["usage"] = dict(vars(self.usage))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], from_cache: bool = False) -> Completion:
        values = dict(data)
        values["usage"] = Usage(**values.get("usage") or {})
        return cls(**values, from_cache=from_cache)


def completion_from_response(response: Any, attempts: int = 1, latency: float = 0.0) -> Completion:
    """A Completion from an OpenAI ``ChatCompletion`` (an SDK object, or its JSON as a dict, as batch files hold).

    Reasoning returned in a separate field (``reasoning``, or ``reasoning_content`` on older vLLM and DeepSeek)
    is kept; cached prompt tokens are read from ``prompt_tokens_details`` or DeepSeek's ``prompt_cache_hit_tokens``.
    """
    data = response if isinstance(response, dict) else response.model_dump()
    choice = data["choices"][0]
    message = choice.get("message") or {}
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    return Completion(
        text=message.get("content") or "",
        reasoning=reasoning if isinstance(reasoning, str) else None,
        finish_reason=choice.get("finish_reason"),
        usage=usage_from_response(data),
        model=data.get("model"),
        attempts=attempts,
        latency_s=round(latency, 4),
        logprobs=_token_logprobs(choice.get("logprobs")),
    )


def usage_from_response(data: dict[str, Any]) -> Usage:
    """Token usage of an OpenAI-style response (cached prompt tokens from ``prompt_tokens_details`` or DeepSeek's
    ``prompt_cache_hit_tokens``); zeros when it reports none (``reported_usage`` tells)."""
    return reported_usage(data) or Usage()


def reported_usage(data: dict[str, Any]) -> Usage | None:
    """The usage a response reports, or None when it has none (several servers omit it)."""
    u = data.get("usage")
    if not isinstance(u, dict) or (u.get("prompt_tokens") is None and u.get("completion_tokens") is None):
        return None
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is None:
        cached = u.get("prompt_cache_hit_tokens")
    try:
        return Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0), int(cached or 0))
    except (TypeError, ValueError):
        return None


def _token_logprobs(logprobs: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """OpenAI's ``choices[0].logprobs.content`` in a compact form (vLLM returns the same shape)."""
    content = (logprobs or {}).get("content")
    if not content:
        return None
    return [
        {
            "token": entry.get("token") or "",
            "logprob": entry.get("logprob"),
            "top": [[alt.get("token") or "", alt.get("logprob")] for alt in entry.get("top_logprobs") or []],
        }
        for entry in content
    ]
