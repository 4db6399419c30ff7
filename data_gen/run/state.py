"""The state one run carries between its passes: what reading found, what asking counted, the run's context."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_gen.client.types import Usage

if TYPE_CHECKING:
    from data_gen.client.budget import Budget
    from data_gen.client.cache import ResponseCache
    from data_gen.client.limits import Governor
    from data_gen.client.pricing import Price
    from data_gen.run.config import DistillConfig
    from data_gen.run.ladder import Outcome
    from data_gen.run.workspace import Workspace
    from data_gen.sources.records import SourceReport
    from data_gen.tasks.task import Task
    from data_gen.teachers import Teacher


class BudgetStop(RuntimeError):
    """The run stopped before a request that could exceed the budget; its outputs are written."""

    def __init__(self, reason: str, manifest: dict[str, Any]) -> None:
        super().__init__(reason)
        self.manifest = manifest


@dataclass
class Prepared:
    """Pass 1's result: rows on disk, ready to be asked; nothing has been spent yet."""

    task: Task
    source: SourceReport
    text_column: str
    to_ask: int
    input_rejected: int


@dataclass
class Stats:
    """What the ask pass accumulates, in constant memory."""

    asked: int = 0
    accepted: int = 0
    pending: int = 0
    sent: int = 0
    from_cache: int = 0
    reasks: int = 0
    bumps: int = 0
    sent_usage: Usage = field(default_factory=Usage)
    all_usage: Usage = field(default_factory=Usage)
    gold_pairs: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)

    def add(self, outcome: Outcome, task: Task) -> None:
        self.asked += 1
        self.accepted += outcome.accepted
        self.pending += outcome.reason == "batch_pending"
        self.sent += outcome.sent
        self.from_cache += outcome.from_cache
        self.reasks += max(0, outcome.asks - 1 - outcome.bumps)
        self.bumps += outcome.bumps
        self.sent_usage.add(outcome.sent_usage)
        self.all_usage.add(outcome.usage)
        if outcome.parsed is not None:
            self.repairs.update(outcome.parsed.repairs)
        if outcome.record.label is not None and outcome.reason not in ("budget_exhausted", "batch_pending"):
            predicted = task.predicted_label(outcome.parsed) if outcome.parsed else None
            self.gold_pairs[(outcome.record.label, predicted)] += 1


@dataclass
class RunContext:
    """Everything one run works with, in one place."""

    config: DistillConfig
    task: Task
    teacher: Teacher
    price: Price | None
    cache: ResponseCache | None
    budget: Budget | None
    governor: Governor
    work: Workspace
    out: Path
    started: float
    argv: list[str] | None
    timings: dict[str, float] = field(default_factory=dict)
    kd: dict[str, Any] | None = None  # what the logit-distillation pass did (--kd-top-k)

    def timed(self, name: str, since: tuple[float, float]) -> tuple[float, float]:
        """Record the wall and CPU seconds of a pass since ``since``; returns the new mark."""
        now = (time.perf_counter(), time.process_time())
        self.timings[f"{name}_s"] = round(now[0] - since[0], 3)
        self.timings[f"{name}_cpu_s"] = round(now[1] - since[1], 3)
        return now
