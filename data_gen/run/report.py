"""What a run tells people: provenance per example, the manifest, the dataset card and the closing summary."""

from __future__ import annotations

import shlex
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from data_gen.client.types import Usage
from data_gen.provenance import versions
from data_gen.reasons import REASONS
from data_gen.tasks.metrics import report_from_pairs
from data_gen.writers.atomic import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from data_gen.run.config import DistillConfig
    from data_gen.run.ladder import Outcome
    from data_gen.run.state import Prepared, RunContext, Stats
    from data_gen.sources.records import SourceReport
    from data_gen.tasks.task import Task


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def usage_dict(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_prompt_tokens": usage.cached_prompt_tokens,
        "total_tokens": usage.total_tokens,
    }


def example_meta(teacher: Any, outcome: Outcome) -> dict[str, Any]:
    """An accepted example's input, answer and provenance (examples.jsonl)."""
    record, parsed, completion = outcome.record, outcome.parsed, outcome.completion
    assert parsed is not None and completion is not None
    return {
        "row": record.row,
        "text": record.text,
        "gold": record.label,
        "answer": parsed.answer,
        "thinking": parsed.thinking,
        "repairs": parsed.repairs,
        "provenance": {
            "teacher": teacher.kind,
            "model": teacher.model,
            "served_model": completion.model,
            "endpoint": teacher.endpoint,
            "endpoint_host": urlsplit(teacher.endpoint).netloc or teacher.endpoint,
            "request_key": outcome.key,
            "asks": outcome.asks,
            "attempts": completion.attempts,
            "finish_reason": completion.finish_reason,
            "usage": usage_dict(outcome.usage),
            "from_cache": completion.from_cache,
            "received_at": _iso(completion.created_at),
        },
    }


def gold_agreement(task: Task, pairs: Counter) -> dict[str, Any] | None:
    """How often the teacher's label matches the gold label over rows asked that have one; a row without a
    parsed answer counts as missing (wrong), never as a class."""
    if not pairs or not task.labels:
        return None

    def rounded(value: Any) -> Any:
        return round(value, 4) if isinstance(value, float) else value

    report = report_from_pairs(pairs, task.labels)
    result = {k: rounded(v) for k, v in report.items() if k != "per_class"}
    result["per_class"] = {label: {k: rounded(v) for k, v in m.items()} for label, m in report["per_class"].items()}
    return result


