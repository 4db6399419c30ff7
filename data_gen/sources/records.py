"""What reading makes of a row: a Record to ask, or a rejection with its reason; and the report of a whole file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from data_gen.reasons import registered


@dataclass(frozen=True)
class Record:
    """One input row. ``row`` is 1-based (the line number for line-based files)."""

    id: str
    text: str
    row: int
    label: Any = None
    extra: dict[str, Any] | None = field(default=None, compare=False)  # the ``extra_columns`` asked for


@dataclass
class Rejected:
    """An input row that will not become an example, and why."""

    row: int
    reason: str
    detail: str
    id: str | None = None

    def __post_init__(self) -> None:
        registered(self.reason)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "row": self.row, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class OtherShard:
    """A row that another ``--shard`` run takes: read only so that duplicate detection sees every row of the
    file, and decides for each row exactly what one process would (never asked, stored or counted here)."""

    record: Record


@dataclass
class SourceReport:
    """What was read: facts for the manifest (filled while streaming), and, from ``read_source``, the rows."""

    format: str = ""
    encoding: str | None = None
    columns: list[str] = field(default_factory=list)
    rows: int = 0  # rows taken (inside the sample, up to the limit): each ends accepted or rejected
    outside_sample: int = 0  # rows that --sample left out (read, never asked)
    outside_shard: int = 0  # rows that belong to the other --shard runs
    notes: list[str] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def text_id(text: str) -> str:
    """A stable id for a row without one: the first 16 hex digits of the SHA-256 of its text."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


def duplicate(row: int, rid: str, first_row: int, by_id: bool) -> Rejected:
    """The rejection of a row whose id (given, or the hash of its text) was already seen at ``first_row``."""
    what = "id" if by_id else "text"
    return Rejected(row, f"duplicate_{what}", f"row {row}: same {what} as row {first_row} ({rid})", rid)
