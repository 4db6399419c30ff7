"""Scratch state of one run, on disk so that memory does not grow with the input: seen ids, duplicate-detection
state, the rows still to ask, every rejection and every accepted example. Rebuilt from scratch by every run
(paid work lives in cache.sqlite, never here) and deleted when the run ends.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from data_gen.reasons import registered
from data_gen.redact import redact
from data_gen.sources.records import Record

SCHEMA = """
CREATE TABLE ids (id TEXT PRIMARY KEY, row INTEGER) WITHOUT ROWID;
CREATE TABLE rows (seq INTEGER PRIMARY KEY, id TEXT, row INTEGER, text TEXT, label TEXT);
CREATE TABLE rejects (row INTEGER, id TEXT, reason TEXT, detail TEXT, request_key TEXT);
CREATE TABLE examples (row INTEGER PRIMARY KEY, id TEXT, split TEXT, user TEXT, assistant TEXT, meta TEXT);
CREATE TABLE kd (row INTEGER PRIMARY KEY, rows TEXT);
"""
PAGE = 1000


class StoredExample(NamedTuple):
    """An accepted example as the workspace keeps it between passes."""

    row: int
    id: str
    split: str
    user: str
    assistant: str
    meta: dict[str, Any]


class Workspace:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in (path, path.with_name(path.name + "-journal")):
            leftover.unlink(missing_ok=True)
        # one open transaction (sqlite3 begins it before the first write; only this process reads the file): a
        # transaction per statement made the read pass three times slower (a lock and a file write per statement)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=OFF")  # scratch: a crash loses nothing that is not rebuilt
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-65536")  # 64 MB of pages: the duplicate index's lookups stay in memory
        self.db.executescript(SCHEMA)

    # ---------------- input pass ----------------
    def first_row_of(self, rid: str, row: int) -> int | None:
        """The row that first had this id, or None (and this row is remembered as the first)."""
        if self.db.execute("INSERT OR IGNORE INTO ids VALUES (?, ?)", (rid, row)).rowcount:
            return None  # one statement for a new id, the common case
        return self.db.execute("SELECT row FROM ids WHERE id = ?", (rid,)).fetchone()[0]

    def add_row(self, record: Record) -> None:
        self.db.execute(
            "INSERT INTO rows (id, row, text, label) VALUES (?, ?, ?, ?)",
            (record.id, record.row, record.text, record.label),
        )

    def rows(self) -> Iterator[Record]:
        """The rows to ask, in input order, a page at a time."""
        last = 0
        while True:
            page = self.db.execute(
                "SELECT seq, id, row, text, label FROM rows WHERE seq > ? ORDER BY seq LIMIT ?", (last, PAGE)
            ).fetchall()
            if not page:
                return
            for _, rid, row, text, label in page:
                yield Record(rid, text, row, label)
            last = page[-1][0]

    def count_rows(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]

    # ---------------- outcomes ----------------
    def reject(self, row: int, rid: str | None, reason: str, detail: str, request_key: str | None = None) -> None:
        """Record a rejection; its detail (an error a server wrote, perhaps) never carries a key into rejects.jsonl."""
        values = (row, rid, registered(reason), redact(detail), request_key)
        self.db.execute("INSERT INTO rejects VALUES (?, ?, ?, ?, ?)", values)

    def rejects(self) -> Iterator[dict[str, Any]]:
        cursor = self.db.execute("SELECT row, id, reason, detail, request_key FROM rejects ORDER BY row")
        for row, rid, reason, detail, key in cursor:
            item = {"id": rid, "row": row, "reason": reason, "detail": detail}
            if key:
                item["request_key"] = key  # finds the raw reply in cache.sqlite
            yield item

    def reject_counts(self) -> Counter:
        return Counter(dict(self.db.execute("SELECT reason, COUNT(*) FROM rejects GROUP BY reason")))

    def add_example(self, row: int, rid: str, split: str, user: str, assistant: str, meta: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?)",
            (row, rid, split, user, assistant, json.dumps(meta, ensure_ascii=False)),
        )

    def drop_example(self, row: int) -> None:
        self.db.execute("DELETE FROM examples WHERE row = ?", (row,))
        self.db.execute("DELETE FROM kd WHERE row = ?", (row,))

    def set_meta(self, row: int, meta: dict[str, Any]) -> None:
        self.db.execute("UPDATE examples SET meta = ? WHERE row = ?", (json.dumps(meta, ensure_ascii=False), row))

    def add_kd(self, row: int, rows: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO kd VALUES (?, ?)", (row, rows))

    def kd_of(self, row: int) -> str | None:
        found = self.db.execute("SELECT rows FROM kd WHERE row = ?", (row,)).fetchone()
        return found[0] if found else None

    def examples(self) -> Iterator[StoredExample]:
        """Accepted examples in input order. Do not change the table while iterating."""
        cursor = self.db.execute("SELECT row, id, split, user, assistant, meta FROM examples ORDER BY row")
        for row, rid, split, user, assistant, meta in cursor:
            yield StoredExample(row, rid, split, user, assistant, json.loads(meta))

    def example_counts(self) -> Counter:
        return Counter(dict(self.db.execute("SELECT split, COUNT(*) FROM examples GROUP BY split")))

    def close(self, delete: bool = True) -> None:
        self.db.commit()
        self.db.close()
        if delete:
            self.path.unlink(missing_ok=True)
