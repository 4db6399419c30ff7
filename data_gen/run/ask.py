"""Pass 2, ask: rows -> teacher (through the cache, limits and budget) -> accepted examples | rejections."""

from __future__ import annotations

import sys
from typing import Any

from data_gen.client.limits import run_bounded
from data_gen.client.pricing import Price
from data_gen.run.config import DistillConfig
from data_gen.run.ladder import Distiller, Outcome
from data_gen.run.progress import ProgressFile
from data_gen.run.report import example_meta
from data_gen.run.state import Stats
from data_gen.run.workspace import Workspace
from data_gen.sources.splits import assign_split
from data_gen.tasks.task import Task


async def ask_all(
    config: DistillConfig, task: Task, teacher: Any, work: Workspace, total: int, price: Price | None
) -> tuple[Stats, Distiller]:
    from tqdm import tqdm

    distiller = Distiller(config, task, teacher)
    stats = Stats()
    shown = ProgressFile("ask")  # for a --workers parent's bar
    bar = tqdm(
        total=total,
        unit="row",
        desc=f"distill {task.name}",
        disable=not config.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )

    def done(outcome: Outcome) -> None:
        stats.add(outcome, task)
        record = outcome.record
        if outcome.accepted:
            assert outcome.parsed is not None
            split = assign_split(record.id, config.splits, config.split_salt)
            work.add_example(
                record.row,
                record.id,
                split,
                task.user_prompt(record.text),
                task.target(outcome.parsed),
                example_meta(teacher, outcome),
            )
        elif outcome.reason != "batch_pending":
            work.reject(record.row, record.id, outcome.reason or "", outcome.detail, outcome.key)
        bar.update(1)
        shown.update(stats.asked, total)
        if not bar.disable and (stats.asked % 25 == 0 or stats.asked == total):
            cost = f"${price.cost(stats.sent_usage):.4f}" if price is not None else "$?"
            bar.set_postfix_str(
                f"accepted {100 * stats.accepted / stats.asked:.0f}% "
                f"tokens {stats.sent_usage.total_tokens:,} cost {cost}",
                refresh=False,
            )

    try:
        await run_bounded(work.rows(), distiller.ask, max(1, config.concurrency * 2), done)
    finally:
        bar.close()
    shown.update(stats.asked, total, final=True)
    return stats, distiller
