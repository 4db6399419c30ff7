"""Files that appear whole or not at all: written under a unique temporary name in the target folder, fsync'd,
then renamed over the target (several files together with ``AtomicFiles``). data_gen and eval write through it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})
_UMASK = os.umask(0)
os.umask(_UMASK)


class AtomicFiles:
    """Files written under temporary names and renamed into place together on success (fsync'd first); on an
    error, or a crash, the temporary files are dropped and the previous files stay whole."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._open: dict[str, tuple[Any, str]] = {}

    def open(self, name: str, errors: str = "strict") -> Any:
        if name not in self._open:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.folder)
            self._open[name] = (os.fdopen(fd, "w", encoding="utf-8", errors=errors), tmp)
        return self._open[name][0]

    @property
    def names(self) -> set[str]:
        """The files opened so far (renamed into place on commit)."""
        return set(self._open)

    def __enter__(self) -> AtomicFiles:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()

    def commit(self) -> None:
        for handle, _ in self._open.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        for name, (_, tmp) in self._open.items():
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
            os.replace(tmp, self.folder / name)
        self._open.clear()

    def abort(self) -> None:
        for handle, tmp in self._open.values():
            handle.close()
            Path(tmp).unlink(missing_ok=True)
        self._open.clear()


def atomic_write_text(path: Path, text: str, errors: str = "strict") -> None:
    """Write to a temporary file in the same directory, fsync, then rename over the target; ``errors`` as for
    ``open`` ("backslashreplace" keeps a model's lone surrogate visible instead of failing)."""
    with AtomicFiles(path.parent) as files:
        files.open(path.name, errors).write(text)


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def jsonl_line(row: dict[str, Any]) -> str:
    """One JSON line; characters that some readers take for line breaks (U+2028, U+2029, U+0085) are escaped, and
    so is a lone surrogate (a model's broken output), which a UTF-8 file cannot hold."""
    line = json.dumps(row, ensure_ascii=False).translate(_LINE_BREAKS)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(row)
    return line