def build_manifest(
    run: RunContext, prepared: Prepared, stats: Stats, written: dict[str, Any], stop_reason: str | None
) -> dict[str, Any]:
    config, task, teacher, price, cache, governor = (
        run.config,
        run.task,
        run.teacher,
        run.price,
        run.cache,
        run.governor,
    )
    rejected, accepted_by_split = run.work.reject_counts(), run.work.example_counts()
    counts = {
        "input": prepared.source.rows,
        "accepted": sum(accepted_by_split.values()),
        "rejected": sum(rejected.values()),
        "rejected_by_reason": dict(rejected.most_common()),
        "accepted_by_split": {s: accepted_by_split.get(s, 0) for s in config.splits},
    }
    if counts["accepted"] + counts["rejected"] != counts["input"]:  # a bug, never a data problem
        raise RuntimeError(f"row accounting does not add up: {counts}")
    ledger = cache.spent(cache.run) if cache is not None else None  # this run's calls, as the ledger counts them
    states = cache.calls_by_state(cache.run) if cache is not None else {}
    total = cache.spent() if cache is not None else None
    budget = run.budget
    elapsed = time.time() - run.started
    return {
        "task": task.name,
        "name": config.name or task.name,
        "teacher": {"kind": teacher.kind, "model": teacher.model, "endpoint": teacher.endpoint},
        "input": {
            "path": config.input,
            "format": prepared.source.format,
            "encoding": prepared.source.encoding,
            "text_column": prepared.text_column,
            "label_column": config.label_column,
            **selection(config, prepared.source),
            "notes": prepared.source.notes,
        },
        "counts": counts,
        "requests": {
            "rows_asked": stats.asked,
            "sent": stats.sent,
            "answered_from_cache": stats.from_cache,
            "reasks": stats.reasks,
            "doubled_max_tokens": stats.bumps,
            "http_calls": budget.calls if budget is not None else 0,  # every attempt, failed ones included
            "failed_calls": states.get("failed", 0),  # error answers and refused connections: not billed
            "unanswered_calls": states.get("unanswered", 0),  # sent, no answer: counted at their worst case
            "usage_estimated_calls": budget.estimated_calls if budget is not None else 0,
        },
        "usage": usage_dict(stats.sent_usage),
        "cost_usd": (ledger.cost if ledger else price.cost(stats.sent_usage)) if price is not None else None,
        "dataset_usage": usage_dict(stats.all_usage),
        "dataset_cost_usd": price.cost(stats.all_usage) if price is not None else None,
        "price_per_million_tokens": price.__dict__ if price is not None else None,
        "budget": {
            "max_cost_usd": config.max_cost,
            "max_tokens": config.max_tokens,
            "max_cost_usd_this_run": budget.max_cost if budget is not None else None,  # a --shard run's share
            "max_tokens_this_run": budget.max_tokens if budget is not None else None,
            "spent_cost_usd_this_run": ledger.cost if ledger else None,
            "spent_tokens_this_run": ledger.tokens if ledger else None,
            "spent_cost_usd_all_runs": total.cost if total else None,
            "spent_tokens_all_runs": total.tokens if total else None,
            "calls_all_runs": total.calls if total else None,
            "estimated_calls_all_runs": total.estimated if total else None,  # the server reported no usage
            "in_flight_at_a_stop": total.lost if total else None,  # killed runs' reservations, counted in full
            "stopped": stop_reason,
        },
        "limits": {
            "rpm": config.rpm,
            "tpm": config.tpm,
            "max_concurrency": config.concurrency,
            "adaptive_concurrency": config.adaptive_concurrency,
            "final_concurrency": int(governor.concurrency.limit),
            "concurrency_decreases": governor.concurrency.decreases,
        },
        "gold_agreement": gold_agreement(task, stats.gold_pairs),
        "kd": run.kd,
        "repairs": dict(stats.repairs.most_common()),
        "sampling": {k: v for k, v in _sampling(config, task).items() if v is not None},
        "files": written["files"],
        "dataset_info": written["dataset_info"],
        "config": config.as_dict(),
        "config_hash": config.hash(),
        "versions": versions(),
        "command": " ".join(shlex.quote(a) for a in (run.argv if run.argv is not None else sys.argv)),
        "started_at": _iso(run.started),
        "seconds": round(elapsed, 3),
        "timings": run.timings,
        "rows_per_second": round(prepared.source.rows / elapsed, 1) if elapsed > 0 else None,
    }


def _sampling(config: DistillConfig, task: Task) -> dict[str, Any]:
    from data_gen.run.ladder import sampling_params

    return sampling_params(config, task)


# ---------------------------------------------------------------- dataset card
def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "1M<n<10M"


def write_card(out: Path, manifest: dict[str, Any]) -> None:
    """README.md with the Hugging Face `datasets` YAML header (configs per format, splits per file), so that
    `datasets.load_dataset(<out>, "sharegpt")` works, and a body a person reads."""
    configs = []
    for fmt in manifest["config"]["formats"]:
        files = [
            {"split": f.split("_", 1)[1].removesuffix(".jsonl"), "path": f}
            for f in manifest["files"]
            if f.startswith(f"{fmt}_")
        ]
        if files:
            configs.append({"config_name": fmt, "data_files": files})
    header = {
        "configs": configs,
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["finance", "distillation", "chain-of-thought", manifest["task"]],
        "size_categories": [_size_category(manifest["counts"]["accepted"])],
        "pretty_name": f"{manifest['name']} (distilled with fin-distill)",
    }
    counts = manifest["counts"]
    cost = manifest["cost_usd"]
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {manifest['name']}",
        "",
        f"Training data for the `{manifest['task']}` task, distilled from teacher `{manifest['teacher']['model']}` "
        f"({manifest['teacher']['kind']}, {manifest['teacher']['endpoint']}) by fin-distill.",
        "",
        "## Counts",
        "",
        f"{counts['input']:,} input rows: {counts['accepted']:,} accepted, {counts['rejected']:,} rejected."
        + sampled(manifest["input"]),
        "",
        "| split | examples |",
        "|---|---|",
        *[f"| {s} | {n:,} |" for s, n in counts["accepted_by_split"].items()],
        "",
        "| rejection reason | rows | meaning |",
        "|---|---|---|",
        *[f"| {r} | {n:,} | {REASONS[r].meaning} |" for r, n in counts["rejected_by_reason"].items()],
        "",
        "## Cost",
        "",
        f"This run: {manifest['usage']['total_tokens']:,} tokens, "
        f"{'unknown cost' if cost is None else f'${cost:.4f}'}; the whole dataset took "
        f"{manifest['dataset_usage']['total_tokens']:,} tokens"
        + ("" if manifest["dataset_cost_usd"] is None else f" (${manifest['dataset_cost_usd']:.4f})")
        + ".",
        "",
        "## Reproduce",
        "",
        "```",
        manifest["command"],
        "```",
        "",
        f"Config hash `{manifest['config_hash']}`; package versions, sampling settings and per-example provenance are "
        "in `manifest.json` and `examples.jsonl`; every rejected row is in `rejects.jsonl`.",
        "",
    ]
    gold = manifest.get("gold_agreement")
    if gold:
        lines[-1:-1] = [
            "## Agreement with gold labels",
            "",
            f"Accuracy {gold['accuracy']:.3f}, macro-F1 {gold['macro_f1']:.3f}, weighted F1 {gold['weighted_f1']:.3f} "
            f"on {gold['n']:,} rows.",
            "",
        ]
    atomic_write_text(out / "README.md", "\n".join(lines))
    atomic_write_json(out / "manifest.json", manifest)


