"""How to read an input file: the options shared by ``data_gen.distill`` (teacher inputs) and ``eval.run`` (test
sets)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_gen.errors import ConfigError
from data_gen.options import option
from data_gen.sources.readers import Source
from data_gen.sources.splits import parse_shard


@dataclass
class SourceOptions:
    """How to read an input file: shared by ``data_gen.distill`` (teacher inputs) and ``eval.run`` (test sets)."""

    input_format: str = option(
        "auto",
        "auto (by extension), csv, tsv, jsonl, json, parquet, hf, fpb or txt",
        group="input",
        metavar="FORMAT",
        choices=["auto", "csv", "tsv", "jsonl", "json", "parquet", "hf", "fpb", "txt"],
    )
    text_column: str | None = option(None, "column with the text (default: the task's input column)", metavar="NAME")
    id_column: str | None = option(None, "column with a stable row id (default: a hash of the text)", metavar="NAME")
    label_column: str | None = option(None, "column with the gold label", metavar="NAME")
    label_map: dict[str, str] = option({}, "raw gold label -> task label, e.g. 0=negative,1=positive")
    encoding: str = option("auto", "text encoding; auto: a byte order mark, else UTF-8, else Latin-1", metavar="NAME")
    hf_split: str | None = option(None, "split to read from a saved DatasetDict", metavar="NAME")
    max_chars: int = option(20_000, "longer texts are rejected as text_too_long")
    sample: float | None = option(
        None, "take a stable fraction F of the rows, spread over the file (by a hash of the row id)", metavar="F"
    )
    shard: str | None = option(None, "this run's share of the rows by a hash of the row id: K/N, or slurm (the array "
                               "task's)", metavar="K/N")  # fmt: skip
    limit: int | None = option(None, "read only the first N rows (of the sample, with --sample)")

    def shard_numbers(self) -> tuple[int, int] | None:
        """``--shard`` as (K, N), or None; a ConfigError names what is wrong with it."""
        if self.shard is None:
            return None
        try:
            return parse_shard(self.shard, os.environ)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def source(
        self, path: str | Path, text_column: str, control_characters: str = "reject", other_shards: bool = False
    ) -> Any:
        """The streamed reader of ``path`` with these options (``text_column`` when none is configured; the task's
        rule for control characters; ``other_shards``: yield the other shards' rows too, as ``OtherShard``)."""
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
            self.sample,
            self.shard_numbers(),
            control_characters=control_characters,
            other_shards=other_shards,
        )
