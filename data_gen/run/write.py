"""Pass 4, write: training files, examples.jsonl, rejects.jsonl and the registries, renamed into place together;
an example that its format's schema refuses becomes a rejection (record_invalid), never a silent gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_gen.kd import rows as kd
from data_gen.run.config import DistillConfig
from data_gen.run.workspace import Workspace
from data_gen.tasks.task import Task
from data_gen.writers.atomic import jsonl_line
from data_gen.writers.training import Example, TrainingWriter, output_files


def write_outputs(config: DistillConfig, task: Task, work: Workspace, out: Path) -> dict[str, Any]:
    """Training files, examples.jsonl, rejects.jsonl and the registries, all renamed into place together."""
    name = config.name or task.name
    invalid: list[tuple[int, str, str]] = []
    with output_files(out) as files:
        writer = TrainingWriter(files, config.formats + (["kd"] if config.kd_top_k else []))
        examples = files.open("examples.jsonl")
        system = task.system_for(config.training_prompt)
        for item in work.examples():
            example = Example(item.id, item.split, system, item.user, item.assistant, item.meta)
            if config.kd_top_k:
                scored = kd.loads(work.kd_of(item.row) or "")  # every example left after score_all has its rows
                example.kd = {"logprobs": scored.logprobs, "target_token_ids": scored.token_ids}
            errors = writer.add(example)
            if errors:
                invalid.append((item.row, item.id, errors))
                continue
            examples.write(jsonl_line({"id": item.id, "split": item.split, **item.meta}) + "\n")
        for row, rid, errors in invalid:  # never silently skipped: each becomes a rejection with its reason
            work.drop_example(row)
            work.reject(row, rid, "record_invalid", errors)
        written = writer.finish(name, config.out or str(out), list(config.splits))
        rejects = files.open("rejects.jsonl")
        for item in work.rejects():
            rejects.write(jsonl_line(item) + "\n")
    return written
