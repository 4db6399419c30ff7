"""One OpenAI-compatible chat client for the teacher (data_gen) and the model under test (eval).

Built on the official ``openai`` async client over aiohttp (the default httpx pool collapses at high
concurrency: docs/field notes), with the SDK's own retries off and ``tenacity`` in charge: exponential backoff
with full jitter on 408/409/429/5xx, timeouts and dropped connections, honouring ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.wait import wait_base

RETRY_STATUS = frozenset({408, 409, 429})
FATAL_STATUS = frozenset({401, 403, 404})  # wrong key, no access, unknown model: every row would fail the same way
MAX_RETRY_AFTER_S = 300.0


class TeacherSetupError(RuntimeError):
    """The endpoint cannot serve this run at all (unreachable, key rejected, model unknown). Stops the run."""


class EmptyChoicesError(RuntimeError):
    """A 200 response without any choice: a server fault, retried like a 5xx."""


@dataclass(frozen=True)
class ChatRequest:
    """The exact request body (minus the key); ``text`` is the input row, for teachers that are not models."""

    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any]
    text: str | None = field(default=None, compare=False)

    def body(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": self.messages,
            **{k: v for k, v in self.params.items() if v is not None},
        }


def request_key(endpoint: str, body: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of (endpoint, exact body): any change to what is sent is a new key."""
    canonical = json.dumps(
        {"endpoint": endpoint, "body": body}, sort_keys=True, ensure_ascii=False, separators=(",", ":")
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
    from_cache: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("from_cache")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], from_cache: bool = False) -> Completion:
        values = dict(data)
        values["usage"] = Usage(**values.get("usage") or {})
        return cls(**values, from_cache=from_cache)


def retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` as seconds or HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class wait_retry_after(wait_base):
    """Wait what ``Retry-After`` says (capped); otherwise fall back to exponential backoff with jitter."""

    def __init__(self, fallback: wait_base, cap: float = MAX_RETRY_AFTER_S) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        seconds = retry_after_seconds(exc) if exc else None
        return min(seconds, self.cap) if seconds is not None else self.fallback(retry_state)


def is_retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUS or exc.status_code >= 500
    return isinstance(exc, (openai.APIConnectionError, EmptyChoicesError, asyncio.TimeoutError))


def is_fatal(exc: BaseException) -> bool:
    """Errors after which every other request would fail the same way: wrong key, no access, unknown model."""
    if "openai" not in sys.modules:  # nothing has imported the SDK, so this cannot be one of its errors
        return False
    import openai

    return isinstance(exc, openai.APIStatusError) and exc.status_code in FATAL_STATUS


def describe_error(exc: BaseException) -> str:
    """One line about a failed request, with no headers and no key in it."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        message = getattr(exc, "message", "") or ""
        return f"HTTP {exc.status_code}: {' '.join(message.split())[:200]}"
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return f"connection error: {' '.join(str(cause or exc).split())[:200]}"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


class ChatClient:
    """Async OpenAI-compatible chat client with bounded concurrency and tenacity retries."""

    cacheable = True
    reaskable = True
    kind = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        concurrency: int = 16,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff_max: float = 60.0,
    ) -> None:
        self.base_url = base_url
        self.endpoint = normalize_endpoint(base_url)
        self.model = model
        self._api_key = api_key or "EMPTY"  # keyless local servers (vllm serve) accept any token
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_max = backoff_max
        self._semaphore = asyncio.Semaphore(concurrency)
        self._client: Any = None

    def __repr__(self) -> str:  # never show the key
        return f"ChatClient(endpoint={self.endpoint!r}, model={self.model!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI, DefaultAioHttpClient

            self._client = AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                max_retries=0,  # tenacity owns retries, so that every attempt is counted
                timeout=self.timeout,
                http_client=DefaultAioHttpClient(timeout=self.timeout),
            )
        return self._client

    async def check(self) -> None:
        """Reach the endpoint before spending anything: GET /models. Raises TeacherSetupError with one line."""
        import openai

        try:
            await asyncio.wait_for(self.client.models.list(), timeout=min(self.timeout, 30))
        except openai.AuthenticationError:
            raise TeacherSetupError(f"{self.endpoint} rejected the API key (HTTP 401)") from None
        except openai.PermissionDeniedError:
            raise TeacherSetupError(f"{self.endpoint} denied access (HTTP 403)") from None
        except openai.NotFoundError:
            return  # some providers have no /models; the first real request will tell
        except (openai.APIConnectionError, asyncio.TimeoutError) as exc:
            raise TeacherSetupError(f"cannot reach {self.base_url}: {describe_error(exc)}") from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise TeacherSetupError(f"{self.endpoint} is failing: {describe_error(exc)}") from None

    async def complete(self, request: ChatRequest) -> Completion:
        """One chat completion, retried on transient faults. Non-retryable errors propagate."""
        attempts = 0
        start = time.perf_counter()
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_retry_after(wait_random_exponential(multiplier=0.5, max=self.backoff_max)),
            reraise=True,
        )
        async with self._semaphore:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    response = await self.client.chat.completions.create(**request.body())
                    if not response.choices:
                        raise EmptyChoicesError("the response has no choices")
        return self._completion(response, attempts, time.perf_counter() - start)

    @staticmethod
    def _completion(response: Any, attempts: int, latency: float) -> Completion:
        choice = response.choices[0]
        message = choice.message
        extra = getattr(message, "model_extra", None) or {}
        reasoning = getattr(message, "reasoning", None) or extra.get("reasoning") or extra.get("reasoning_content")
        usage = Usage()
        if response.usage is not None:
            u = response.usage
            details = getattr(u, "prompt_tokens_details", None)
            cached = getattr(details, "cached_tokens", None) if details else None
            if cached is None:  # DeepSeek reports its context cache this way
                cached = (getattr(u, "model_extra", None) or {}).get("prompt_cache_hit_tokens")
            usage = Usage(int(u.prompt_tokens or 0), int(u.completion_tokens or 0), int(cached or 0))
        return Completion(
            text=message.content or "",
            reasoning=reasoning if isinstance(reasoning, str) else None,
            finish_reason=choice.finish_reason,
            usage=usage,
            model=response.model,
            attempts=attempts,
            latency_s=round(latency, 4),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
