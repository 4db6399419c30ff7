"""Deterministic choices by a hash of the row id, stable across reruns and independent of the file's order: the
train / validation / test split of a row, and whether it is in a ``--sample``."""

from __future__ import annotations

import hashlib

SAMPLE_SALT = "fin-distill-sample"  # not the split salt: a sample must not lean towards one split


def hash_unit(key: str, salt: str) -> float:
    """A number in [0, 1) drawn uniformly from the SHA-256 of ``salt`` and ``key``."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_sample(key: str, fraction: float) -> bool:
    """Whether a row is in the stable sample of ``fraction`` of the rows (a sample of 0.1 is inside one of 0.2)."""
    return hash_unit(key, SAMPLE_SALT) < fraction


def assign_split(row_id: str, fractions: dict[str, float], salt: str = "fin-distill") -> str:
    """The split whose cumulative fraction first exceeds a uniform number drawn from the id's hash."""
    u = hash_unit(row_id, salt)
    total = 0.0
    for name, fraction in fractions.items():
        total += fraction
        if u < total:
            return name
    return next(reversed(fractions))  # rounding: fractions summing to 0.9999999
