"""Did the student see the test set? Each test text is looked up among the training texts with data_gen's duplicate
index (exact after case and space folding; near: MinHash Jaccard >= the threshold), and a data_gen training set's
own record of what it removed (duplicates, texts of an evaluation set passed to ``--decontaminate``) is added.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_gen.sources.dedup import Deduplicator
from data_gen.sources.readers import is_distilled, texts_of
from data_gen.tasks.task import Task
from eval.config import EvalConfig
from eval.data import EvalSet

TRAINING_SPLITS = ("train", "validation")
REMOVED_REASONS = ("duplicate_text", "near_duplicate_text", "contaminated")
SHOWN = 5  # matches listed by name in the report


def check(config: EvalConfig, task: Task, evalset: EvalSet) -> dict[str, Any] | None:
    """The overlap with ``--train-data`` (default: a data_gen ``--data`` directory's own training splits, less the
    split under evaluation: scoring on ``validation`` does not count its own rows as seen)."""
    train_data = config.train_data or (config.data if is_distilled(config.data or "") else None)
    if train_data in (None, "none"):
        return None
    same_folder = config.data is not None and Path(train_data).resolve() == Path(config.data).resolve()
    splits = tuple(split for split in TRAINING_SPLITS if not (same_folder and split == config.split))
    return training_overlap(evalset, str(train_data), config.text_column or task.input_column, splits)


def training_overlap(
    evalset: EvalSet,
    train_data: str,
    text_column: str,
    splits: tuple[str, ...] = TRAINING_SPLITS,
    threshold: float = 0.85,
) -> dict[str, Any]:
    """Counts of test rows equal or nearly equal to a training text of ``splits``, with the first few matches named."""
    index = Deduplicator(near=True, threshold=threshold)
    train_rows = index.register_all(texts_of(train_data, text_column, splits))
    counts = {"duplicate_text": 0, "near_duplicate_text": 0}
    matches: list[str] = []
    looked_up = index.check_many(((item.id, item.text, None) for item in evalset.items), register=False)
    for item, found in zip(evalset.items, looked_up, strict=True):
        if found:
            counts[found[0]] += 1
            if len(matches) < SHOWN:
                matches.append(f"test row {item.row} ({item.id}): {found[2]}")
    removed: dict[str, int] | None = None
    if is_distilled(train_data):
        manifest = json.loads((Path(train_data) / "manifest.json").read_text(encoding="utf-8"))
        by_reason = manifest.get("counts", {}).get("rejected_by_reason", {})
        removed = {reason: int(by_reason.get(reason, 0)) for reason in REMOVED_REASONS}
    return {
        "train_data": str(train_data),
        "train_rows": train_rows,
        "test_rows": len(evalset.items),
        "exact": counts["duplicate_text"],
        "near": counts["near_duplicate_text"],
        "threshold": threshold,
        "matches": matches,
        "removed_before_training": removed,
    }


def describe(overlap: dict[str, Any]) -> str:
    """One sentence for the summary and the report."""
    text = (
        f"{overlap['exact']} exact and {overlap['near']} near duplicates of {overlap['train_rows']} training texts "
        f"among {overlap['test_rows']} test rows"
    )
    removed = overlap["removed_before_training"]
    if removed is not None:
        text += (
            f"; data_gen removed {removed['duplicate_text']} exact and {removed['near_duplicate_text']} near "
            f"duplicates and {removed['contaminated']} contaminated rows before splitting"
        )
    return text


def warning(overlap: dict[str, Any] | None) -> list[str]:
    """A warning when test rows were seen in training: their scores measure memory, not skill."""
    if not overlap or not overlap["exact"] + overlap["near"]:
        return []
    seen = overlap["exact"] + overlap["near"]
    return [
        f"{seen} of {overlap['test_rows']} test rows ({seen / max(overlap['test_rows'], 1):.1%}) are in the training "
        f"data {overlap['train_data']} ({overlap['exact']} exact, {overlap['near']} near): scores on them overstate "
        "what the model learned; distil with --decontaminate to keep them out"
    ]
