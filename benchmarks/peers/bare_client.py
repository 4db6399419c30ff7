"""The floor of client overhead: ``AsyncOpenAI`` with its aiohttp transport, one task per request under a semaphore,
nothing cached, validated or written. Run by ``benchmarks.peer_throughput``:

    python benchmarks/peers/bare_client.py REQUESTS.jsonl BASE_URL CONCURRENCY

Prints what it took as JSON; the clock runs around the requests only (imports and the client's creation excluded).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def run(requests: list[list[dict]], base_url: str, concurrency: int) -> float:
    from openai import AsyncOpenAI, DefaultAioHttpClient

    async with AsyncOpenAI(base_url=base_url, api_key="unused", http_client=DefaultAioHttpClient()) as client:
        gate = asyncio.Semaphore(concurrency)

        async def ask(messages: list[dict]) -> str:
            async with gate:
                reply = await client.chat.completions.create(model="fake", messages=messages, temperature=0.2,
                                                             max_tokens=1024)  # fmt: skip
                return reply.choices[0].message.content or ""

        started = time.perf_counter()
        replies = await asyncio.gather(*(ask(messages) for messages in requests))
        assert all(replies)
        return time.perf_counter() - started


def main() -> None:
    requests_file, base_url, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(requests_file, encoding="utf-8") as handle:
        requests = [json.loads(line)["messages"] for line in handle]
    seconds = asyncio.run(run(requests, base_url, concurrency))
    print(json.dumps({"rows": len(requests), "answered": len(requests), "in_call_s": round(seconds, 3)}))


if __name__ == "__main__":
    main()
