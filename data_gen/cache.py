"""A durable store of teacher responses, keyed by the hash of the exact request (see ``client.request_key``).

SQLite in WAL mode: a response is committed before it is used, so a crash or a rerun never pays for it twice.
Only finished responses are stored; failures are not, so they are asked again next time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from data_gen.client import ChatRequest, Completion, request_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key        TEXT PRIMARY KEY,
    endpoint   TEXT NOT NULL,
    model      TEXT NOT NULL,
    request    TEXT NOT NULL,
    response   TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


class ResponseCache:
    """Request-key -> Completion. Safe to share between coroutines of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
        self._db.executescript(SCHEMA)
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return Completion.from_dict(json.loads(row[0]), from_cache=True)

    def contains(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None

    def put(self, key: str, endpoint: str, body: dict[str, Any], completion: Completion) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                endpoint,
                body.get("model", ""),
                json.dumps(body, ensure_ascii=False),
                json.dumps(completion.to_dict(), ensure_ascii=False),
                time.time(),
            ),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class CachedTeacher:
    """Puts a ResponseCache in front of any teacher: a stored response is returned without a call."""

    def __init__(self, teacher: Any, cache: ResponseCache) -> None:
        self.teacher = teacher
        self.cache = cache
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.teacher, name)

    def key(self, request: ChatRequest) -> str:
        return request_key(self.teacher.endpoint, request.body())

    async def complete(self, request: ChatRequest) -> Completion:
        key = self.key(request)
        stored = self.cache.get(key)
        if stored is not None:
            return stored
        self.calls += 1
        completion = await self.teacher.complete(request)
        self.cache.put(key, self.teacher.endpoint, request.body(), completion)  # stored before it is used
        return completion
