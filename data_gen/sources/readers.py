"""Input files -> Records, streamed: memory stays flat however large the input is.

Every row ends as a Record or a rejection with a reason; whole-file problems raise InputError with one line that
names the file (and the row, column or byte) before anything is spent.

Formats: CSV, TSV, JSONL, JSON, Parquet, a directory written by ``datasets.save_to_disk`` (the tabular ones read in
chunks by ``tables.py``), Financial PhraseBank ``sentence@label`` text files, and plain text with one item per line.

Text rules (the same for distillation and evaluation): a file starting with a UTF-8, UTF-16 or UTF-32 byte order
mark is read in that encoding; otherwise UTF-8, unless most of the lines that are not plain ASCII fail to decode
as UTF-8, in which case the file is Latin-1 (as Financial PhraseBank's AllAgree file is). A row whose text (or id,
label) holds bytes that do not decode, or a lone surrogate (half of a UTF-16 pair, as an escaped ``"\ud800"`` in
JSON can give), is rejected as ``undecodable_text``; a row holding a NUL character is rejected as
``control_characters``, and so is one holding any other control character (except tab, line feed and carriage
return) unless the task keeps them (``control_characters: keep`` in its task.yaml).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_gen.errors import InputError
from data_gen.sources.records import OtherShard, Record, Rejected, SourceReport, duplicate, text_id
from data_gen.sources.splits import in_sample, shard_of
from data_gen.sources.tables import table_chunks
from data_gen.sources.text import (
    check_encoding,
    decode_errors,
    sniff_bom,
    text_problem,
    whole_file_decoding,
)

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
        with path.open("r", encoding=sniff_bom(path) or "latin-1", errors="replace", newline="\n") as handle:
            head = [line.strip() for _, line in zip(range(50), handle, strict=False) if line.strip()]
        labelled = sum(line.rsplit("@", 1)[-1].lower() in FPB_LABELS for line in head)
        if head and labelled >= 0.8 * len(head):
            return "fpb"
    return fmt


class Source:
    """A streamed input: iterate it for ``Record`` | ``Rejected`` (and ``OtherShard`` if asked); ``report`` fills
    in as it goes."""

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
        sample: float | None = None,
        shard: tuple[int, int] | None = None,
        extra_columns: tuple[str, ...] = (),
        control_characters: str = "reject",
        allow_empty: bool = False,
        other_shards: bool = False,
    ) -> None:
        self.path = Path(path)
        self.other_shards = other_shards  # yield the other shards' rows too, as OtherShard (for duplicate checks)
        self.extra_columns = extra_columns
        self.control_characters = control_characters
        self.allow_empty = allow_empty
        if not self.path.exists():
            raise InputError(f"input not found: {self.path}")
        self.format = detect_format(self.path) if fmt == "auto" else fmt
        if self.format not in {*FORMAT_BY_SUFFIX.values(), "hf", "fpb"}:
            raise InputError(f"unknown --input-format {self.format!r}")
        self.text_column, self.id_column, self.label_column = text_column, id_column, label_column
        self.encoding, self.hf_split, self.max_chars, self.limit = encoding, hf_split, max_chars, limit
        if sample is not None and not 0 < sample <= 1:
            raise InputError(f"--sample must be a fraction in (0, 1], got {sample}")
        self.sample, self.shard = sample, shard
        self.report = SourceReport(format=self.format)

    def __iter__(self) -> Iterator[Record | Rejected | OtherShard]:
        report = self.report
        report.rows = 0
        encoding = "utf-8"
        if self.format not in ("hf", "parquet"):  # binary formats carry their own encoding
            encoding, note = check_encoding(self.path, self.encoding)
            report.encoding = "utf-8" if encoding == "utf-8-sig" else encoding
            report.notes = [note] if note else []
        line_format = self.format in ("fpb", "txt", "jsonl")
        reader = self._line_rows(encoding) if line_format else self._table_rows(encoding)
        rows = whole_file_decoding(self.path, encoding, reader)
        text_key = "text" if self.format in ("fpb", "txt") else self.text_column
        label_key = "label" if self.format == "fpb" else self.label_column
        taken = 0  # rows in the sample, of every shard: --limit counts these, so that shards add up to one run
        for row, values in rows:
            if self.limit is not None and taken >= self.limit:
                break
            item = values if isinstance(values, Rejected) else self._item(row, values, text_key, label_key)
            key = item.id or f"row {row}"  # a row rejected before it has an id goes by its position
            if self.sample is not None and not in_sample(key, self.sample):
                report.outside_sample += 1
                continue
            taken += 1
            if self.shard is not None and shard_of(key, self.shard[1]) != self.shard[0]:
                report.outside_shard += 1
                if self.other_shards and isinstance(item, Record):
                    yield OtherShard(item)
                continue
            report.rows += 1
            yield item
        self._check_columns(final=True)
        if report.rows == 0 and not self.allow_empty and not report.outside_shard:  # a shard may take no row
            if report.outside_sample:
                raise InputError(f"{self.path}: --sample {self.sample:g} took none of its {report.outside_sample:,} "
                                 "rows; take a larger fraction")  # fmt: skip
            raise InputError(f"{self.path}: no rows (the file is empty, or holds only a header or blank lines)")

    def _item(self, row: int, values: dict[str, Any], text_key: str, label_key: str | None) -> Record | Rejected:
        """One row's values as a Record, or its rejection (checked text, a stable id, the length limit)."""
        used = {
            text_key: values.get(text_key),
            self.id_column: values.get(self.id_column or ""),
            label_key: values.get(label_key or ""),
            **{c: values.get(c) for c in self.extra_columns},
        }
        problem = next((p for name, value in used.items() if name and isinstance(value, str)
                        and (p := text_problem(name, value, self.control_characters, row))), None)  # fmt: skip
        if problem is not None:  # before the text is hashed, stored or printed: none of them can take it
            return Rejected(row, *problem)
        raw_text = values.get(text_key)
        text = "" if raw_text is None or (isinstance(raw_text, float) and raw_text != raw_text) else str(raw_text)
        text = text.strip()
        given = values.get(self.id_column) if self.id_column else None
        rid = str(given).strip() if given not in (None, "") else (text_id(text) if text else None)
        if not text:
            return Rejected(row, "empty_text", f"row {row}: the {text_key!r} field is empty", rid)
        if len(text) > self.max_chars:
            detail = f"row {row}: {len(text):,} characters (limit --max-chars {self.max_chars:,})"
            return Rejected(row, "text_too_long", detail, rid)
        return Record(
            id=rid,
            text=text,
            row=row,
            label=values.get(label_key) if label_key else None,
            extra={c: values.get(c) for c in self.extra_columns} if self.extra_columns else None,
        )

    def _check_columns(self, final: bool = False) -> None:
        """A mapped column that the file does not have is an error that lists the columns it does have."""
        if self.format in ("fpb", "txt") or (not self.report.columns and not final):
            return
        present = set(self.report.columns)
        roles = [("text", self.text_column), ("id", self.id_column), ("label", self.label_column)]
        for role, column in roles + [("extra", c) for c in self.extra_columns]:
            if column and column not in present and (self.report.columns or self.report.rows):
                if not self.report.columns:  # every line was rejected before it showed a column
                    raise InputError(f"{self.path}: no line is a JSON object, so there is no {role} column "
                                     f"{column!r} ({self.report.rows} malformed lines)")  # fmt: skip
                shown = ", ".join(self.report.columns)
                raise InputError(f"{self.path}: no {role} column {column!r}; the columns are: {shown}")

    # ---------------- line formats: one bad line costs one row, not the file ----------------
    def _line_rows(self, encoding: str) -> Iterator[tuple[int, Any]]:
        keys: dict[str, None] = {}
        first = True
        with self.path.open("r", encoding=encoding, errors=decode_errors(encoding), newline="\n") as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                if self.format == "txt":
                    first = False
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
                    if first and line.lstrip().startswith("["):
                        raise InputError(
                            f"{self.path}: a JSON array, not JSON Lines (one object per line): name the file .json "
                            "or pass --input-format json"
                        )
                    first = False
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
        for chunk in table_chunks(self.path, self.format, encoding, self.hf_split):
            if not self.report.columns:
                self.report.columns = [str(c) for c in chunk.columns]
                self._check_columns()
            for values in chunk.to_dict(orient="records"):
                row += 1
                yield row, {str(k): v for k, v in values.items()}
            if self.limit is not None and self.sample is None and row >= self.limit:
                return


def _json_object(line: str) -> tuple[dict[str, Any], str | None]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        where = "" if exc.msg.endswith(" at") else " at"  # "Unterminated string starting at" names its column
        return {}, f"not valid JSON ({exc.msg}{where} column {exc.colno})"
    if not isinstance(value, dict):
        return {}, f"expected a JSON object, got {type(value).__name__}"
    return value, None


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
        source = Source(Path(path) / "examples.jsonl", "jsonl", "text", "id", extra_columns=("split",),
                        control_characters="keep", allow_empty=True)  # fmt: skip
        for item in source:
            if isinstance(item, Record) and (item.extra or {}).get("split") in splits:
                yield item.id, item.text, f"{path} {item.extra['split']} example {item.id}"  # type: ignore[index]
        return
    for item in Source(path, "auto", text_column):
        if isinstance(item, Record):
            yield item.id, item.text, f"{path} row {item.row}"
