"""Exact and near-duplicate detection over texts, in input order (the first occurrence is kept), on disk.

Exact: the same text after case-folding and whitespace collapsing. Near: MinHash signatures of character 5-grams
(``datasketch``), banded into an LSH index whose bands and signatures live in SQLite, so memory does not grow
with the input; every candidate is confirmed by its estimated Jaccard similarity. Used before any teacher call,
so duplicates cost nothing.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import zlib
from typing import Any

import numpy as np

_PUNCT = re.compile(r"[^\w\s]")
SCHEME = "affine32"  # datasketch's default permutation scheme since 2.0
TABLES = """
CREATE TABLE IF NOT EXISTS dedup_exact (digest BLOB PRIMARY KEY, rid TEXT, place TEXT);
CREATE TABLE IF NOT EXISTS dedup_sig (rid TEXT PRIMARY KEY, place TEXT, sig BLOB);
CREATE TABLE IF NOT EXISTS dedup_band (bucket BLOB, rid TEXT);
CREATE INDEX IF NOT EXISTS dedup_band_lookup ON dedup_band (bucket);
"""


def normalize(text: str) -> str:
    return " ".join(text.casefold().split())


def shingles(text: str, k: int = 5) -> set[bytes]:
    """Character k-grams of the normalized text without punctuation (robust for short sentences)."""
    flat = " ".join(_PUNCT.sub(" ", normalize(text)).split())
    if len(flat) <= k:
        return {flat.encode()}
    return {flat[i : i + k].encode() for i in range(len(flat) - k + 1)}


class Deduplicator:
    """``check(id, text, where)`` returns ``(reason, kept_id, detail)`` for a duplicate, else registers the text;
    ``where`` ("row 12") names the kept row in the detail. State lives in ``db`` (in memory by default)."""

    def __init__(
        self, near: bool = True, threshold: float = 0.85, num_perm: int = 128, db: sqlite3.Connection | None = None
    ) -> None:
        from datasketch import MinHash, MinHashLSH

        self.near = near
        self.threshold = threshold
        self.num_perm = num_perm
        self.db = db or sqlite3.connect(":memory:")
        self.db.executescript(TABLES)
        # datasketch picks the bands x rows that suit the threshold; favour recall (candidates are confirmed)
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
        self.bands, self.rows = lsh.b, lsh.r
        self._permutations = MinHash(num_perm=num_perm, seed=1, scheme=SCHEME).permutations  # drawn once
        self._minhash_class = MinHash
        self._lookup = f"SELECT rid FROM dedup_band WHERE bucket IN ({','.join('?' * self.bands)})"  # indexed

    def _minhash(self, text: str) -> Any:
        m = self._minhash_class(
            num_perm=self.num_perm, seed=1, permutations=self._permutations, scheme=SCHEME, hashfunc=zlib.crc32
        )  # crc32 (C) hashes the 5-grams 6x faster than the default sha1; the permutations do the mixing
        m.update_batch(list(shingles(text)))
        return m

    def _buckets(self, m: Any) -> list[bytes]:
        """One LSH bucket per band: the band number and a hash of its rows of the signature."""
        values = m.hashvalues
        return [
            bytes([b]) + hashlib.blake2b(values[b * self.rows : (b + 1) * self.rows].tobytes(), digest_size=8).digest()
            for b in range(self.bands)
        ]

    def check(
        self, rid: str, text: str, where: str | None = None, register: bool = True
    ) -> tuple[str, str, str] | None:
        """The first match of ``text`` (exact, else the most similar near one); registers it when there is none
        and ``register``: ``register=False`` only looks."""
        place = where or rid
        digest = hashlib.sha1(normalize(text).encode()).digest()
        found = self.db.execute("SELECT rid, place FROM dedup_exact WHERE digest = ?", (digest,)).fetchone()
        if found:
            return "duplicate_text", found[0], f"same text as {found[1]} (ignoring case and spacing)"
        if self.near:
            m = self._minhash(text)
            buckets = self._buckets(m)
            candidates = {c for (c,) in self.db.execute(self._lookup, buckets)}
            best: tuple[float, str, str] | None = None
            for candidate in sorted(candidates):
                kept_place, sig = self.db.execute(
                    "SELECT place, sig FROM dedup_sig WHERE rid = ?", (candidate,)
                ).fetchone()
                other = np.frombuffer(sig, dtype=m.hashvalues.dtype)
                similarity = float(np.count_nonzero(other == m.hashvalues)) / self.num_perm  # MinHash Jaccard
                if similarity >= self.threshold and (best is None or similarity > best[0]):
                    best = (similarity, candidate, kept_place)
            if best is not None:
                return "near_duplicate_text", best[1], f"~{best[0]:.2f} similar to {best[2]}"
            if not register:
                return None
            self.db.execute("INSERT INTO dedup_sig VALUES (?, ?, ?)", (rid, place, m.hashvalues.tobytes()))
            self.db.executemany("INSERT INTO dedup_band VALUES (?, ?)", [(bucket, rid) for bucket in buckets])
        if register:
            self.db.execute("INSERT INTO dedup_exact VALUES (?, ?, ?)", (digest, rid, place))
        return None
