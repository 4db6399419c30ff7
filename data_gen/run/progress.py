"""A ``--workers`` child's progress, for its parent's one bar: the rows each pass of this process has done and has
to do, written (at most twice a second) to the file that ``PROGRESS_ENV`` names; nothing when run on its own."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import ClassVar

from data_gen.writers.atomic import atomic_write_text

PROGRESS_ENV = "FIN_DISTILL_PROGRESS_FILE"


class ProgressFile:
    """One pass's progress (``ask``, ``score``); the file holds the sums over this process's passes."""

    passes: ClassVar[dict[str, tuple[int, int]]] = {}  # every pass of this process: (done, to do)

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = Path(os.environ[PROGRESS_ENV]) if os.environ.get(PROGRESS_ENV) else None
        self.last = 0.0

    def update(self, done: int, total: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.path is None or not (final or now - self.last >= 0.5):
            return
        self.last = now
        self.passes[self.name] = (done, total)
        summed = [sum(values) for values in zip(*self.passes.values(), strict=True)]
        atomic_write_text(self.path, json.dumps({"done": summed[0], "total": summed[1]}))
