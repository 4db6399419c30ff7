"""Merge the outputs of one job's ``--shard K/N`` runs into one dataset directory, the one a single process would
have written: training files, ``examples.jsonl`` and ``rejects.jsonl`` interleaved back into input-row order (their
lines copied byte for byte), the registries rebuilt, and one manifest whose counts, tokens, cost and reasons are
the sums of the shards'.

Duplicate detection needs nothing here: every shard checked every row of the file (``read.py``), so a
near-duplicate pair split across two shards was already rejected by the shard of its later row, with the detail
one process writes. What is refused, in one line, before anything is written: a folder that is not a finished
shard output, shards of different tasks, inputs, settings or N, a shard given twice, an incomplete set, and a shard
that its budget stopped (its unasked rows would be missing from the dataset).
"""

from __future__ import annotations

import heapq
import json
import re
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_gen.errors import ConfigError
from data_gen.provenance import versions
from data_gen.run.config import COSMETIC, DistillConfig
from data_gen.run.report import gold_agreement, write_card
from data_gen.tasks.loader import load_task
from data_gen.writers.outdir import OutputDir
from data_gen.writers.training import TrainingWriter, output_files

# settings that may differ between the shards of one job: those that do not shape the data, where each wrote, which
# share it took and how fast it ran
PER_SHARD = COSMETIC | {"shard", "out", "concurrency", "adaptive_concurrency", "rpm", "tpm", "timeout", "max_retries"}


@dataclass
class ShardOutput:
    """One finished ``--shard K/N`` output directory."""

    path: Path
    manifest: dict[str, Any]

    @property
    def number(self) -> tuple[int, int]:
        k, n = self.manifest["input"]["shard"]
        return k, n

    @property
    def job(self) -> dict[str, Any]:
        """The settings that shape the data, which every shard of a job shares."""
        return {k: v for k, v in self.manifest["config"].items() if k not in PER_SHARD}

    def formats(self) -> list[str]:
        config = self.manifest["config"]
        return list(config["formats"]) + (["kd"] if config.get("kd_top_k") else [])


def load_shards(paths: list[Path]) -> list[ShardOutput]:
    """The shard outputs, in shard order, once they are known to form one complete job (else one line)."""
    if not paths:
        raise ConfigError("no shard folders given: python -m data_gen.merge --out DIR SHARD_DIR...")
    shards = []
    for path in paths:
        try:
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path} holds no manifest.json: not a finished data_gen output (a shard still running, "
                              "or one that stopped: run its command again)") from None  # fmt: skip
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}/manifest.json cannot be read: {exc}") from None
        if not (manifest.get("input") or {}).get("shard"):
            raise ConfigError(f"{path} is not the output of a --shard K/N run")
        shards.append(ShardOutput(path, manifest))
    first = shards[0]
    k1, n = first.number
    for shard in shards[1:]:
        k, other_n = shard.number
        if other_n != n:
            raise ConfigError(f"{shard.path} is shard {k}/{other_n} but {first.path} is {k1}/{n}: one job's shards "
                              "share N")  # fmt: skip
        differing = sorted(key for key in first.job.keys() | shard.job.keys()
                           if first.job.get(key) != shard.job.get(key))  # fmt: skip
        if differing:
            raise ConfigError(f"{shard.path} and {first.path} are shards of different jobs: their "
                              f"{', '.join(differing)} differ")  # fmt: skip
    seen: dict[int, Path] = {}
    for shard in shards:
        k = shard.number[0]
        if k in seen:
            raise ConfigError(f"shard {k}/{n} given twice: {seen[k]} and {shard.path}")
        seen[k] = shard.path
        stopped = shard.manifest["budget"].get("stopped")
        if stopped:
            raise ConfigError(f"shard {k}/{n} ({shard.path}) was stopped by its budget ({stopped}): rerun it with a "
                              "higher cap, then merge")  # fmt: skip
    missing = [f"{k}/{n}" for k in range(1, n + 1) if k not in seen]
    if missing:
        raise ConfigError(f"incomplete set of shards: {', '.join(missing)} missing (of {n}); run them, then merge")
    return sorted(shards, key=lambda shard: shard.number[0])


