"""What ``--out`` may be: a new folder, an empty one, or one this tool wrote for the same job (which the run
resumes). Shared by ``data_gen.distill`` and ``eval.run``.

- A file, a folder that cannot be written, or a folder that is not empty and was not written by this tool is
  refused with one line, before anything is created or spent (``check``).
- A folder this tool wrote for another job (another task or input) is refused unless ``--overwrite``; even then
  only the files this tool writes are replaced, and its store of paid answers is kept.
- A run refused after the folder was made (bad gold labels, an unreachable teacher) removes what it created, so
  that no empty folder or empty ``cache.sqlite`` is left behind (``discard``).

The folder's owner is recorded in ``.fin-distill.json`` (tool and job); outputs of earlier versions, which have
no such file, are recognised by their manifest.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_gen.errors import ConfigError, TeacherSetupError

if TYPE_CHECKING:
    from data_gen.client.cache import ResponseCache

MARKER = ".fin-distill.json"
STORE = ("cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm", "cache.sqlite-journal")
# the names each tool writes into its --out (files, glob patterns, folders ending in /)
WRITES: dict[str, tuple[str, ...]] = {
    "data_gen": (
        MARKER, *STORE, "manifest.json", "README.md", "examples.jsonl", "rejects.jsonl", "dataset_info.json",
        "distill.log", ".work.sqlite", ".work.sqlite-journal", "sharegpt_*.jsonl", "alpaca_*.jsonl",
        "kd_*.jsonl", "axolotl_*.yaml", ".*.tmp", "batch/", "shards/",
    ),
    "eval": (
        MARKER, *STORE, "results.json", "predictions.jsonl", "report.md", "*.tmp", "plots/", "servers/",
    ),
}  # fmt: skip
# what a first run that was killed leaves (older versions wrote no marker): a store, a log and scratch only
SCRATCH: dict[str, tuple[str, ...]] = {
    "data_gen": (*STORE, "distill.log", ".work.sqlite", ".work.sqlite-journal", ".*.tmp", "batch/"),
    "eval": (*STORE, "servers/", "*.tmp"),
}
NAMES = {"data_gen": "a data_gen output", "eval": "an eval.run output"}


def _written_by(tool: str, name: str, is_dir: bool, table: dict[str, tuple[str, ...]] = WRITES) -> bool:
    return any(fnmatch.fnmatchcase(name + ("/" if is_dir else ""), p) for p in table[tool])


def _legacy_job(tool: str, folder: Path) -> dict[str, str] | None:
    """The job of an output written before the marker existed, from its manifest (data_gen) or results (eval)."""
    path = folder / ("manifest.json" if tool == "data_gen" else "results.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "task" not in data or not isinstance(data.get("config"), dict):
        return None
    if tool == "data_gen" and "config_hash" in data:
        return {"tool": tool, "task": str(data["task"]), "input": _resolved(data["config"].get("input"))}
    if tool == "eval" and "generation" in data:
        return {"tool": tool, "task": str(data["task"]), "input": _resolved(data["config"].get("data"))}
    return None


def _resolved(path: Any) -> str:
    return str(Path(str(path)).resolve()) if path else ""


def _probe(folder: Path) -> bool:
    """Whether a file can really be created in ``folder`` (permission bits do not tell for root or read-only
    mounts)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".fin-distill-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


@dataclass
class OutputDir:
    """``--out`` of one run of ``tool`` for ``task`` on ``source`` (an input file or folder)."""

    path: Path
    tool: str
    task: str
    source: str | None
    overwrite: bool = False
    existed: bool = False
    before: set[str] = field(default_factory=set)  # names present before this run created anything

    @property
    def job(self) -> dict[str, str]:
        return {"tool": self.tool, "task": self.task, "input": _resolved(self.source)}

    def owner(self) -> dict[str, str] | None:
        """The job recorded in the folder, or None when this tool did not write it."""
        try:
            recorded = json.loads((self.path / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return _legacy_job(self.tool, self.path)
        return recorded if isinstance(recorded, dict) else None

    def check(self) -> None:
        """Refuse, in one line, a ``--out`` this run must not write to. Creates nothing."""
        path, flag = self.path, f"--out {self.path}"
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{flag} is a file, not a folder: choose a folder (it is created if missing)")
        if not path.exists():
            parent = next((p for p in path.absolute().parents if p.exists()), None)
            if parent is None or not parent.is_dir() or not _probe(parent):
                raise ConfigError(f"{flag} cannot be created: {parent} is not a folder this user can write to")
            return
        if not _probe(path):
            raise ConfigError(f"{flag} is not writable: choose a folder this user can write to")
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        if not entries:
            return
        owner = self.owner()
        if owner is None or owner.get("tool") != self.tool:
            if owner is None and all(_written_by(self.tool, e.rstrip("/"), e.endswith("/"), SCRATCH) for e in entries):
                return  # only this tool's store and scratch (a first run that was killed): resume it
            what = NAMES[owner["tool"]] if owner and owner.get("tool") in NAMES else f"not {NAMES[self.tool]}"
            shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
            raise ConfigError(
                f"{flag} is not empty and is {what} (it holds {shown}): choose a new or empty folder; "
                "files this tool did not write are never overwritten"
            )
        same = owner.get("task") == self.task and (not self.source or owner.get("input") in ("", self.job["input"]))
        if not same and not self.overwrite:
            raise ConfigError(
                f"{flag} holds {NAMES[self.tool]} of task {owner.get('task')!r} from {owner.get('input') or '?'}, "
                f"not of task {self.task!r} from {self.job['input'] or '?'}: choose another folder, or pass "
                "--overwrite to replace its files (its stored answers are kept)"
            )

    def create(self) -> None:
        """Make the folder (if needed) and record this run's job in it."""
        self.existed = self.path.is_dir()
        self.before = {p.name for p in self.path.iterdir()} if self.existed else set()
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / MARKER).write_text(json.dumps(self.job, indent=1) + "\n", encoding="utf-8")

    @contextlib.contextmanager
    def run(self, store: bool) -> Iterator[ResponseCache | None]:
        """Create the folder and open its store (``cache.sqlite``, when ``store``) for one run. A run refused on the
        way (ConfigError, TeacherSetupError) before it stored or paid for anything removes what it created."""
        from data_gen.client.cache import ResponseCache

        self.create()
        cache = ResponseCache(self.path / "cache.sqlite") if store else None
        try:
            yield cache
        except (ConfigError, TeacherSetupError):
            if cache is None or (len(cache) == 0 and cache.spent(cache.run).calls == 0):
                if cache is not None:
                    cache.close()
                    cache = None
                self.discard()
            raise
        finally:
            if cache is not None:
                cache.close()

    def discard(self) -> None:
        """After a run refused before it spent anything: remove what it created (never a file that was there)."""
        if not self.path.is_dir():
            return
        for item in self.path.iterdir():
            if item.name in self.before or not _written_by(self.tool, item.name, item.is_dir()):
                continue
            with contextlib.suppress(OSError):
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        if not self.existed:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only when empty


def recorded_files(folder: Path) -> set[str]:
    """Training files and snippets the last data_gen run recorded in ``folder``'s manifest: the only files a new run
    may remove as stale (another format or split); a file the manifest does not name is never removed."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(manifest, dict):
        return set()
    formats = (manifest.get("config") or {}).get("formats") or []
    return set(manifest.get("files") or {}) | {f"axolotl_{fmt}.yaml" for fmt in [*formats, "kd"]}
