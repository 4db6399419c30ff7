"""Exact and near-duplicate detection over texts, in input order (the first occurrence is kept), on disk.

Exact: the same text after case-folding and whitespace collapsing. Near: MinHash signatures of character 5-grams
(``datasketch``'s permutations and LSH bands, the signatures computed for many texts at once with numpy, equal to
datasketch's own), banded into an LSH index whose bands and signatures live in SQLite, so memory does not grow
with the input; every candidate is confirmed by its estimated Jaccard similarity. Used before any teacher call,
so duplicates cost nothing.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import zlib
from collections.abc import Sequence

import numpy as np

_PUNCT = re.compile(r"[^\w\s]")
SCHEME = "affine32"  # datasketch's default permutation scheme since 2.0
TABLES = """
CREATE TABLE IF NOT EXISTS dedup_exact (digest BLOB PRIMARY KEY, rid TEXT, place TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup_sig (seq INTEGER PRIMARY KEY, rid TEXT, place TEXT, sig BLOB);
CREATE TABLE IF NOT EXISTS dedup_band (bucket INTEGER, seq INTEGER, PRIMARY KEY (bucket, seq)) WITHOUT ROWID;
"""


def normalize(text: str) -> str:
    return " ".join(text.casefold().split())


def flatten(text: str) -> str:
    """The text shingled: normalized, punctuation replaced by spaces, spaces collapsed."""
    return " ".join(_PUNCT.sub(" ", normalize(text)).split())


def shingles(text: str, k: int = 5) -> set[bytes]:
    """Character k-grams of the normalized text without punctuation (robust for short sentences)."""
    flat = flatten(text)
    if len(flat) <= k:
        return {flat.encode()}
    return {flat[i : i + k].encode() for i in range(len(flat) - k + 1)}


def _crc32_tables(k: int) -> tuple[int, np.ndarray]:
    """CRC-32 is affine over GF(2) for a fixed length: ``crc32(x) = crc32(0^k) ^ T[0][x0] ^ ... ^ T[k-1][x(k-1)]``,
    so the CRC-32 of every k-byte window of a byte array is k table lookups (tables made with zlib itself)."""
    zero = zlib.crc32(bytes(k))
    tables = np.array(
        [[zlib.crc32(bytes(k)[:j] + bytes([v]) + bytes(k)[j + 1 :]) ^ zero for v in range(256)] for j in range(k)],
        dtype=np.uint32,
    )
    return zero, tables


class Deduplicator:
    """``check(id, text, where)`` returns ``(reason, kept_id, detail)`` for a duplicate, else registers the text;
    ``where`` ("row 12") names the kept row in the detail. State lives in ``db`` (in memory by default)."""

    K = 5  # characters per shingle

    def __init__(
        self, near: bool = True, threshold: float = 0.85, num_perm: int = 128, db: sqlite3.Connection | None = None
    ) -> None:
        from datasketch import MinHash, MinHashLSH
        from datasketch.minhash import _fmix  # the scheme's pre-mix, as datasketch applies it

        self.near = near
        self.threshold = threshold
        self.num_perm = num_perm
        self.db = db or sqlite3.connect(":memory:")
        self.db.executescript(TABLES)
        # datasketch picks the bands x rows that suit the threshold; favour recall (candidates are confirmed)
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
        self.bands, self.rows = lsh.b, lsh.r
        self._a, self._b = MinHash(num_perm=num_perm, seed=1, scheme=SCHEME).permutations  # drawn once
        self._fmix = _fmix
        self._crc_zero, self._crc_tables = _crc32_tables(self.K)
        self._band_multipliers = (
            np.random.default_rng(1).integers(1, 2**63, (self.bands, self.rows), dtype=np.uint64) | 1
        )
        self._lookup = (  # the candidates' signatures, oldest first: one indexed query per text
            "SELECT rid, place, sig FROM dedup_sig WHERE seq IN "
            f"(SELECT DISTINCT seq FROM dedup_band WHERE bucket IN ({','.join('?' * self.bands)})) ORDER BY seq"
        )

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """MinHash signatures, one row of ``num_perm`` uint32 per text: exactly datasketch's
        ``MinHash(num_perm, seed=1, scheme="affine32", hashfunc=zlib.crc32).update_batch(shingles(text))``,
        computed for many texts at once with numpy (the shingles of ASCII texts hashed as byte windows, the
        permutations applied to all of them in one product) instead of one MinHash object per text."""
        k = self.K
        flats = [flatten(text) for text in texts]
        hashes: list[np.ndarray] = [np.empty(0, dtype=np.uint32)] * len(flats)
        bulk = [i for i, flat in enumerate(flats) if len(flat) > k and flat.isascii()]
        if bulk:  # every k-byte window of the texts joined, minus the windows that straddle two texts
            data = np.frombuffer("".join(flats[i] for i in bulk).encode("ascii"), dtype=np.uint8)
            lengths = np.array([len(flats[i]) for i in bulk])
            owner = np.repeat(np.arange(len(bulk)), lengths)
            windows = len(data) - k + 1
            crc = np.full(windows, self._crc_zero, dtype=np.uint32)
            for j in range(k):
                crc ^= self._crc_tables[j][data[j : j + windows]]
            crc = crc[owner[:windows] == owner[k - 1 :]]
            for i, part in zip(bulk, np.split(crc, np.cumsum(lengths - k + 1)[:-1]), strict=True):
                hashes[i] = part
        for i, text in enumerate(texts):
            if not hashes[i].size:  # short or non-ASCII: the character shingles, hashed one by one
                hashes[i] = np.array([zlib.crc32(s) for s in shingles(text, k)], dtype=np.uint32)
        out = np.empty((len(flats), self.num_perm), dtype=np.uint32)
        step = max(1, 1_000_000 // (self.num_perm * 128))  # texts per product: ~a million values at ~128 shingles
        for start in range(0, len(flats), step):
            part = hashes[start : start + step]
            permuted = np.multiply.outer(self._a, self._fmix(np.concatenate(part), 32))  # uint32, wraps as datasketch
            permuted += self._b[:, None]
            offsets = np.cumsum([0] + [len(h) for h in part[:-1]])
            out[start : start + len(part)] = np.minimum.reduceat(permuted, offsets, axis=1).T
        return out

    def _buckets(self, values: np.ndarray) -> list[int]:
        """One LSH bucket per band: a 64-bit hash of its rows of the signature (a multiply-add hash with
        multipliers of its own per band, so equal rows in two bands are two buckets). A collision only makes a
        candidate, which the signatures then reject."""
        bands = values[: self.bands * self.rows].reshape(self.bands, self.rows).astype(np.uint64)
        return (bands * self._band_multipliers).sum(axis=1, dtype=np.uint64).view(np.int64).tolist()

    def check(
        self,
        rid: str,
        text: str,
        where: str | None = None,
        register: bool = True,
        signature: np.ndarray | None = None,
    ) -> tuple[str, str, str] | None:
        """The first match of ``text`` (exact, else the most similar near one, the earliest on a tie); registers
        it when there is none and ``register``: ``register=False`` only looks. ``signature``: the text's row of
        ``signatures`` when the caller computed them in bulk."""
        place = where or rid
        digest = hashlib.sha1(normalize(text).encode()).digest()
        # registered first (one statement for a new text, the common case), withdrawn if it is a near duplicate
        added = (
            register
            and self.db.execute("INSERT OR IGNORE INTO dedup_exact VALUES (?, ?, ?)", (digest, rid, place)).rowcount
        )
        if not added:
            found = self.db.execute("SELECT rid, place FROM dedup_exact WHERE digest = ?", (digest,)).fetchone()
            if found:
                return "duplicate_text", found[0], f"same text as {found[1]} (ignoring case and spacing)"
        if self.near:
            values = self.signatures([text])[0] if signature is None else signature
            buckets = self._buckets(values)
            best: tuple[float, str, str] | None = None
            for kept_rid, kept_place, sig in self.db.execute(self._lookup, buckets):
                other = np.frombuffer(sig, dtype=values.dtype)
                similarity = float(np.count_nonzero(other == values)) / self.num_perm  # MinHash Jaccard
                if similarity >= self.threshold and (best is None or similarity > best[0]):
                    best = (similarity, kept_rid, kept_place)
            if best is not None:
                if added:
                    self.db.execute("DELETE FROM dedup_exact WHERE digest = ?", (digest,))
                return "near_duplicate_text", best[1], f"~{best[0]:.2f} similar to {best[2]}"
            if not register:
                return None
            seq = self.db.execute(
                "INSERT INTO dedup_sig (rid, place, sig) VALUES (?, ?, ?)", (rid, place, values.tobytes())
            ).lastrowid
            self.db.executemany("INSERT OR IGNORE INTO dedup_band VALUES (?, ?)", [(bucket, seq) for bucket in buckets])
        return None
