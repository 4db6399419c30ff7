"""Input files -> Records. Every row ends as a Record or a rejection with a reason; whole-file problems raise
InputError with one line that names the file (and the row, column or byte) before anything is spent.

Formats: CSV, TSV, JSONL, JSON, Parquet, a directory written by ``datasets.save_to_disk``, Financial PhraseBank
``sentence@label`` text files, and plain text with one item per line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_gen.config import ConfigError

FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
}
FPB_LABELS = ("positive", "negative", "neutral")


class InputError(ConfigError):
    """The input cannot be read at all (missing file, unknown format, missing column, ...)."""


@dataclass(frozen=True)
class Record:
    """One input row. ``row`` is 1-based (the line number for line-based files)."""

    id: str
    text: str
    row: int
    label: Any = None


@dataclass
class Rejected:
    """An input row that will not become an example, and why."""

    row: int
    reason: str
    detail: str
    id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "row": self.row, "reason": self.reason, "detail": self.detail}


@dataclass
class SourceReport:
    """What was read: records, per-row rejections, and facts for the manifest."""

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    format: str = ""
    encoding: str | None = None
    columns: list[str] = field(default_factory=list)
    rows: int = 0
    notes: list[str] = field(default_factory=list)


def text_id(text: str) -> str:
    """A stable id for a row without one: the first 16 hex digits of the SHA-256 of its text."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


def detect_format(path: Path) -> str:
    """Pick the format from the path: a directory is a saved ``datasets`` dataset; files go by extension;
    a ``.txt`` file whose lines end in ``@positive|@negative|@neutral`` is Financial PhraseBank."""
    if path.is_dir():
        if any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json", "state.json")):
            return "hf"
        raise InputError(f"{path}: a directory, but not one saved by datasets.save_to_disk (no dataset_info.json)")
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMAT_BY_SUFFIX))
        raise InputError(
            f"{path}: unknown input format {path.suffix or '(no extension)'!r}; "
            f"use one of {known} or pass --input-format"
        )
    if fmt == "txt":
        with path.open("rb") as handle:
            head = [line.strip() for _, line in zip(range(50), handle, strict=False) if line.strip()]
        if head and sum(line.rsplit(b"@", 1)[-1].decode("latin-1").lower() in FPB_LABELS for line in head) >= 0.8 * len(
            head
        ):
            return "fpb"
    return fmt


def decode(data: bytes, encoding: str, where: str) -> tuple[str, str, str | None]:
    """Decode bytes; ``auto`` tries UTF-8 (BOM allowed) and falls back to Latin-1, saying so.
    Returns (text, encoding used, note or None)."""
    if encoding != "auto":
        try:
            return data.decode(encoding), encoding, None
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise InputError(
                f"{where}: cannot decode byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}) "
                f"as {encoding}; try --encoding latin-1 or --encoding auto"
            ) from None
        except LookupError:
            raise InputError(f"unknown --encoding {encoding!r}") from None
    try:
        return data.decode("utf-8-sig"), "utf-8", None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        note = f"{where} is not valid UTF-8 (first bad byte at line {line}); decoded as Latin-1"
        return data.decode("latin-1"), "latin-1", note


