"""Deterministic choices by a hash of the row id, stable across reruns and independent of the file's order: the
train / validation / test split of a row, whether it is in a ``--sample``, and which ``--shard`` takes it. Each
choice has its own salt, so none leans on another: a sample keeps every split in proportion, and a row's split
does not depend on the number of shards."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

SAMPLE_SALT = "fin-distill-sample"  # not the split salt: a sample must not lean towards one split
SHARD_SALT = "fin-distill-shard"


def hash_unit(key: str, salt: str) -> float:
    """A number in [0, 1) drawn uniformly from the SHA-256 of ``salt`` and ``key``."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_sample(key: str, fraction: float) -> bool:
    """Whether a row is in the stable sample of ``fraction`` of the rows (a sample of 0.1 is inside one of 0.2)."""
    return hash_unit(key, SAMPLE_SALT) < fraction


def shard_of(key: str, shards: int) -> int:
    """The shard (1 to ``shards``) that takes a row: every row exactly one, about equally many each."""
    return min(int(hash_unit(key, SHARD_SALT) * shards), shards - 1) + 1


def parse_shard(text: str, env: Mapping[str, str]) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N), or ``slurm``: this task of a Slurm array job (``SLURM_ARRAY_TASK_ID`` counted from
    ``SLURM_ARRAY_TASK_MIN``, of ``SLURM_ARRAY_TASK_COUNT``). ValueError with the reason otherwise."""
    if text == "slurm":
        try:
            task, first, count = (int(env[name]) for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN",
                                                                "SLURM_ARRAY_TASK_COUNT"))  # fmt: skip
        except (KeyError, ValueError):
            raise ValueError("--shard slurm needs SLURM_ARRAY_TASK_ID, _MIN and _COUNT (run it in an array job, "
                             "sbatch --array=1-N)") from None  # fmt: skip
        k, n = task - first + 1, count
    else:
        k_text, sep, n_text = text.partition("/")
        if not (sep and k_text.isdigit() and n_text.isdigit()):
            raise ValueError(f"--shard takes K/N (e.g. 2/8) or slurm, got {text!r}")
        k, n = int(k_text), int(n_text)
    if not 1 <= k <= n:
        raise ValueError(f"--shard {k}/{n}: K must be between 1 and N")
    return k, n


def assign_split(row_id: str, fractions: dict[str, float], salt: str = "fin-distill") -> str:
    """The split whose cumulative fraction first exceeds a uniform number drawn from the id's hash."""
    u = hash_unit(row_id, salt)
    total = 0.0
    for name, fraction in fractions.items():
        total += fraction
        if u < total:
            return name
    return next(reversed(fractions))  # rounding: fractions summing to 0.9999999