# what write.py puts first on each line: {"id": ..., "split": ..., "row": N, ...} and {"id": ..., "row": N, ...};
# read from the head of the line without parsing the rest (a line that does not start so is parsed whole)
_ID = r'^\{"id": (?:"(?:[^"\\]|\\.)*"|null), '
_EXAMPLE_HEAD = re.compile(_ID + r'"split": "(\w+)", "row": (\d+)[,}]')
_REJECT_HEAD = re.compile(_ID + r'"row": (\d+)[,}]')


def _jsonl(path: Path) -> Iterator[str]:
    if path.exists():
        with path.open(encoding="utf-8") as handle:
            yield from handle


def _examples(shard: ShardOutput) -> Iterator[tuple[int, str, str, list[tuple[str, str]]]]:
    """(row, examples.jsonl line, split, [(format, training-file line)]) of each accepted example, in row order: the
    i-th example of a split is the i-th line of each of that split's training files (``write.py`` writes both)."""
    formats = shard.formats()
    files: dict[str, Iterator[str]] = {}
    for line in _jsonl(shard.path / "examples.jsonl"):
        row, split = example_head(line)
        records = []
        for fmt in formats:
            name = f"{fmt}_{split}.jsonl"
            if name not in files:
                files[name] = _jsonl(shard.path / name)
            record = next(files[name], None)
            if record is None:
                raise ConfigError(f"{shard.path / name} has fewer records than examples.jsonl has {split} examples "
                                  "(a file edited or cut short?): rerun that shard's command")  # fmt: skip
            records.append((fmt, record))
        yield row, line, split, records
    for name, rest in files.items():
        if next(rest, None) is not None:
            raise ConfigError(f"{shard.path / name} has more records than examples.jsonl: rerun that shard's command")


def _rejects(shard: ShardOutput) -> Iterator[tuple[int, str]]:
    for line in _jsonl(shard.path / "rejects.jsonl"):
        yield reject_row(line), line


def example_head(line: str) -> tuple[int, str]:
    """The row and split of an examples.jsonl line."""
    head = _EXAMPLE_HEAD.match(line)
    if head:
        return int(head.group(2)), head.group(1)
    example = json.loads(line)
    return example["row"], example["split"]


def reject_row(line: str) -> int:
    """The row of a rejects.jsonl line."""
    head = _REJECT_HEAD.match(line)
    return int(head.group(1)) if head else json.loads(line)["row"]


def merge(paths: list[Path], out: Path, overwrite: bool = False, argv: list[str] | None = None) -> dict[str, Any]:
    """Merge the shard outputs in ``paths`` into ``out``; returns the manifest (also ``<out>/manifest.json``)."""
    started = time.time()
    shards = load_shards(paths)
    first = shards[0].manifest
    config = DistillConfig(**{**first["config"], "shard": None, "out": str(out)})
    resolved = out.resolve()
    if any(shard.path.resolve() == resolved for shard in shards):
        raise ConfigError(f"--out {out} is one of the shards: merge into another folder")
    folder = OutputDir(out, "data_gen", first["task"], config.input, overwrite)
    folder.check()
    created = not out.exists()
    folder.create()
    try:
        with output_files(out) as files:
            writer = TrainingWriter(files, shards[0].formats())
            examples = files.open("examples.jsonl")
            for _, line, split, records in heapq.merge(*(_examples(s) for s in shards), key=lambda item: item[0]):
                examples.write(line)
                for fmt, record in records:
                    writer.copy(fmt, split, record)
            rejects = files.open("rejects.jsonl")
            for _, line in heapq.merge(*(_rejects(s) for s in shards), key=lambda item: item[0]):
                rejects.write(line)
            written = writer.finish(config.name or first["task"], str(out), list(config.splits))
    except BaseException:  # a shard found broken half-way (its files are read as they are merged)
        if created:
            shutil.rmtree(out, ignore_errors=True)  # nothing half-made is left behind
        raise
    manifest = merged_manifest(shards, config, written, started, argv)
    write_card(out, manifest)
    return manifest


def _add(values: list[Any]) -> Any:
    """The sum of the shards' values of one manifest field: numbers add, mappings add key by key (in the order the
    keys first appear), None stays None if any shard's is None, anything else is the first shard's."""
    if any(v is None for v in values):
        return None
    if all(isinstance(v, bool) for v in values):
        return values[0]
    if all(isinstance(v, (int, float)) for v in values):
        total = sum(values)
        return round(total, 6) if isinstance(total, float) else total
    if all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: _add([v.get(k, 0) for v in values]) for k in keys}
    return values[0]


