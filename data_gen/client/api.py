"""One OpenAI-compatible chat client for the teacher (data_gen) and the model under test (eval).

Built on the official ``openai`` async client over aiohttp (the default httpx pool collapses at high
concurrency: docs/field notes), with the SDK's own retries off and ``tenacity`` in charge: exponential backoff
with full jitter on 408/409/429/5xx, timeouts and dropped connections, honouring ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.wait import wait_base

from data_gen.client.limits import AdaptiveConcurrency, Governor
from data_gen.client.tokens import TokenCounter
from data_gen.client.types import (
    ChatRequest,
    Completion,
    Usage,
    completion_from_response,
    normalize_endpoint,
    reported_usage,
    request_key,
)
from data_gen.errors import TeacherSetupError
from data_gen.redact import redact

RETRY_STATUS = frozenset({408, 409, 429})
FATAL_STATUS = frozenset({401, 403, 404})  # wrong key, no access, unknown model: every row would fail the same way
MAX_RETRY_AFTER_S = 300.0


class BadResponseError(RuntimeError):
    """A 200 response that is not a usable answer (no JSON object, an HTML page, no choices): a server fault,
    retried like a 5xx."""


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
    return isinstance(exc, (openai.APIConnectionError, BadResponseError, asyncio.TimeoutError))


def is_request_error(exc: BaseException) -> bool:
    """A request that failed at the server or on the way (after its retries), as opposed to a fault in our code."""
    import openai

    return isinstance(exc, (openai.APIError, BadResponseError, asyncio.TimeoutError))


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found and len(found) < 10:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def never_connected(exc: BaseException) -> bool:
    """The connection was never made (refused, unknown host, TLS failure): the request did not leave this machine,
    so it cannot have been billed. (The SDK's aiohttp transport reports these as a connect *timeout*.)"""
    from aiohttp import ClientConnectorError

    return any(isinstance(e, (ConnectionRefusedError, socket.gaierror, ClientConnectorError)) for e in _chain(exc))


def is_fatal(exc: BaseException) -> bool:
    """Errors after which every other request would fail the same way: wrong key, no access, unknown model."""
    if "openai" not in sys.modules:  # nothing has imported the SDK, so this cannot be one of its errors
        return False
    import openai

    return isinstance(exc, openai.APIStatusError) and exc.status_code in FATAL_STATUS


def describe_error(exc: BaseException) -> str:
    """One line about a failed request, with no headers and no key in it (``redact``)."""
    return redact(_describe(exc))


def _describe(exc: BaseException) -> str:
    import openai

    def flat(value: object) -> str:
        return " ".join(str(value).split())[:200]

    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {flat(getattr(exc, 'message', '') or '')}"
    chain = _chain(exc)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused (is the server running, and is the port right?)"
    if isinstance(exc, openai.APIConnectionError) and never_connected(exc):
        return f"cannot connect: {flat(chain[-1])}"
    if isinstance(exc, (openai.APITimeoutError, asyncio.TimeoutError)):
        return "request timed out (no answer within --timeout)"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {flat(exc.__cause__ or exc.__context__ or exc)}"
    if isinstance(exc, BadResponseError):
        return f"bad response: {flat(exc)}"
    return f"{type(exc).__name__}: {flat(exc)}"


class ChatClient:
    """Async OpenAI-compatible chat client: every attempt goes through the governor (concurrency, rate limits,
    budget), transient faults are retried by tenacity."""

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
        governor: Governor | None = None,
        endpoint_id: str | None = None,
        counter: TokenCounter | None = None,
    ) -> None:
        self.base_url = base_url
        # the name of the endpoint in cache keys: the URL, or a stable id for a server started on a new port
        self.endpoint = endpoint_id or normalize_endpoint(base_url)
        self.model = model
        self._api_key = api_key or "EMPTY"  # keyless local servers (vllm serve) accept any token
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_max = backoff_max
        self.governor = governor or Governor(AdaptiveConcurrency(concurrency, adaptive=False))
        self.counter = counter or TokenCounter()  # tokens of a prompt before it is sent, and of answers without usage
        self.attempts = 0  # HTTP attempts made, failed ones included
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

    async def complete(self, request: ChatRequest, refresh: bool = False) -> Completion:
        """One chat completion, retried on transient faults (``refresh`` is for caches in front of it).
        Non-retryable errors propagate; BudgetExhausted is raised before an attempt the budget cannot cover."""
        start = time.perf_counter()
        body = request.body()
        key = request.key or request_key(self.endpoint, body)
        prompt = self.counter.messages(request.messages)

        def count(response: dict[str, Any]) -> Usage:  # the server reported no usage
            message = ((response.get("choices") or [{}])[0] or {}).get("message") or {}
            reply = [message.get(k) for k in ("content", "reasoning", "reasoning_content")]
            return Usage(prompt, sum(self.counter.count(part) for part in reply if isinstance(part, str)))

        # the SDK's documented raw route: the body is sent as built, the JSON comes back as a dict
        # (chat.completions.create re-validates every message and costs ~1 ms of CPU per request)
        response, attempts, usage = await self.post("/chat/completions", body, prompt, request.max_tokens, key, count)
        completion = completion_from_response(response, attempts, time.perf_counter() - start)
        if usage is not None:
            completion.usage, completion.usage_estimated = usage, True
        return completion

    async def post(
        self,
        path: str,
        body: dict[str, Any],
        estimate: int,
        max_tokens: int,
        key: str = "",
        count: Callable[[dict[str, Any]], Usage] | None = None,
    ) -> tuple[dict[str, Any], int, Usage | None]:
        """POST ``body`` to ``path`` (relative to the base URL, or a full URL) through the governor, retried on
        transient faults: the JSON object that came back, the number of attempts it took, and the client's own
        count of its tokens (``count``) when the server reported no usage (else None; without ``count``, an answer
        without usage costs nothing, as for ``/tokenize``). A 200 answer that is not a
        JSON object, or a completions answer without choices, is a server fault (retried)."""
        import openai

        attempts = 0
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_retry_after(wait_random_exponential(multiplier=0.5, max=self.backoff_max)),
            reraise=True,
        )
        estimated: Usage | None = None
        async for attempt in retrying:
            with attempt:
                async with self.governor.slot(estimate, max_tokens, key) as slot:
                    attempts += 1
                    self.attempts += 1
                    sent = time.perf_counter()
                    try:
                        response = await self.client.post(path, body=body, cast_to=object)
                    except ValueError:  # the SDK could not parse the body as JSON (an HTML page from a proxy, ...)
                        slot.failed()
                        raise BadResponseError("a 200 answer whose body is not JSON") from None
                    except (openai.APIStatusError, openai.APIConnectionError) as exc:
                        if isinstance(exc, openai.APIStatusError) or never_connected(exc):
                            slot.failed()  # an error answer, or a request that never left: nothing billed
                        raise
                    if not isinstance(response, dict):
                        slot.failed()
                        raise BadResponseError(f"the answer is not a JSON object: {str(response)[:100]!r}")
                    if path.endswith("completions") and not response.get("choices"):
                        slot.failed()
                        raise BadResponseError("the answer has no choices")
                    usage = reported_usage(response)
                    estimated = None
                    if usage is None and count is not None:  # several servers omit usage: count it, and say so
                        usage = estimated = count(response)
                    slot.done(usage or Usage(), time.perf_counter() - sent, estimated=estimated is not None)
        return response, attempts, estimated

    async def models(self) -> list[str] | None:
        """The model names the server lists (GET /models), or None when it has no such list."""
        import openai

        try:
            listed = await asyncio.wait_for(self.client.models.list(), timeout=min(self.timeout, 30))
        except (openai.NotFoundError, openai.APIStatusError, openai.APIConnectionError, asyncio.TimeoutError):
            return None
        return [m.id for m in listed.data]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
