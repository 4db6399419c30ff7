"""Deterministic train / validation / test assignment by a hash of the row id (stable across reruns)."""

from __future__ import annotations

import hashlib


def assign_split(row_id: str, fractions: dict[str, float], salt: str = "fin-distill") -> str:
    """The split whose cumulative fraction first exceeds a uniform number drawn from the id's hash."""
    digest = hashlib.sha256(f"{salt}\x00{row_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    total = 0.0
    for name, fraction in fractions.items():
        total += fraction
        if u < total:
            return name
    return next(reversed(fractions))  # rounding: fractions summing to 0.9999999