def _gold_pairs(agreement: dict[str, Any] | None) -> Counter:
    """The (gold, predicted) counts a manifest's gold agreement was computed from (its confusion matrix, and the
    rows without an answer as ``(gold, None)``)."""
    pairs: Counter = Counter()
    if not agreement:
        return pairs
    labels = agreement["labels"]
    for i, gold in enumerate(labels):
        for j, predicted in enumerate(labels):
            if agreement["confusion"][i][j]:
                pairs[(gold, predicted)] = agreement["confusion"][i][j]
        missing = agreement["per_class"][gold]["support"] - sum(agreement["confusion"][i])
        if missing:
            pairs[(gold, None)] = missing
    return pairs


def _kd(sections: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    if not any(sections):
        return None
    kd = [s for s in sections if s]
    merged = {**kd[0], **{k: _add([s[k] for s in kd]) for k in ("scored", "from_cache", "rejected_by_reason")}}
    examples = sum(s["label_belief"]["examples"] for s in kd)
    weighted = [s["label_belief"]["mean_confidence"] * s["label_belief"]["examples"] for s in kd
                if s["label_belief"]["mean_confidence"] is not None]  # fmt: skip
    merged["label_belief"] = {"examples": examples, "mean_confidence": round(sum(weighted) / examples, 4)
                              if examples and weighted else None}  # fmt: skip
    return merged


def merged_manifest(
    shards: list[ShardOutput], config: DistillConfig, written: dict[str, Any], started: float, argv: list[str] | None
) -> dict[str, Any]:
    """One manifest for the merged dataset: the shards' counts, requests, tokens and cost added up, each shard's
    own facts (folder, time, command) under ``shards``."""
    manifests = [s.manifest for s in shards]
    first = manifests[0]
    task = load_task(config.task)

    def total(key: str) -> Any:
        return _add([m[key] for m in manifests])

    counts = total("counts")
    counts["rejected_by_reason"] = dict(Counter(counts["rejected_by_reason"]).most_common())
    if counts["accepted"] + counts["rejected"] != counts["input"]:
        raise ConfigError(f"the shards' counts do not add up: {counts} (a manifest edited by hand?)")
    pairs = sum((_gold_pairs(m.get("gold_agreement")) for m in manifests), Counter())
    slowest = max(m["seconds"] for m in manifests)
    budget = total("budget")
    budget.update(max_cost_usd=config.max_cost, max_tokens=config.max_tokens, stopped=None)
    elapsed = round(time.time() - started, 3)
    return {
        **{key: first[key] for key in ("task", "name", "teacher", "sampling", "price_per_million_tokens")},
        "input": {**first["input"], "shard": None, "outside_shard": 0},
        "counts": counts,
        "requests": total("requests"),
        "usage": total("usage"),
        "cost_usd": total("cost_usd"),
        "dataset_usage": total("dataset_usage"),
        "dataset_cost_usd": total("dataset_cost_usd"),
        "budget": budget,
        "limits": {
            **first["limits"],
            "final_concurrency": None,
            "concurrency_decreases": total("limits")["concurrency_decreases"],
        },
        "gold_agreement": gold_agreement(task, pairs),
        "kd": _kd([m.get("kd") for m in manifests]),
        "repairs": dict(Counter(total("repairs")).most_common()),
        "files": written["files"],
        "dataset_info": written["dataset_info"],
        "config": config.as_dict(),
        "config_hash": config.hash(),
        "versions": versions(),
        "command": " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv)),
        "shards": [
            {
                "path": str(s.path),
                "shard": list(s.number),
                "rows": s.manifest["counts"]["input"],
                "seconds": s.manifest["seconds"],
                "command": s.manifest["command"],
            }
            for s in shards
        ],
        "started_at": min(m["started_at"] for m in manifests),
        "seconds": elapsed,  # the merge's own; each shard's is under "shards"
        "timings": {"merge_s": elapsed},
        "rows_per_second": round(counts["input"] / slowest, 1) if slowest > 0 else None,  # the shards side by side
    }
