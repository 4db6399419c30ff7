"""Tabular inputs as chunks of rows: CSV / TSV through pandas, Parquet through pyarrow, saved datasets through
``datasets``, a JSON array read whole. ``Source`` (readers.py) turns the chunks into records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_gen.errors import InputError
from data_gen.sources.text import decode_errors

CHUNK_ROWS = 10_000  # rows per chunk read from tabular files


def table_chunks(path: Path, fmt: str, encoding: str, hf_split: str | None) -> Iterator[Any]:
    """The file as pandas DataFrames of up to CHUNK_ROWS rows (a JSON array is read whole)."""
    import pandas as pd

    if fmt in ("csv", "tsv"):
        sep = "\t" if fmt == "tsv" else ","
        try:
            with path.open("rb") as handle:  # pandas decodes; object columns can hold what did not decode
                yield from pd.read_csv(
                    handle, sep=sep, dtype=object, keep_default_na=False, na_filter=False, chunksize=CHUNK_ROWS,
                    encoding=encoding, encoding_errors=decode_errors(encoding),
                )  # fmt: skip
        except pd.errors.EmptyDataError:
            raise InputError(f"{path}: the file is empty") from None
        except pd.errors.ParserError as exc:
            raise InputError(f"{path}: malformed {fmt.upper()}: {exc}".strip()) from None
        except UnicodeEncodeError:  # an undecodable byte where pandas wanted an index (rows wider than the header)
            raise InputError(f"{path}: malformed {fmt.upper()}: rows with more fields than the header, "
                             "and bytes that do not decode") from None  # fmt: skip
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})".splitlines()[0]) from None
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
            yield batch.to_pandas()
    elif fmt == "hf":
        dataset = load_hf(path, hf_split)
        for start in range(0, len(dataset), CHUNK_ROWS):
            yield dataset.select(range(start, min(start + CHUNK_ROWS, len(dataset)))).to_pandas()
    else:  # a JSON array is one document: it is read whole (use JSONL for very large inputs)
        yield read_json_array(path, encoding)


def read_json_array(path: Path, encoding: str) -> Any:
    """A JSON array of objects (or {"data": [...]}, or a column mapping) as one DataFrame."""
    import pandas as pd

    try:
        value = json.loads(path.read_text(encoding=encoding, errors=decode_errors(encoding)))
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


def load_hf(path: Path, split: str | None) -> Any:
    """A dataset saved with ``datasets.save_to_disk``; a DatasetDict needs ``split`` unless it has one."""
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