def selection(config: DistillConfig, source: SourceReport) -> dict[str, Any]:
    """Which rows of the file the run took (--sample, --shard) and how many it left to others or out."""
    shard = config.shard_numbers()
    return {
        "sample": config.sample,
        "outside_sample": source.outside_sample,
        "shard": list(shard) if shard else None,
        "outside_shard": source.outside_shard,
    }


def sampled(facts: dict[str, Any]) -> str:
    """`` (shard K/N: M rows are the other shards'; --sample F: N rows of the file left out)`` where they apply."""
    notes = []
    if facts.get("shard"):
        k, n = facts["shard"]
        notes.append(f"shard {k}/{n}: {facts['outside_shard']:,} rows are the other shards'")
    if facts.get("sample") is not None:
        notes.append(f"--sample {facts['sample']:g}: {facts['outside_sample']:,} rows of the file left out")
    return f" ({'; '.join(notes)})" if notes else ""


def summary_lines(manifest: dict[str, Any], out: str) -> list[str]:
    counts = manifest["counts"]
    reasons = ", ".join(f"{k} {v}" for k, v in counts["rejected_by_reason"].items()) or "none"
    cost = manifest["cost_usd"]
    requests = manifest["requests"]
    failed = requests.get("failed_calls", 0) + requests.get("unanswered_calls", 0)
    estimated = requests.get("usage_estimated_calls", 0)
    lines = [
        f"{counts['input']:,} rows: {counts['accepted']:,} accepted "
        f"({', '.join(f'{k} {v}' for k, v in counts['accepted_by_split'].items())}), "
        f"{counts['rejected']:,} rejected ({reasons})" + sampled(manifest["input"]),
        f"teacher: {requests['sent']:,} answers received"
        + (f" in {requests['http_calls']:,} HTTP calls" if requests["http_calls"] else "")
        + (f" ({failed:,} failed or unanswered)" if failed else "")
        + f", {requests['answered_from_cache']:,} answered from cache; tokens {manifest['usage']['total_tokens']:,}"
        + (f" ({estimated:,} calls counted by the client: no usage reported)" if estimated else "")
        + f"; cost {'unknown' if cost is None else f'${cost:.4f}'}; {manifest['rows_per_second']} rows/s",
    ]
    gold = manifest.get("gold_agreement")
    if gold:
        lines.append(
            f"agreement with gold labels: accuracy {gold['accuracy']:.3f}, macro-F1 {gold['macro_f1']:.3f} "
            f"on {gold['n']:,} rows"
        )
    kd = manifest.get("kd")
    if kd:
        rejected = sum(kd["rejected_by_reason"].values())
        confidence = kd["label_belief"]["mean_confidence"]
        lines.append(
            f"kd: {kd['scored']:,} replies scored by {kd['teacher']['model']} ({kd['teacher']['path']}), top "
            f"{kd['top_k']} log-probabilities, {kd['from_cache']:,} from cache, {rejected:,} rejected"
            + (f"; mean label confidence {confidence:.3f}" if confidence is not None else "")
        )
    lines.append(
        f"wrote {out}/: {len(manifest['files'])} training files, dataset_info.json (LLaMA-Factory), "
        "axolotl_*.yaml, examples.jsonl, rejects.jsonl, manifest.json, README.md (dataset card)"
    )
    return lines
