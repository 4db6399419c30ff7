"""Input files -> Records, streamed: memory stays flat however large the input is.

Every row ends as a Record or a rejection with a reason; whole-file problems raise InputError with one line that
names the file (and the row, column or byte) before anything is spent.

Formats: CSV, TSV, JSONL, JSON, Parquet, a directory written by ``datasets.save_to_disk``, Financial PhraseBank
``sentence@label`` text files, and plain text with one item per line.
"""

from __future__ import annotations

import codecs
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
CHUNK_ROWS = 10_000  # rows per chunk read from tabular files
SCAN_BYTES = 1 << 20  # bytes per chunk when checking an encoding


class InputError(ConfigError):
    """The input cannot be read at all (missing file, unknown format, missing column, ...)."""


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

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "row": self.row, "reason": self.reason, "detail": self.detail}


@dataclass
class SourceReport:
    """What was read: facts for the manifest (filled while streaming), and, from ``read_source``, the rows."""

    format: str = ""
    encoding: str | None = None
    columns: list[str] = field(default_factory=list)
    rows: int = 0
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


def detect_format(path: Path) -> str:
    """A directory is a saved ``datasets`` dataset; files go by extension; a ``.txt`` file whose lines end in
    ``@positive|@negative|@neutral`` is Financial PhraseBank."""
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
        labelled = sum(line.rsplit(b"@", 1)[-1].decode("latin-1").lower() in FPB_LABELS for line in head)
        if head and labelled >= 0.8 * len(head):
            return "fpb"
    return fmt


