"""``--workers N``: the same command as N ``--shard K/N`` processes on this machine, each into
``<out>/shards/K-of-N`` (each resumable on its own, with its own cache), one progress bar over all of them, then
``data_gen.merge`` into ``<out>``. For work that is CPU-bound in one process: the rules teacher, KD scoring.

Each child writes its rows done and to do to a small file (``progress.py``); the parent adds them up for its bar.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from data_gen.errors import EXIT_BUDGET
from data_gen.run.config import DistillConfig
from data_gen.run.merge import merge
from data_gen.run.progress import PROGRESS_ENV
from data_gen.writers.outdir import OutputDir


class ShardFailed(RuntimeError):
    """A shard process that did not finish; ``code`` is its exit status (4: stopped by its share of the budget)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def shard_dirs(out: Path, workers: int) -> list[Path]:
    return [out / "shards" / f"{k}-of-{workers}" for k in range(1, workers + 1)]


def run_workers(config: DistillConfig, argv: list[str]) -> dict[str, Any]:
    """Run ``argv`` (a ``data_gen.distill`` command line) as ``config.workers`` shards, then merge them into
    ``config.out``; returns the merged manifest. A shard that fails or is stopped by its budget share stops the
    merge (the others' work is kept in their folders: the same command resumes them)."""
    from tqdm import tqdm

    assert config.out is not None
    n, out = config.workers, Path(config.out)
    folder = OutputDir(out, "data_gen", config.task, config.input, config.overwrite)
    folder.check()
    folder.create()
    dirs = shard_dirs(out, n)
    dirs[0].parent.mkdir(exist_ok=True)
    children = []
    for k, shard in enumerate(dirs, 1):
        progress = shard.parent / f".{k}-of-{n}.progress"
        progress.unlink(missing_ok=True)
        command = [sys.executable, "-m", "data_gen.distill", *argv,
                   "--workers", "1", "--shard", f"{k}/{n}", "--out", str(shard), "--no-progress"]  # fmt: skip
        log = (shard.parent / f"{k}-of-{n}.log").open("w", encoding="utf-8")
        env = {**os.environ, PROGRESS_ENV: str(progress)}
        children.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), progress, log))
    bar = tqdm(total=0, unit="row", desc=f"distill {config.task} ({n} workers)", disable=not config.progress,
               dynamic_ncols=True, file=sys.stderr)  # fmt: skip
    try:
        while any(child.poll() is None for child, _, _ in children):
            _show(bar, [progress for _, progress, _ in children])
            time.sleep(0.2)
        _show(bar, [progress for _, progress, _ in children])
    except KeyboardInterrupt:  # a terminal's Ctrl-C reached the children too; a signal to the parent alone did not
        deadline = time.monotonic() + 2
        for child, _, _ in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)  # each keeps what it was paid for and says so in its log
        for child, _, _ in children:
            child.wait()
        raise
    finally:
        bar.close()
        for _, progress, log in children:
            log.close()
            progress.unlink(missing_ok=True)
    for k, (child, _, log) in enumerate(children, 1):
        if child.returncode == 0:
            continue
        with open(log.name, encoding="utf-8") as written:
            tail = "".join(deque(written, maxlen=3)).strip()
        what = "was stopped by its share of the budget" if child.returncode == EXIT_BUDGET else "failed"
        raise ShardFailed(f"shard {k}/{n} {what} (exit {child.returncode}; its log: {log.name}): {tail}; the "
                          "other shards' work is kept: rerun the same command to resume", child.returncode)  # fmt: skip
    return merge(dirs, out, overwrite=config.overwrite, argv=["python", "-m", "data_gen.distill", *argv])


def _show(bar: Any, files: list[Path]) -> None:
    done = total = 0
    for path in files:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not written yet (the child is still reading its input)
        done, total = done + state["done"], total + state["total"]
    if total != bar.total:
        bar.total = total
        bar.refresh()
    if done != bar.n:
        bar.update(done - bar.n)