def read_source(
    path: str | Path,
    fmt: str = "auto",
    text_column: str = "text",
    id_column: str | None = None,
    label_column: str | None = None,
    encoding: str = "auto",
    hf_split: str | None = None,
    max_chars: int = 20_000,
    limit: int | None = None,
) -> SourceReport:
    """Read an input into Records. Per-row problems become rejections; whole-file problems raise InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    report = SourceReport(format=fmt)
    if fmt in ("fpb", "txt", "jsonl"):
        rows = _line_rows(path, fmt, encoding, report)
    else:
        rows = _table_rows(path, fmt, encoding, hf_split, report)
    columns = set(report.columns)
    if fmt not in ("fpb", "txt"):
        for role, column in (("text", text_column), ("id", id_column), ("label", label_column)):
            if column and report.columns and column not in columns:
                raise InputError(f"{path}: no {role} column {column!r}; the columns are: {', '.join(report.columns)}")

    seen_ids: dict[str, int] = {}
    for row, values in rows:
        if limit is not None and report.rows >= limit:
            break
        report.rows += 1
        if isinstance(values, Rejected):
            report.rejected.append(values)
            continue
        raw_text = values.get(text_column) if fmt not in ("fpb", "txt") else values["text"]
        text = "" if raw_text is None or (isinstance(raw_text, float) and raw_text != raw_text) else str(raw_text)
        text = text.strip()
        given_id = values.get(id_column) if id_column else None
        rid = str(given_id).strip() if given_id not in (None, "") else (text_id(text) if text else None)
        if not text:
            report.rejected.append(Rejected(row, "empty_text", f"row {row}: the {text_column!r} field is empty", rid))
            continue
        if len(text) > max_chars:
            report.rejected.append(
                Rejected(
                    row, "text_too_long", f"row {row}: {len(text):,} characters (limit --max-chars {max_chars:,})", rid
                )
            )
            continue
        if rid in seen_ids:
            reason = "duplicate_id" if id_column else "duplicate_text"
            report.rejected.append(
                Rejected(
                    row, reason, f"row {row}: same {'id' if id_column else 'text'} as row {seen_ids[rid]} ({rid})", rid
                )
            )
            continue
        seen_ids[rid] = row
        label = values.get("label") if fmt == "fpb" else (values.get(label_column) if label_column else None)
        report.records.append(Record(id=rid, text=text, row=row, label=label))
    return report


def _line_rows(path: Path, fmt: str, encoding: str, report: SourceReport) -> Iterator[tuple[int, Any]]:
    """Line-based formats, decoded line by line so that one bad line costs one row, not the file."""
    data = path.read_bytes()
    _, used, note = decode(data, encoding, str(path)) if encoding == "auto" else ("", encoding, None)
    report.encoding = used
    if note:
        report.notes.append(note)
    keys: dict[str, None] = {}
    lines = data.split(b"\n")
    if lines and lines[-1].strip() == b"":
        lines.pop()
    for number, raw in enumerate(lines, 1):
        raw = raw.rstrip(b"\r")
        try:
            line = raw.decode("utf-8-sig" if used == "utf-8" else used)
        except UnicodeDecodeError as exc:
            yield (
                number,
                Rejected(number, "undecodable_text", f"line {number}: byte 0x{raw[exc.start]:02x} is not valid {used}"),
            )
            continue
        if fmt == "txt":
            if line.strip():
                yield number, {"text": line}
            continue
        if fmt == "fpb":
            if not line.strip():
                continue
            sentence, sep, label = line.rpartition("@")
            if not sep or label.strip().lower() not in FPB_LABELS:
                yield (
                    number,
                    Rejected(
                        number,
                        "malformed_input",
                        f"line {number}: expected 'sentence@label' with a "
                        f"label in {'/'.join(FPB_LABELS)}, got {line[-40:]!r}",
                    ),
                )
            else:
                yield number, {"text": sentence, "label": label.strip().lower()}
            continue
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield (
                number,
                Rejected(number, "malformed_input", f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})"),
            )
            continue
        if not isinstance(value, dict):
            yield (
                number,
                Rejected(
                    number, "malformed_input", f"line {number}: expected a JSON object, got {type(value).__name__}"
                ),
            )
            continue
        keys.update(dict.fromkeys(value))
        report.columns = list(keys)
        yield number, value


def _table_rows(
    path: Path, fmt: str, encoding: str, hf_split: str | None, report: SourceReport
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Tabular formats through pandas / datasets; row numbers are 1-based data rows (the header is not a row)."""
    if fmt == "hf":
        table = _load_hf(path, hf_split)
    elif fmt == "parquet":
        import pandas as pd

        try:
            table = pd.read_parquet(path)
        except Exception as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})".splitlines()[0]) from None
    elif fmt in ("csv", "tsv"):
        table = _read_delimited(path, "\t" if fmt == "tsv" else ",", encoding, report)
    elif fmt == "json":
        table = _read_json_array(path, encoding, report)
    else:
        raise InputError(f"unknown --input-format {fmt!r}")
    report.columns = [str(c) for c in table.columns]
    records = table.to_dict(orient="records")
    return ((i, {str(k): v for k, v in values.items()}) for i, values in enumerate(records, 1))


def _read_delimited(path: Path, sep: str, encoding: str, report: SourceReport):
    import io

    import pandas as pd

    text, used, note = decode(path.read_bytes(), encoding, str(path))
    report.encoding = used
    if note:
        report.notes.append(note)
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: malformed {'TSV' if sep == chr(9) else 'CSV'}: {exc}".strip()) from None


def _read_json_array(path: Path, encoding: str, report: SourceReport):
    import pandas as pd

    text, used, note = decode(path.read_bytes(), encoding, str(path))
    report.encoding = used
    if note:
        report.notes.append(note)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "for one object per line use a .jsonl file or --input-format jsonl"
        ) from None
    if isinstance(value, dict):  # {"data": [...]} or a column-oriented mapping
        lists = {k: v for k, v in value.items() if isinstance(v, list)}
        if len(lists) == 1 and all(isinstance(x, dict) for x in next(iter(lists.values()))):
            value = next(iter(lists.values()))
        elif lists and len({len(v) for v in lists.values()}) == 1:
            return pd.DataFrame(lists)
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise InputError(f"{path}: expected a JSON array of objects (one per row)")
    return pd.DataFrame.from_records(value)


def _load_hf(path: Path, split: str | None):
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise InputError(f"{path}: cannot load the saved dataset ({exc})".splitlines()[0]) from None
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if split is None:
            if len(names) != 1:
                raise InputError(f"{path}: a DatasetDict with splits {', '.join(names)}; choose one with --hf-split")
            split = names[0]
        if split not in loaded:
            raise InputError(f"{path}: no split {split!r}; the splits are: {', '.join(names)}")
        loaded = loaded[split]
    return loaded.to_pandas()
