"""Metric kinds: how eval scores an answer field (``metrics: {field: kind}`` in task.yaml), one module per kind.

``KINDS`` is the one registry: the task loader checks a task's metrics against it, and eval's per-row scores,
aggregates, bootstrap intervals, McNemar tests, report tables and plots all come from the kind it names. To add a
kind, write a module with a ``MetricKind`` (see ``base.py``; ``entities.py`` is a short example) and add it here.
"""

from __future__ import annotations

from data_gen.tasks.kinds.base import Column, MetricKind, Report, Scores, Statistic
from data_gen.tasks.kinds.classes import CLASSIFICATION, ORDINAL
from data_gen.tasks.kinds.entities import ENTITIES
from data_gen.tasks.kinds.text import TEXT

KINDS: dict[str, MetricKind] = {kind.name: kind for kind in (CLASSIFICATION, ORDINAL, ENTITIES, TEXT)}

__all__ = ["KINDS", "Column", "MetricKind", "Report", "Scores", "Statistic"]
