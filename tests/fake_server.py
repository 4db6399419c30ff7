"""A small scripted OpenAI-compatible HTTP server on 127.0.0.1: try the `openai` teacher path without a key or a
model, benchmark the client, and produce the faults a real server will not produce on demand (429 with or without
Retry-After, 500, slow answers, dropped connections, bad JSON, empty choices).

    python -m tests.fake_server --port 8000 --latency 0.2      # answers every finsight request validly
    python -m data_gen.distill --input news.csv --teacher openai --base-url http://127.0.0.1:8000/v1 \
        --model fake --api-key-env "" --out /tmp/try

Tests use it for faults; the real-server tests use `llamafactory-cli api` (tests/test_engine_llamafactory.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from tests.http_stub import JSONHandler, LoopbackServer


@dataclass
class Reply:
    """What the server does with one request."""

    status: int = 200
    content: str | None = None
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"
    finish_reason: str = "stop"
    usage: dict[str, Any] | None = field(default_factory=lambda: {"prompt_tokens": 100, "completion_tokens": 50})
    cached_tokens: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    delay: float = 0.0
    drop: bool = False  # close the connection without answering
    raw: bytes | None = None  # send these bytes as the body instead of a completion
    no_choices: bool = False
    logprobs: list[dict[str, Any]] | None = None  # choices[0].logprobs.content, OpenAI's (and vLLM's) shape


def answer(content: str, **kwargs: Any) -> Reply:
    return Reply(content=content, **kwargs)


Script = Callable[[dict[str, Any], int], Reply]  # (request body, how many times this exact body was seen) -> Reply


def always_valid(body: dict[str, Any], count: int) -> Reply:
    """The default script: a well-formed finsight answer to every request."""
    return answer(finsight_reply())


class FakeOpenAI:
    """``with FakeOpenAI(script) as server: server.base_url``; records every request it receives.

    ``latency`` delays every answer; ``rpm_limit`` answers 429 (with Retry-After) past that many requests in a
    rolling minute; ``realistic_usage`` reports ~4 characters per token instead of the script's usage."""

    def __init__(
        self,
        script: Script = always_valid,
        api_key: str | None = None,
        latency: float = 0.0,
        rpm_limit: int | None = None,
        realistic_usage: bool = False,
        port: int = 0,
        fail_429: float = 0.0,
        models: tuple[str, ...] | None = ("fake",),
        usage_scale: float = 1.0,
    ) -> None:
        self.script = script
        self.models = models  # what GET /models lists (None: the server has no such route); any name is answered
        self.usage_scale = usage_scale  # realistic usage times this: a tokenizer that counts more than ~4 chars/token
        self.api_key = api_key
        self.latency = latency
        self.rpm_limit = rpm_limit
        self.realistic_usage = realistic_usage
        self.port = port
        self.rejected_by_limit = 0
        self.fail_429 = fail_429  # share of requests answered 429 (Retry-After: 1) at random
        self._random = __import__("random").Random(0)
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.seen: Counter[str] = Counter()
        self.times: list[float] = []
        self.billed_tokens = 0  # with realistic_usage: the tokens of every answer, reported or not
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        fake = self

        class Handler(JSONHandler):
            def _authorized(self) -> bool:
                header = self.headers.get("Authorization")
                with fake._lock:
                    fake.auth_headers.append(header)
                if fake.api_key and header != f"Bearer {fake.api_key}":
                    self.send_json(401, json.dumps({"error": {"message": "Invalid API key"}}).encode())
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path.rstrip("/").endswith("/models") and fake.models is not None:
                    listed = [{"id": name, "object": "model"} for name in fake.models]
                    self.send_json(200, json.dumps({"object": "list", "data": listed}).encode())
                else:
                    self.send_json(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                body = self.read_json()
                if not self._authorized():
                    return
                key = json.dumps(body, sort_keys=True)
                with fake._lock:
                    fake.requests.append(body)
                    fake.times.append(time.monotonic())
                    fake.seen[key] += 1
                    count = fake.seen[key]
                reply = fake._limited() or fake.script(body, count)
                if reply.delay or fake.latency:
                    time.sleep(reply.delay or fake.latency)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if reply.raw is not None:
                    self.send_json(reply.status, reply.raw, reply.headers)
                    return
                if reply.status != 200:
                    message = reply.error or f"scripted error {reply.status}"
                    self.send_json(reply.status, json.dumps({"error": {"message": message}}).encode(), reply.headers)
                    return
                message: dict[str, Any] = {"role": "assistant", "content": reply.content}
                if reply.reasoning is not None:
                    message[reply.reasoning_field] = reply.reasoning
                usage = dict(reply.usage) if reply.usage is not None else None
                if fake.realistic_usage:  # what this server bills, whether or not it reports it
                    chars = sum(len(m.get("content") or "") for m in body.get("messages", []))
                    scale = fake.usage_scale
                    billed = {"prompt_tokens": int(scale * chars / 4) + 1,
                              "completion_tokens": int(scale * len(reply.content or "") / 4) + 1}  # fmt: skip
                    with fake._lock:
                        fake.billed_tokens += billed["prompt_tokens"] + billed["completion_tokens"]
                    usage = billed if usage is not None else None
                if usage is not None:
                    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                    if reply.cached_tokens is not None:
                        usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
                completion = {
                    "id": f"chatcmpl-{len(fake.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": []
                    if reply.no_choices
                    else [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": reply.finish_reason,
                            **({"logprobs": {"content": reply.logprobs}} if reply.logprobs is not None else {}),
                        }
                    ],
                    "usage": usage,
                }
                self.send_json(200, json.dumps(completion).encode(), reply.headers)

        self._server = LoopbackServer(self.port, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def _limited(self) -> Reply | None:
        """A 429 when the last minute already saw ``rpm_limit`` requests (the one just received included)."""
        if self.fail_429 and self._random.random() < self.fail_429:
            return Reply(status=429, headers={"Retry-After": "1"}, error="scripted rate limit")
        if self.rpm_limit is None:
            return None
        with self._lock:
            now = self.times[-1]
            recent = sum(1 for t in reversed(self.times) if t > now - 60.0)
            if recent <= self.rpm_limit:
                return None
            self.rejected_by_limit += 1
        return Reply(status=429, headers={"Retry-After": "1"}, error="rate limit exceeded")

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def finsight_reply(sentiment: str = "positive", risk: str = "Low", name: str = "Acme") -> str:
    """A well-formed finsight answer."""
    answer_json = {"entities": [{"name": name, "sentiment": sentiment}], "sentiment": sentiment, "risk_level": risk}
    return (
        f"<thinking>\nThe text is about {name}.\nConclusion: sentiment is {sentiment}; risk is {risk}.\n"
        f"</thinking>\n{json.dumps(answer_json)}"
    )


def user_text(body: dict[str, Any]) -> str:
    """The input text of a finsight request (the first user turn, minus the template's 'Text: ')."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return user.removeprefix("Text: ")


def max_in_window(times: list[float], period: float = 60.0) -> int:
    """The most requests that fell in any rolling window of ``period`` seconds."""
    best, start = 0, 0
    ordered = sorted(times)
    for end, at in enumerate(ordered):
        while ordered[start] <= at - period:
            start += 1
        best = max(best, end - start + 1)
    return best


def main() -> None:
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--rpm-limit", type=int, default=None, help="answer 429 past this many requests a minute")
    parser.add_argument("--fail-429", type=float, default=0.0, help="answer this share of requests with 429")
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument("--usage-scale", type=float, default=1.0, help="report this many times ~4 chars/token")
    parser.add_argument("--no-usage", action="store_true", help="report no usage at all, as some servers do")
    parser.add_argument("--times", default=None, help="on exit, write the arrival time of every request here")
    parser.add_argument(
        "--exit-after", type=int, default=None, help="answer this many requests, then die (exit status 1) on the next"
    )
    args = parser.parse_args()

    def script(body: dict[str, Any], count: int) -> Reply:
        if args.exit_after is not None and len(server.requests) > args.exit_after:
            os._exit(1)  # a crash: no answer, no cleanup
        reply = always_valid(body, count)
        if args.no_usage:
            reply.usage = None
        return reply

    server = FakeOpenAI(
        script,
        api_key=args.api_key,
        latency=args.latency,
        rpm_limit=args.rpm_limit,
        realistic_usage=True,
        port=args.port,
        fail_429=args.fail_429,
        usage_scale=args.usage_scale,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        print(f"fake OpenAI-compatible server on {server.base_url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    if args.times:
        with open(args.times, "w", encoding="utf-8") as handle:
            json.dump({"times": server.times, "rejected_by_limit": server.rejected_by_limit,
                       "billed_tokens": server.billed_tokens}, handle)  # fmt: skip


if __name__ == "__main__":
    main()