def check_encoding(path: Path, encoding: str, strict: bool) -> tuple[str, str | None]:
    """Which encoding to read ``path`` with, scanning it in chunks. ``auto``: UTF-8 (BOM allowed) when the whole
    file decodes, else Latin-1 with a note saying so. A named encoding is used as is; with ``strict`` (tabular
    files, which cannot lose one row) a byte it cannot decode is an error naming the offset and line, while line
    formats reject just the lines that do not decode."""
    named = encoding != "auto"
    try:
        decoder = codecs.getincrementaldecoder(encoding if named else "utf-8")()
    except LookupError:
        raise InputError(f"unknown --encoding {encoding!r}") from None
    if named and not strict:
        return encoding, None
    offset = line = 0
    with path.open("rb") as handle:
        while chunk := handle.read(SCAN_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad_line = line + chunk[: exc.start].count(b"\n") + 1
                if named:
                    raise InputError(
                        f"{path}: cannot decode byte 0x{chunk[exc.start]:02x} at offset {offset + exc.start} "
                        f"(line {bad_line}) as {encoding}; try --encoding latin-1 or --encoding auto"
                    ) from None
                return "latin-1", f"{path} is not valid UTF-8 (first bad byte at line {bad_line}); decoded as Latin-1"
            offset += len(chunk)
            line += chunk.count(b"\n")
    return (encoding, None) if named else ("utf-8-sig", None)


class Source:
    """A streamed input: iterate it for ``Record`` | ``Rejected``; ``report`` fills in as it goes."""

    def __init__(
        self,
        path: str | Path,
        fmt: str = "auto",
        text_column: str = "text",
        id_column: str | None = None,
        label_column: str | None = None,
        encoding: str = "auto",
        hf_split: str | None = None,
        max_chars: int = 20_000,
        limit: int | None = None,
        extra_columns: tuple[str, ...] = (),
    ) -> None:
        self.path = Path(path)
        self.extra_columns = extra_columns
        if not self.path.exists():
            raise InputError(f"input not found: {self.path}")
        self.format = detect_format(self.path) if fmt == "auto" else fmt
        if self.format not in {*FORMAT_BY_SUFFIX.values(), "hf", "fpb"}:
            raise InputError(f"unknown --input-format {self.format!r}")
        self.text_column, self.id_column, self.label_column = text_column, id_column, label_column
        self.encoding, self.hf_split, self.max_chars, self.limit = encoding, hf_split, max_chars, limit
        self.report = SourceReport(format=self.format)

    def __iter__(self) -> Iterator[Record | Rejected]:
        report = self.report
        report.rows = 0
        encoding = "utf-8"
        if self.format not in ("hf", "parquet"):  # binary formats carry their own encoding
            encoding, note = check_encoding(self.path, self.encoding, strict=self.format in ("csv", "tsv", "json"))
            report.encoding = "utf-8" if encoding == "utf-8-sig" else encoding
            report.notes = [note] if note else []
        line_format = self.format in ("fpb", "txt", "jsonl")
        rows = self._line_rows(encoding) if line_format else self._table_rows(encoding)
        text_key = "text" if self.format in ("fpb", "txt") else self.text_column
        for row, values in rows:
            if self.limit is not None and report.rows >= self.limit:
                break
            report.rows += 1
            if isinstance(values, Rejected):
                yield values
                continue
            raw_text = values.get(text_key)
            text = "" if raw_text is None or (isinstance(raw_text, float) and raw_text != raw_text) else str(raw_text)
            text = text.strip()
            given = values.get(self.id_column) if self.id_column else None
            rid = str(given).strip() if given not in (None, "") else (text_id(text) if text else None)
            if not text:
                yield Rejected(row, "empty_text", f"row {row}: the {text_key!r} field is empty", rid)
            elif len(text) > self.max_chars:
                detail = f"row {row}: {len(text):,} characters (limit --max-chars {self.max_chars:,})"
                yield Rejected(row, "text_too_long", detail, rid)
            else:
                label = values.get("label") if self.format == "fpb" else values.get(self.label_column or "")
                yield Record(
                    id=rid,
                    text=text,
                    row=row,
                    label=label if self.label_column or self.format == "fpb" else None,
                    extra={c: values.get(c) for c in self.extra_columns} if self.extra_columns else None,
                )
        self._check_columns(final=True)

    def _check_columns(self, final: bool = False) -> None:
        """A mapped column that the file does not have is an error that lists the columns it does have."""
        if self.format in ("fpb", "txt") or (not self.report.columns and not final):
            return
        present = set(self.report.columns)
        roles = [("text", self.text_column), ("id", self.id_column), ("label", self.label_column)]
        for role, column in roles + [("extra", c) for c in self.extra_columns]:
            if column and column not in present and (self.report.columns or self.report.rows):
                shown = ", ".join(self.report.columns) or "(none)"
                raise InputError(f"{self.path}: no {role} column {column!r}; the columns are: {shown}")

    # ---------------- line formats: one bad line costs one row, not the file ----------------
    def _line_rows(self, encoding: str) -> Iterator[tuple[int, Any]]:
        keys: dict[str, None] = {}
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                raw = raw.rstrip(b"\r\n")
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    detail = f"line {number}: byte 0x{raw[exc.start]:02x} is not valid {encoding}"
                    yield number, Rejected(number, "undecodable_text", detail)
                    continue
                if not line.strip():
                    continue
                if self.format == "txt":
                    yield number, {"text": line}
                elif self.format == "fpb":
                    sentence, sep, label = line.rpartition("@")
                    if sep and label.strip().lower() in FPB_LABELS:
                        yield number, {"text": sentence, "label": label.strip().lower()}
                    else:
                        detail = (
                            f"line {number}: expected 'sentence@label' with a label in {'/'.join(FPB_LABELS)}, "
                            f"got {line[-40:]!r}"
                        )
                        yield number, Rejected(number, "malformed_input", detail)
                else:
                    value, problem = _json_object(line)
                    if problem:
                        yield number, Rejected(number, "malformed_input", f"line {number}: {problem}")
                        continue
                    if len(keys) < 1000:  # the keys seen, for the "no such column" message
                        keys.update(dict.fromkeys(value))
                        self.report.columns = list(keys)
                    yield number, value

    # ---------------- tabular formats: chunks of rows through pandas / pyarrow / datasets ----------------
    def _table_rows(self, encoding: str) -> Iterator[tuple[int, dict[str, Any]]]:
        row = 0
        for chunk in self._chunks(encoding):
            if not self.report.columns:
                self.report.columns = [str(c) for c in chunk.columns]
                self._check_columns()
            for values in chunk.to_dict(orient="records"):
                row += 1
                yield row, {str(k): v for k, v in values.items()}
            if self.limit is not None and row >= self.limit:
                return

    def _chunks(self, encoding: str) -> Iterator[Any]:
        import pandas as pd

        path = self.path
        if self.format in ("csv", "tsv"):
            sep = "\t" if self.format == "tsv" else ","
            try:
                with path.open("r", encoding=encoding, newline="") as handle:
                    yield from pd.read_csv(
                        handle, sep=sep, dtype=str, keep_default_na=False, na_filter=False, chunksize=CHUNK_ROWS
                    )
            except pd.errors.EmptyDataError:
                raise InputError(f"{path}: the file is empty") from None
            except pd.errors.ParserError as exc:
                raise InputError(f"{path}: malformed {self.format.upper()}: {exc}".strip()) from None
        elif self.format == "parquet":
            import pyarrow.parquet as pq

            try:
                parquet = pq.ParquetFile(path)
            except Exception as exc:
                raise InputError(f"{path}: not a readable Parquet file ({exc})".splitlines()[0]) from None
            for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
                yield batch.to_pandas()
        elif self.format == "hf":
            dataset = _load_hf(path, self.hf_split)
            for start in range(0, len(dataset), CHUNK_ROWS):
                yield dataset.select(range(start, min(start + CHUNK_ROWS, len(dataset)))).to_pandas()
        else:  # a JSON array is one document: it is read whole (use JSONL for very large inputs)
            yield _read_json_array(path, encoding)


def _json_object(line: str) -> tuple[dict[str, Any], str | None]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return {}, f"not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(value, dict):
        return {}, f"expected a JSON object, got {type(value).__name__}"
    return value, None


def _read_json_array(path: Path, encoding: str):
    import pandas as pd

    try:
        value = json.loads(path.read_text(encoding=encoding))
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
    if not value:
        raise InputError(f"{path}: the file is empty")
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
    return loaded


def read_source(path: str | Path, **options: Any) -> SourceReport:
    """Read a (small) input whole: records and rejections in lists, duplicates of an id rejected.

    The distillation pipeline streams with ``Source`` instead and checks duplicates on disk."""
    source = Source(path, **options)
    report = source.report
    first_row: dict[str, int] = {}
    for item in source:
        if isinstance(item, Rejected):
            report.rejected.append(item)
        elif item.id in first_row:
            report.rejected.append(duplicate(item.row, item.id, first_row[item.id], bool(source.id_column)))
        else:
            first_row[item.id] = item.row
            report.records.append(item)
    return report


def is_distilled(path: str | Path) -> bool:
    """A directory written by ``data_gen.distill``."""
    path = Path(path)
    return path.is_dir() and (path / "manifest.json").is_file() and (path / "examples.jsonl").is_file()


def texts_of(path: str | Path, text_column: str, splits: tuple[str, ...]) -> Iterator[tuple[str, str, str]]:
    """(id, text, where) of every text of a data set: the ``splits`` of a data_gen output directory, or a file."""
    if is_distilled(path):
        source = Source(Path(path) / "examples.jsonl", "jsonl", "text", "id", extra_columns=("split",))
        for item in source:
            if isinstance(item, Record) and (item.extra or {}).get("split") in splits:
                yield item.id, item.text, f"{path} {item.extra['split']} example {item.id}"  # type: ignore[index]
        return
    for item in Source(path, "auto", text_column):
        if isinstance(item, Record):
            yield item.id, item.text, f"{path} row {item.row}"
