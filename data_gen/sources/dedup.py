"""Exact and near-duplicate detection over texts, in input order (the first occurrence is kept), on disk.

Exact: the same text after case-folding and whitespace collapsing. Near: MinHash signatures of character 5-grams
(``datasketch``'s permutations and LSH bands, the signatures computed for many texts at once with numpy, equal to
datasketch's own), banded into an LSH index (``bands.py``: in memory up to a bound, then SQLite) with the
signatures in SQLite, so memory does not grow with the input; every candidate is confirmed by its estimated
Jaccard similarity. Texts are checked a chunk at a time, each against all texts registered before it. Used before
any teacher call, so duplicates cost nothing.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

import numpy as np

from data_gen.sources.bands import MEMORY_PAIRS, BandIndex, select_in

_PUNCT = re.compile(r"[^\w\s]")
CHUNK = 512  # texts checked together: their signatures in one product, the index in a few statements
SCHEME = "affine32"  # datasketch's default permutation scheme since 2.0
TABLES = """
CREATE TABLE IF NOT EXISTS dedup_exact (digest BLOB PRIMARY KEY, rid TEXT, place TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup_sig (seq INTEGER PRIMARY KEY, rid TEXT, place TEXT, sig BLOB);
CREATE TABLE IF NOT EXISTS dedup_band (bucket INTEGER, seq INTEGER, PRIMARY KEY (bucket, seq)) WITHOUT ROWID;
"""
_EXACT = "SELECT digest, rid, place FROM dedup_exact WHERE digest IN ({})"
_SIGNATURES = "SELECT seq, rid, place, sig FROM dedup_sig WHERE seq IN ({})"
T = TypeVar("T")


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


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``itertools.batched`` (Python 3.12), as lists."""
    iterator = iter(items)
    while part := list(islice(iterator, size)):
        yield part


class Deduplicator:
    """``check(id, text, where)`` returns ``(reason, kept_id, detail)`` for a duplicate, else registers the text;
    ``where`` ("row 12") names the kept row in the detail; ``check_many`` does the same for many texts in bulk.
    State lives in ``db`` (in memory by default)."""

    K = 5  # characters per shingle

    def __init__(
        self,
        near: bool = True,
        threshold: float = 0.85,
        num_perm: int = 128,
        db: sqlite3.Connection | None = None,
        memory_pairs: int = MEMORY_PAIRS,
    ) -> None:
        from datasketch import MinHash, MinHashLSH
        from datasketch.minhash import _fmix  # the scheme's pre-mix, as datasketch applies it

        self.near = near
        self.threshold = threshold
        self.num_perm = num_perm
        self.db = db or sqlite3.connect(":memory:")
        self.db.executescript(TABLES)
        self.band_index = BandIndex(self.db, memory_pairs)
        # datasketch picks the bands x rows that suit the threshold; favour recall (candidates are confirmed)
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
        self.bands, self.rows = lsh.b, lsh.r
        self._a, self._b = MinHash(num_perm=num_perm, seed=1, scheme=SCHEME).permutations  # drawn once
        self._fmix = _fmix
        self._crc_zero, self._crc_tables = _crc32_tables(self.K)
        self._band_multipliers = (
            np.random.default_rng(1).integers(1, 2**63, (self.bands, self.rows), dtype=np.uint64) | 1
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

    def _buckets(self, signatures: np.ndarray) -> np.ndarray:
        """LSH buckets, ``(texts, bands)`` int64: a 64-bit hash of each band's rows of the signature (a
        multiply-add hash with multipliers of its own per band, so equal rows in two bands are two buckets). A
        collision only makes a candidate, which the signatures then reject."""
        bands = signatures[:, : self.bands * self.rows].reshape(len(signatures), self.bands, self.rows)
        return (bands.astype(np.uint64) * self._band_multipliers).sum(axis=2, dtype=np.uint64).view(np.int64)

    def check(
        self, rid: str, text: str, where: str | None = None, register: bool = True
    ) -> tuple[str, str, str] | None:
        """The first match of ``text`` (exact, else the most similar near one, the earliest registered on a tie)
        as ``(reason, kept_id, detail)``; registers it when there is none and ``register`` (``register=False``
        only looks)."""
        return next(self.check_many([(rid, text, where)], register))

    def register_all(self, entries: Iterable[tuple[str, str, str | None]]) -> int:
        """``check_many`` for its side effect, every text that is no duplicate of an earlier one registered; returns
        how many texts it was given."""
        return sum(1 for _ in self.check_many(entries))

    def check_many(
        self, entries: Iterable[tuple[str, str, str | None]], register: bool = True, chunk: int = CHUNK
    ) -> Iterator[tuple[str, str, str] | None]:
        """``check`` of each ``(id, text, where)`` in order, each seeing the ones registered before it, ``chunk``
        texts at a time: a few statements and numpy products per chunk instead of several statements per text."""
        for part in batched(entries, chunk):
            yield from self._check_chunk(part, register)

    def _check_chunk(
        self, entries: list[tuple[str, str, str | None]], register: bool
    ) -> list[tuple[str, str, str] | None]:
        texts = [text for _, text, _ in entries]
        digests = [hashlib.sha1(normalize(text).encode()).digest() for text in texts]
        exact = {digest: (rid, place) for digest, rid, place in select_in(self.db, _EXACT, set(digests))}
        if self.near:
            signatures = self.signatures(texts)
            buckets = self._buckets(signatures)
            seqs: dict[int, list[int]] = {}  # bucket -> the texts registered in it
            for bucket, seq in self.band_index.find(set(buckets.ravel().tolist())):
                seqs.setdefault(bucket, []).append(seq)
            kept: dict[int, tuple[str, str, np.ndarray]] = {  # seq -> id, place, signature
                seq: (rid, place, np.frombuffer(sig, dtype=np.uint32))
                for seq, rid, place, sig in select_in(
                    self.db, _SIGNATURES, {seq for found in seqs.values() for seq in found}
                )
            }
            next_seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM dedup_sig").fetchone()[0]
        found: list[tuple[str, str, str] | None] = []
        new_exact, new_sigs, registered = [], [], []
        for i, (rid, _, where) in enumerate(entries):
            place = where or rid
            match = exact.get(digests[i])
            if match is not None:
                found.append(("duplicate_text", match[0], f"same text as {match[1]} (ignoring case and spacing)"))
                continue
            if self.near:
                row = buckets[i].tolist()
                candidates = sorted({seq for bucket in row for seq in seqs.get(bucket, ())})
                if candidates:  # the most similar, the earliest registered on a tie (argmax takes the first)
                    same = np.count_nonzero(np.stack([kept[seq][2] for seq in candidates]) == signatures[i], axis=1)
                    best = int(np.argmax(same))
                    similarity = float(same[best]) / self.num_perm  # MinHash Jaccard
                    if similarity >= self.threshold:
                        kept_rid, kept_place, _ = kept[candidates[best]]
                        found.append(("near_duplicate_text", kept_rid, f"~{similarity:.2f} similar to {kept_place}"))
                        continue
            found.append(None)
            if not register:
                continue
            exact[digests[i]] = (rid, place)
            new_exact.append((digests[i], rid, place))
            if self.near:
                kept[next_seq] = (rid, place, signatures[i])
                new_sigs.append((next_seq, rid, place, signatures[i].tobytes()))
                for bucket in row:
                    seqs.setdefault(bucket, []).append(next_seq)
                registered.append(i)
                next_seq += 1
        self.db.executemany("INSERT INTO dedup_exact VALUES (?, ?, ?)", new_exact)
        self.db.executemany("INSERT INTO dedup_sig VALUES (?, ?, ?, ?)", new_sigs)
        if registered:
            first_seq = new_sigs[0][0]
            seq_of = np.repeat(np.arange(first_seq, first_seq + len(registered), dtype=np.int64), self.bands)
            self.band_index.add(buckets[registered].ravel(), seq_of)
        return found
