"""Exact and near-duplicate detection over texts, in input order (the first occurrence is kept).

Exact: the same text after case-folding and whitespace collapsing. Near: MinHash over character 5-grams with an
LSH index (``datasketch``), confirmed by the estimated Jaccard similarity. Used before any teacher call, so
duplicates cost nothing.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

_PUNCT = re.compile(r"[^\w\s]")
SCHEME = "affine32"  # datasketch's default permutation scheme since 2.0


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
    ``where`` ("row 12") names the kept row in the detail."""

    def __init__(self, near: bool = True, threshold: float = 0.85, num_perm: int = 128) -> None:
        self.near = near
        self.threshold = threshold
        self.num_perm = num_perm
        self._exact: dict[str, str] = {}
        self._hashes: dict[str, Any] = {}
        self._where: dict[str, str] = {}
        self._permutations: Any = None
        self._lsh: Any = None

    def _minhash(self, text: str) -> Any:
        from datasketch import MinHash

        if self._permutations is None:  # drawing them is the slow part of a MinHash: do it once
            self._permutations = MinHash(num_perm=self.num_perm, seed=1, scheme=SCHEME).permutations
        m = MinHash(num_perm=self.num_perm, seed=1, permutations=self._permutations, scheme=SCHEME)
        m.update_batch(list(shingles(text)))
        return m

    def check(self, rid: str, text: str, where: str | None = None) -> tuple[str, str, str] | None:
        digest = hashlib.sha1(normalize(text).encode()).hexdigest()
        if digest in self._exact:
            kept = self._exact[digest]
            return "duplicate_text", kept, f"same text as {self._where[kept]} (ignoring case and spacing)"
        if self.near:
            if self._lsh is None:
                from datasketch import MinHashLSH

                # favour recall: every candidate is confirmed by its estimated Jaccard similarity below
                self._lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm, weights=(0.1, 0.9))
            m = self._minhash(text)
            best = max(((self._hashes[c].jaccard(m), c) for c in self._lsh.query(m)), default=None)
            if best is not None and best[0] >= self.threshold:
                return "near_duplicate_text", best[1], f"~{best[0]:.2f} similar to {self._where[best[1]]}"
            self._lsh.insert(rid, m)
            self._hashes[rid] = m
        self._exact[digest] = rid
        self._where[rid] = where or rid
        return None
