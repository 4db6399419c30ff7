"""The store of paid work: every teacher response, the ledger of every call, and requests written to batch files.

SQLite in WAL mode, one file per output directory (``cache.sqlite``). A response is committed before it is used,
so after a crash (even ``kill -9``) or a rerun, no stored response is ever asked for again. Only finished
responses are stored; failures are not, so they are asked again next time.

Keys (``chat.request_key``) hash the endpoint and the exact body except the completion-token limit, which is a
layer of its own: a stored reply that ended within the new limit is reused, one that was cut at a smaller limit
is asked again, and one longer than the new limit counts as cut at it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from data_gen.chat import ChatRequest, Completion, Usage, request_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key               TEXT PRIMARY KEY,
    endpoint          TEXT NOT NULL,
    model             TEXT NOT NULL,
    request           TEXT NOT NULL,
    response          TEXT NOT NULL,
    max_tokens        INTEGER,
    finish_reason     TEXT,
    completion_tokens INTEGER,
    created_at        REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    id                INTEGER PRIMARY KEY,
    run               TEXT NOT NULL,
    key               TEXT NOT NULL,
    ok                INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    cost              REAL NOT NULL,
    at                REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_requests (
    key        TEXT PRIMARY KEY,
    endpoint   TEXT NOT NULL,
    body       TEXT NOT NULL,
    file       TEXT NOT NULL,
    written_at REAL NOT NULL
);
"""


class ResponseCache:
    """Request key -> Completion, plus the call ledger. Safe to share between coroutines of one process."""

    def __init__(self, path: str | Path, run: str = "") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run = run or time.strftime("%Y%m%dT%H%M%S")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
        self._db.executescript(SCHEMA)
        self.hits = 0
        self.misses = 0

    # ---------------- responses ----------------
    def lookup(self, key: str, max_tokens: int) -> Completion | None:
        """The stored reply for ``key`` as a request with this completion-token limit would have got it."""
        row = self._db.execute(
            "SELECT response, max_tokens, finish_reason, completion_tokens FROM responses WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            self.misses += 1
            return None
        response, stored_limit, finish_reason, completion_tokens = row
        completion = Completion.from_dict(json.loads(response), from_cache=True)
        if finish_reason == "length" and (stored_limit or 0) < max_tokens:
            self.misses += 1
            return None  # cut at a smaller limit: this limit may let it finish, so ask
        self.hits += 1
        if finish_reason != "length" and max_tokens and (completion_tokens or 0) > max_tokens:
            return replace(completion, finish_reason="length")  # it needed more than this limit allows
        return completion

    def get(self, key: str) -> Completion | None:
        """The stored reply, whatever limit it was asked with."""
        row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return Completion.from_dict(json.loads(row[0]), from_cache=True) if row else None

    def contains(self, key: str, max_tokens: int) -> bool:
        hits, misses = self.hits, self.misses
        found = self.lookup(key, max_tokens) is not None
        self.hits, self.misses = hits, misses
        return found

    def put(self, key: str, endpoint: str, body: dict[str, Any], completion: Completion) -> None:
        """Store (or replace) the reply for ``key``; committed when this returns."""
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                endpoint,
                body.get("model", ""),
                json.dumps(body, ensure_ascii=False),
                json.dumps(completion.to_dict(), ensure_ascii=False),
                body.get("max_tokens"),
                completion.finish_reason,
                completion.usage.completion_tokens,
                time.time(),
            ),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    # ---------------- the ledger of calls ----------------
    def record_call(self, key: str, usage: Usage | None, cost: float) -> None:
        """One HTTP attempt, paid or not (a failed attempt has no usage)."""
        u = usage or Usage()
        self._db.execute(
            "INSERT INTO calls (run, key, ok, prompt_tokens, completion_tokens, cached_tokens, cost, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.run,
                key,
                usage is not None,
                u.prompt_tokens,
                u.completion_tokens,
                u.cached_prompt_tokens,
                cost,
                time.time(),
            ),
        )

    def spent(self, run: str | None = None) -> dict[str, float]:
        """Calls, tokens and dollars recorded, in all runs (the budget's starting point) or in one run."""
        where, args = ("WHERE run = ?", (run,)) if run else ("", ())
        calls, tokens, cost = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0), COALESCE(SUM(cost), 0) "
            f"FROM calls {where}",
            args,
        ).fetchone()
        return {"calls": calls, "tokens": tokens, "cost": cost}

    # ---------------- batch files ----------------
    def add_batch_request(self, key: str, endpoint: str, body: dict[str, Any], file: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO batch_requests VALUES (?, ?, ?, ?, ?)",
            (key, endpoint, json.dumps(body, ensure_ascii=False), file, time.time()),
        )

    def batch_request(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """(endpoint, body) of a request written to a batch file."""
        row = self._db.execute("SELECT endpoint, body FROM batch_requests WHERE key = ?", (key,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def pending_batch_keys(self) -> list[str]:
        """Keys written to batch files that have no stored response yet."""
        rows = self._db.execute(
            "SELECT key FROM batch_requests WHERE key NOT IN (SELECT key FROM responses) ORDER BY written_at, key"
        )
        return [key for (key,) in rows]

    def close(self) -> None:
        self._db.close()


class CachedTeacher:
    """Puts a ResponseCache in front of any teacher: a stored response is returned without a call, a new one is
    stored before it is returned. ``refresh=True`` asks again and replaces what was stored."""

    def __init__(self, teacher: Any, cache: ResponseCache) -> None:
        self.teacher = teacher
        self.cache = cache
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.teacher, name)

    async def complete(self, request: ChatRequest, refresh: bool = False) -> Completion:
        key = request.key or request_key(self.teacher.endpoint, request.body())
        if not refresh:
            stored = self.cache.lookup(key, request.max_tokens)
            if stored is not None:
                return stored
        self.calls += 1
        completion = await self.teacher.complete(request)
        self.cache.put(key, self.teacher.endpoint, request.body(), completion)  # stored before it is used
        return completion


def fingerprint(path: str) -> dict[str, Any]:
    """Identity of a model or adapter: small files hashed, large ones by name and size (a 15 GB checkpoint is not
    read to name it); a hub id stays itself."""
    folder = Path(path)
    if not folder.exists():
        return {"id": path}
    digest = hashlib.sha256()
    for item in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = item.stat().st_size
        digest.update(f"{item.relative_to(folder)}:{size}".encode())
        if size <= 64 << 20:
            digest.update(item.read_bytes())
    return {"path": str(folder.resolve()), "sha256": digest.hexdigest()}
