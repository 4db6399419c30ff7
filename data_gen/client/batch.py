"""Batch mode: requests as OpenAI Batch input files, and batch output files back into the cache.

The same file format serves OpenAI's Batch API (50% of the price, results within 24 h) and ``vllm run-batch`` for
a self-hosted teacher. ``custom_id`` is the request's cache key, so results land exactly where a live run would
look for them, and a resubmitted line can never be paid for twice under another id.

    python -m data_gen.distill --config cfg.yaml --batch-write            # -> <out>/batch/requests-0001.jsonl, ...
    # submit them (OpenAI Batch API) or run: vllm run-batch -i requests-0001.jsonl -o results-0001.jsonl --model M
    python -m data_gen.distill --config cfg.yaml --batch-ingest <out>/batch/results-0001.jsonl
    python -m data_gen.distill --config cfg.yaml                          # completes from the cache
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_gen.client.cache import ResponseCache
from data_gen.client.pricing import Price
from data_gen.client.tokens import TokenCounter
from data_gen.client.types import ChatRequest, Completion, Usage, completion_from_response, reported_usage, request_key

MAX_LINES = 50_000  # OpenAI Batch API limits per input file
MAX_BYTES = 200 * 1024 * 1024
URL = "/v1/chat/completions"


class Deferred(Exception):
    """The request was written to a batch file instead of being sent."""


class BatchWriter:
    """Appends request lines to ``requests-NNNN.jsonl`` files, starting a new file at the line or size limit."""

    def __init__(self, folder: Path, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> None:
        self.folder = folder
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.files: list[Path] = []
        self.lines = 0
        self._handle: Any = None
        self._lines_in_file = 0
        self._bytes_in_file = 0
        self._written: set[str] = set()

    def add(self, key: str, body: dict[str, Any]) -> str | None:
        """Write one request; returns its file name (None when this key was already written in this run)."""
        if key in self._written:
            return None
        line = (
            json.dumps({"custom_id": key, "method": "POST", "url": URL, "body": body}, ensure_ascii=False) + "\n"
        ).encode("utf-8")
        if len(line) > self.max_bytes:
            raise ValueError(f"one request is {len(line):,} bytes, over the batch file limit")
        if (
            self._handle is None
            or self._lines_in_file >= self.max_lines
            or self._bytes_in_file + len(line) > self.max_bytes
        ):
            self._next_file()
        self._handle.write(line)
        self._lines_in_file += 1
        self._bytes_in_file += len(line)
        self.lines += 1
        self._written.add(key)
        return self.files[-1].name

    def _next_file(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"requests-{len(self.files) + 1:04d}.jsonl"
        self.files.append(path)
        self._handle = path.open("wb")
        self._lines_in_file = self._bytes_in_file = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class BatchingTeacher:
    """In ``--batch-write`` runs: a stored answer is used as usual; a request that is not stored is written to a
    batch file and the row waits (Deferred). Re-asks of stored answers get written too, for the next round."""

    def __init__(self, teacher: Any, cache: ResponseCache, writer: BatchWriter) -> None:
        self.teacher = teacher
        self.cache = cache
        self.writer = writer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.teacher, name)

    async def complete(self, request: ChatRequest, refresh: bool = False) -> Completion:
        key = request.key or request_key(self.teacher.endpoint, request.body())
        if not refresh:
            stored = self.cache.lookup(key, request.max_tokens)
            if stored is not None:
                return stored
        file = self.writer.add(key, request.body())
        if file is not None:
            self.cache.add_batch_request(key, self.teacher.endpoint, request.body(), file)
        raise Deferred(key)


@dataclass
class IngestReport:
    lines: int = 0
    stored: int = 0
    failed: Counter = field(default_factory=Counter)  # reason -> lines
    failed_examples: list[str] = field(default_factory=list)
    unknown: int = 0  # custom_ids this output directory never wrote
    duplicates: int = 0
    missing: int = 0  # written, but no stored answer after this ingest

    def lines_of_text(self) -> list[str]:
        out = [f"{self.lines:,} result lines: {self.stored:,} answers stored"]
        if self.failed:
            out.append(
                f"{sum(self.failed.values()):,} failed ({', '.join(f'{k} {v}' for k, v in self.failed.items())})"
                + (f", e.g. {self.failed_examples[0]}" if self.failed_examples else "")
            )
        if self.unknown:
            out.append(f"{self.unknown:,} lines with a custom_id that this output directory never wrote (ignored)")
        if self.duplicates:
            out.append(f"{self.duplicates:,} duplicate lines (the first was kept)")
        out.append(
            f"{self.missing:,} requests written to batch files still have no answer: the next run asks them "
            "(online, or in a new --batch-write round)"
        )
        return out


def ingest(paths: list[Path], cache: ResponseCache, price: Price | None = None) -> IngestReport:
    """Store every successful line of batch output files (OpenAI Batch API or ``vllm run-batch``) in the cache and
    record it in the ledger at ``price`` (the batch price), so that a later run's cap counts it (a line without
    usage is counted by the client, flagged estimated). Failed lines (an ``error``, a non-200 status, a body
    without choices) are counted with their reason and left unanswered, so they are asked again; nothing is dropped
    silently."""
    report = IngestReport()
    seen: set[str] = set()
    for path in paths:
        with path.open("r", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                report.lines += 1
                try:
                    item = json.loads(line)
                    key = item["custom_id"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    _fail(report, "malformed_line", f"{path.name} line {number}")
                    continue
                request = cache.batch_request(key)
                if request is None:
                    report.unknown += 1
                    continue
                if key in seen:
                    report.duplicates += 1
                    continue
                seen.add(key)
                completion, problem = _completion(item)
                if completion is None:
                    _fail(report, problem or "failed", f"{path.name} line {number}")
                    continue
                endpoint, body = request
                cache.put(key, endpoint, body, completion)
                usage = None if completion.usage_estimated else completion.usage
                if usage is None:
                    counter = TokenCounter()
                    usage = Usage(counter.messages(body.get("messages") or []), counter.count(completion.text))
                cache.add_call(key, usage, price.cost(usage) if price else 0.0, estimated=completion.usage_estimated)
                report.stored += 1
    report.missing = len(cache.pending_batch_keys())
    return report


def _completion(item: dict[str, Any]) -> tuple[Completion | None, str | None]:
    error = item.get("error")
    if error:
        code = error.get("code") if isinstance(error, dict) else None
        return None, f"error_{code}" if code else "error"
    response = item.get("response") or {}
    if "choices" in response:  # older vllm run-batch: the completion itself, without status_code / body
        response = {"status_code": 200, "body": response}
    status = response.get("status_code")
    if status != 200:
        return None, f"http_{status}"
    body = response.get("body")
    if not isinstance(body, dict) or not body.get("choices"):
        return None, "no_choices"
    try:
        completion = completion_from_response(body)
    except (KeyError, TypeError, ValueError, IndexError):
        return None, "malformed_body"
    completion.usage_estimated = reported_usage(body) is None
    return completion, None


def _fail(report: IngestReport, reason: str, where: str) -> None:
    report.failed[reason] += 1
    if len(report.failed_examples) < 3:
        report.failed_examples.append(f"{reason} at {where}")
