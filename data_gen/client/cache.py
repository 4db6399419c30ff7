"""The store of paid work: every teacher response, the ledger of every call, and requests written to batch files.

SQLite in WAL mode, one file per output directory (``cache.sqlite``). A response is committed before it is used,
so after a crash (even ``kill -9``) or a rerun, no stored response is ever asked for again. Only finished
responses are stored; failures are not, so they are asked again next time.

Keys (``chat.request_key``) hash the endpoint and the exact body except the completion-token limit, which is a
layer of its own: a stored reply that ended within the new limit is reused, one that was cut at a smaller limit
is asked again, and one longer than the new limit counts as cut at it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from data_gen.client.budget import RESERVED, Spent
from data_gen.client.types import ChatRequest, Completion, Usage, request_key

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
    at                REAL NOT NULL,
    state             TEXT NOT NULL DEFAULT 'answered',
    estimated         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_requests (
    key        TEXT PRIMARY KEY,
    endpoint   TEXT NOT NULL,
    body       TEXT NOT NULL,
    file       TEXT NOT NULL,
    written_at REAL NOT NULL
);
"""


def storable_json(value: Any) -> str:
    """JSON text that SQLite (UTF-8) can store whatever the strings hold: a lone surrogate in a reply that was paid
    for (a broken server, or JSON with an escaped half of a pair) is kept escaped instead of failing the write."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)  # \uXXXX escapes: ASCII, and json.loads gives the same strings back
    return text


class ResponseCache:
    """Request key -> Completion, plus the call ledger. Safe to share between coroutines of one process."""

    def __init__(self, path: str | Path, run: str = "") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run = run or f"{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}"  # two runs in one second differ
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
        self._db.executescript(SCHEMA)
        self._migrate()
        self.hits = 0
        self.misses = 0

    def _migrate(self) -> None:
        """Stores written before the ledger knew states: add the columns (earlier failed calls had ok = 0)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
        if "state" not in columns:
            self._db.execute("ALTER TABLE calls ADD COLUMN state TEXT NOT NULL DEFAULT 'answered'")
            self._db.execute("ALTER TABLE calls ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0")
            self._db.execute("UPDATE calls SET state = 'failed' WHERE ok = 0")

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
                storable_json(body),
                storable_json(completion.to_dict()),
                body.get("max_tokens"),
                completion.finish_reason,
                completion.usage.completion_tokens,
                time.time(),
            ),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    # ---------------- the ledger of calls ----------------
    def reserve_call(self, key: str, usage: Usage, cost: float) -> int:
        """An attempt about to be sent, at its worst case; committed before it is sent, so that a run killed
        while it is in flight still counts it. Returns the row to settle."""
        cursor = self._db.execute(
            "INSERT INTO calls (run, key, ok, prompt_tokens, completion_tokens, cached_tokens, cost, at, state, "
            "estimated) VALUES (?, ?, 0, ?, ?, 0, ?, ?, ?, 1)",
            (self.run, key, usage.prompt_tokens, usage.completion_tokens, cost, time.time(), RESERVED),
        )
        return int(cursor.lastrowid or 0)

    def add_call(self, key: str, usage: Usage, cost: float, estimated: bool = False) -> None:
        """An answer paid for outside this client (a batch file's result line)."""
        call = self.reserve_call(key, usage, cost)
        self.settle_call(call, "answered", usage, cost, estimated)

    def settle_call(self, call: int, state: str, usage: Usage, cost: float, estimated: bool) -> None:
        """What the attempt really cost (see budget.py for what each state counts)."""
        self._db.execute(
            "UPDATE calls SET ok = ?, state = ?, prompt_tokens = ?, completion_tokens = ?, cached_tokens = ?, "
            "cost = ?, estimated = ?, at = ? WHERE id = ?",
            (
                state == "answered",
                state,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_prompt_tokens,
                cost,
                estimated,
                time.time(),
                call,
            ),
        )

    def spent(self, run: str | None = None) -> Spent:
        """Calls, tokens and dollars in the ledger, in all runs (the budget's starting point) or in one run.
        Reservations never settled (the run was killed while they were in flight) count at their worst case."""
        where, args = ("WHERE run = ?", (run,)) if run else ("", ())
        calls, tokens, cost, estimated, lost = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0), COALESCE(SUM(cost), 0), "
            f"COALESCE(SUM(estimated), 0), COALESCE(SUM(state = '{RESERVED}'), 0) FROM calls {where}",
            args,
        ).fetchone()
        return Spent(float(cost), int(tokens), int(calls), int(estimated), int(lost))

    def calls_by_state(self, run: str) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM calls WHERE run = ? GROUP BY state", (run,))
        return dict(rows.fetchall())

    # ---------------- what the store belongs to ----------------
    def get_meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # ---------------- batch files ----------------
    def add_batch_request(self, key: str, endpoint: str, body: dict[str, Any], file: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO batch_requests VALUES (?, ?, ?, ?, ?)",
            (key, endpoint, storable_json(body), file, time.time()),
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
    stored before it is returned. ``refresh=True`` (or ``reuse=False``, i.e. ``--no-cache``) asks again and
    replaces what was stored."""

    def __init__(self, teacher: Any, cache: ResponseCache, reuse: bool = True) -> None:
        self.teacher = teacher
        self.cache = cache
        self.reuse = reuse
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.teacher, name)

    async def complete(self, request: ChatRequest, refresh: bool = False) -> Completion:
        key = request.key or request_key(self.teacher.endpoint, request.body())
        if self.reuse and not refresh:
            stored = self.cache.lookup(key, request.max_tokens)
            if stored is not None:
                return stored
        self.calls += 1
        completion = await self.teacher.complete(request)
        self.cache.put(key, self.teacher.endpoint, request.body(), completion)  # stored before it is used
        return completion
