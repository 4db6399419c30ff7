"""What scripts/get_model.py and scripts/get_llamacpp.py share: a one-line failure and a file's sha256 (standard
library only: both run with any Python 3, before an environment exists)."""

from __future__ import annotations

import hashlib
from pathlib import Path


class Failure(RuntimeError):
    """One line for the user; the script exits with status 2."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
