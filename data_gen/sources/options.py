"""How to read an input file: the options shared by ``data_gen.distill`` (teacher inputs) and ``eval.run`` (test
sets)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_gen.options import option
from data_gen.sources.readers import Source


@dataclass
class SourceOptions:
    """How to read an input file: shared by ``data_gen.distill`` (teacher inputs) and ``eval.run`` (test sets)."""

    input_format: str = option(
        "auto",
        "input format; auto picks by extension",
        choices=["auto", "csv", "tsv", "jsonl", "json", "parquet", "hf", "fpb", "txt"],
    )
    text_column: str | None = option(None, "column holding the text (default: the task's input column)")
    id_column: str | None = option(None, "column holding a stable row id (default: a hash of the text)")
    label_column: str | None = option(None, "optional column with the gold label")
    label_map: dict[str, str] = option({}, "map raw gold labels to task labels, e.g. 0=negative,1=positive,2=neutral")
    encoding: str = option("auto", "text encoding of the input; auto tries UTF-8, then falls back to Latin-1")
    hf_split: str | None = option(None, "split to read when the input is a saved DatasetDict")
    max_chars: int = option(20_000, "texts longer than this are rejected as text_too_long")
    limit: int | None = option(None, "process only the first N input rows")

    def source(self, path: str | Path, text_column: str, control_characters: str = "reject") -> Any:
        """The streamed reader of ``path`` with these options (``text_column`` when none is configured; the task's
        rule for control characters)."""
        return Source(
            path,
            self.input_format,
            self.text_column or text_column,
            self.id_column,
            self.label_column,
            self.encoding,
            self.hf_split,
            self.max_chars,
            self.limit,
            control_characters=control_characters,
        )
