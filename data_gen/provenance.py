"""What a manifest or report records to name what made it: a model's or adapter's fingerprint, package versions."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("fin-distill", "openai", "tenacity", "jsonschema", "json-repair", "datasets", "pandas", "datasketch")


def fingerprint(path: str) -> dict[str, Any]:
    """Identity of a model or adapter (a folder or one file): small files hashed, large ones by name and size (a
    15 GB checkpoint is not read to name it); a hub id stays itself."""
    folder = Path(path)
    if not folder.exists():
        return {"id": path}
    digest = hashlib.sha256()
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    for item in files:
        size = item.stat().st_size
        digest.update(f"{item.name if item == folder else item.relative_to(folder)}:{size}".encode())
        if size <= 64 << 20:
            digest.update(item.read_bytes())
    return {"path": str(folder.resolve()), "sha256": digest.hexdigest()}


def versions() -> dict[str, str]:
    """Python's version and those of the packages that shape the data (manifests and eval reports record them)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
