"""Run curator over prepared chat requests against an OpenAI-compatible server; print what it took as JSON.

Run with curator's own environment (``.venvs/curator/bin/python``), by ``benchmarks.peer_throughput``:

    python benchmarks/peers/curator_run.py REQUESTS.jsonl BASE_URL CONCURRENCY

REQUESTS.jsonl holds one ``{"messages": [...]}`` per line. The clock runs around curator's call only (its imports,
the input file and the dataset construction are outside it), with its cache in a fresh folder and telemetry off.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time


def main() -> None:
    requests_file, base_url, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ["TELEMETRY_ENABLED"] = "false"
    os.environ["CURATOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="curator-cache-")
    # curator counts tokens with tiktoken's cl100k_base, which it would download; litellm (its dependency) ships it
    litellm = importlib.util.find_spec("litellm")
    assert litellm is not None and litellm.origin is not None
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", os.path.join(os.path.dirname(litellm.origin), "litellm_core_utils",
                                                             "tokenizers"))  # fmt: skip
    started = time.perf_counter()
    from bespokelabs import curator

    from datasets import Dataset

    class Chat(curator.LLM):
        def prompt(self, row: dict) -> list[dict]:
            return row["messages"]

        def parse(self, row: dict, response: str) -> dict:
            return {"reply": response}

    with open(requests_file, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    dataset = Dataset.from_list(rows)
    llm = Chat(
        model_name="fake",
        backend="openai",
        generation_params={"temperature": 0.2, "max_tokens": 1024},
        backend_params={
            "base_url": base_url,
            "api_key": "unused",
            "max_concurrent_requests": concurrency,
            "max_requests_per_minute": 1_000_000,
            "max_tokens_per_minute": 1_000_000_000,
            "max_retries": 1,
        },
    )
    ready = time.perf_counter()
    result = llm(dataset)
    done = time.perf_counter()
    answered = len(result.dataset) if hasattr(result, "dataset") else len(result)
    print(
        json.dumps(
            {
                "rows": len(rows),
                "answered": answered,
                "in_call_s": round(done - ready, 3),
                "before_call_s": round(ready - started, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
