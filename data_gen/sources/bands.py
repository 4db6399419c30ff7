"""The LSH band index of duplicate detection: (bucket, text) pairs, looked up for many buckets at once.

The newest pairs live in memory as sorted numpy runs (a run merged with the one before it once that is no larger,
as a log-structured merge tree does), up to ``memory_pairs``; past that they move to SQLite (``dedup_band``), so
memory stays bounded whatever the input. A lookup searches the runs with ``searchsorted`` and, once anything was
moved, SQLite by its primary key. The pairs found are the same wherever they are kept.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable

import numpy as np

MEMORY_PAIRS = 4_000_000  # 64 MB of pairs (about 360,000 texts at 11 bands), as much as the workspace's page cache
_FIND = "SELECT bucket, seq FROM dedup_band WHERE bucket IN ({})"


class BandIndex:
    """``add(buckets, seqs)`` stores pairs; ``find(buckets)`` returns every stored ``(bucket, seq)`` in them."""

    def __init__(self, db: sqlite3.Connection, memory_pairs: int = MEMORY_PAIRS) -> None:
        self.db = db
        self.memory_pairs = memory_pairs
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []  # (buckets sorted, their seqs), largest first
        self.in_memory = 0
        self.on_disk = db.execute("SELECT EXISTS (SELECT 1 FROM dedup_band)").fetchone()[0] == 1

    def add(self, buckets: np.ndarray, seqs: np.ndarray) -> None:
        """Store the pairs ``(buckets[i], seqs[i])`` (int64 arrays of one length)."""
        if not len(buckets):
            return
        keys, values = buckets, seqs
        while self.runs and len(self.runs[-1][0]) <= len(keys):
            older_keys, older_values = self.runs.pop()
            keys, values = np.concatenate([older_keys, keys]), np.concatenate([older_values, values])
        order = np.argsort(keys, kind="stable")
        self.runs.append((keys[order], values[order]))
        self.in_memory += len(buckets)
        if self.in_memory > self.memory_pairs:
            self._move_to_disk()

    def find(self, buckets: Collection[int]) -> list[tuple[int, int]]:
        """Every stored ``(bucket, seq)`` whose bucket is one of ``buckets``."""
        if not buckets:
            return []
        wanted = np.fromiter(buckets, dtype=np.int64, count=len(buckets))
        found: list[tuple[int, int]] = []
        for keys, values in self.runs:
            start, stop = np.searchsorted(keys, wanted, "left"), np.searchsorted(keys, wanted, "right")
            for i in np.flatnonzero(stop > start).tolist():
                found += ((int(wanted[i]), int(seq)) for seq in values[start[i] : stop[i]])
        if self.on_disk:
            found += select_in(self.db, _FIND, wanted.tolist())
        return found

    def _move_to_disk(self) -> None:
        for keys, values in self.runs:
            pairs = zip(keys.tolist(), values.tolist(), strict=True)
            self.db.executemany("INSERT OR IGNORE INTO dedup_band VALUES (?, ?)", pairs)
        self.runs, self.in_memory, self.on_disk = [], 0, True


def select_in(db: sqlite3.Connection, query: str, keys: Iterable) -> list[tuple]:
    """The rows of ``query`` (its ``IN ({})`` filled) for these keys, a statement per 999 of them (SQLite's
    smallest limit on parameters)."""
    keys_list, rows = list(keys), []
    for start in range(0, len(keys_list), 999):
        part = keys_list[start : start + 999]
        rows += db.execute(query.format(",".join("?" * len(part))), part).fetchall()
    return rows
