"""Evaluate models on held-out prompts: did fine-tuning make the model better, by how much, and is it reliable?

    python -m eval.run --config eval/configs/finsight.yaml --data datasets/finsight --split test \\
        --model Qwen/Qwen2.5-7B-Instruct --adapter saves/qwen2.5-7b/finsight-qlora --backend vllm --out reports/run1
    python -m eval.run --config eval/configs/finsight.yaml --data ../shared/data/fpb/Sentences_AllAgree.txt \\
        --endpoint http://127.0.0.1:8000/v1 --model my-model --out reports/fpb
    python -m eval.run --config eval/configs/finsight.yaml --data tweets.csv --text-column text \\
        --label-column label --endpoint http://127.0.0.1:8000/v1 --model my-model --out reports/tweets
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from data_gen.client.api import ChatClient
from data_gen.client.cache import CachedTeacher, ResponseCache
from data_gen.client.types import Completion
from data_gen.errors import ConfigError, run_cli
from data_gen.options import build_parser, load_config
from data_gen.provenance import versions
from data_gen.redact import RedactingFilter
from data_gen.tasks.kinds import KINDS
from data_gen.tasks.loader import load_task
from data_gen.tasks.task import Task
from data_gen.writers.outdir import OutputDir
from eval import overlap, report
from eval.backends import Served, check_models, groups, serve, vllm_command
from eval.calibration import label_probs, reliability
from eval.config import EvalConfig, validate
from eval.data import EvalSet, load_eval_set
from eval.generate import client_for, generate, generation_params, reference_teacher
from eval.scoring import aggregate, score_row
from eval.stats import Draws, bootstrap, compare, headline_metrics, mcnemar, with_intervals

EPILOG = """
With --model and --adapter, the base and the fine-tuned model answer the same prompts in one run; --teacher adds
the teacher as a reference. Outputs in --out: results.json (every metric with its 95% bootstrap interval,
settings, model identities, data hash), predictions.jsonl (raw output, parsed answer, gold and scores per row),
report.md with plots. Answers are stored in <out>/cache.sqlite as they arrive: after a failure or Ctrl-C, the same
command resumes. Generation is greedy (temperature 0) with the task's max_tokens unless told otherwise; answers
are validated against the task's JSON Schema whether or not --constrained asked the server to enforce it.

exit status: 0 done, 2 bad data or configuration, 3 a server failed (answers so far are kept), 130 interrupted.
"""


async def collect(
    config: EvalConfig, task: Task, evalset: EvalSet, out: Path, cache: ResponseCache | None
) -> tuple[dict[str, list[Completion]], dict[str, dict[str, Any]]]:
    """Every model's answers (label -> answers in item order) and what each model is."""
    params = generation_params(config, task)
    answers: dict[str, list[Completion]] = {}
    models: dict[str, dict[str, Any]] = {}
    for group in groups(config):
        with serve(config, group, out / "servers") as served_models:
            for served in served_models:
                client = client_for(config, served)
                try:
                    await client.check()
                    if served.process is None and served is served_models[0]:  # a running server: before any
                        await _check_listed(client, served_models)  # request, does it serve these names at all?
                    asker = CachedTeacher(client, cache) if cache is not None else client
                    answers[served.label] = await generate(
                        asker,
                        served.name,
                        served.label,
                        task,
                        models_prompt(config, evalset),
                        evalset.items,
                        params,
                        config.concurrency,
                        config.progress,
                        served.process,
                    )
                finally:
                    await client.close()
                models[served.label] = {"served_name": served.name, **served.identity}
    if config.teacher:
        teacher = reference_teacher(config, task)
        try:
            await teacher.check()
            asker = CachedTeacher(teacher, cache) if (cache is not None and teacher.cacheable) else teacher
            answers["teacher"] = await generate(
                asker,
                teacher.model,
                "teacher",
                task,
                "teacher",
                evalset.items,
                params,
                config.concurrency,
                config.progress,
            )
        finally:
            await teacher.close()
        models["teacher"] = {"backend": teacher.kind, "model": teacher.model, "endpoint": teacher.endpoint}
    return answers, models


def models_prompt(config: EvalConfig, evalset: EvalSet) -> str:
    """The system prompt base and fine-tuned models are asked with: --prompt, or (auto) the one the training files of
    a data_gen --data folder carry, else the task's student prompt. The teacher is always asked with its own."""
    if config.prompt != "auto":
        return config.prompt
    return evalset.training_prompt or "student"


async def _check_listed(client: ChatClient, served: list[Served]) -> None:
    """One line, before any request, when the endpoint lists its models and one asked for is not among them."""
    listed = await client.models()
    for model in served:
        if listed is not None and model.name not in listed:
            shown = ", ".join(repr(name) for name in listed[:8]) or "no model"
            flag = "--adapter" if model.label == "tuned" else "--model"
            raise ConfigError(f"{client.base_url} serves {shown}, not {model.name!r}: pass {flag} with a name it "
                              "serves")  # fmt: skip


def score(
    config: EvalConfig, task: Task, evalset: EvalSet, answers: dict[str, list[Completion]]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Per-row scores and the metrics, intervals and pairwise comparisons of every model."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for label, completions in answers.items():
        rows[label] = []
        for item, completion in zip(evalset.items, completions, strict=True):
            reading = task.inspect(completion.text, completion.reasoning)
            row = score_row(task, reading, completion.finish_reason, item.gold)
            if task.label_field and completion.logprobs:
                row["label_probs"] = label_probs(completion.text, completion.logprobs, task.label_field, task.labels)
            rows[label].append({"answer": reading.answer, **row})
    headline = {label: headline_metrics(task, label_rows) for label, label_rows in rows.items()}
    flat = {(label, name): metric for label, metrics in headline.items() for name, metric in metrics.items()}
    resampled = bootstrap(flat, Draws(len(evalset.items), config.bootstrap, config.seed))
    samples = {label: {name: resampled[label, name] for name in metrics} for label, metrics in headline.items()}
    labels = list(rows)
    comparisons = []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            tests = {}
            for name, kind in task.metrics.items():
                if KINDS[kind].classes and any(r["fields"][name]["gold"] for r in rows[a]):
                    paired = [(ra, rb) for ra, rb in zip(rows[a], rows[b], strict=True) if ra["fields"][name]["gold"]]
                    tests[f"{name}.accuracy"] = mcnemar(
                        [ra["fields"][name]["correct"] for ra, _ in paired],
                        [rb["fields"][name]["correct"] for _, rb in paired],
                    )
            comparisons.append(
                {
                    "a": a,
                    "b": b,
                    "differences": compare(headline[a], headline[b], samples[a], samples[b]),
                    "mcnemar": tests,
                }
            )
    metrics = {
        "metrics": {label: {**aggregate(task, r), "calibration": calibrated(task, r)} for label, r in rows.items()},
        "intervals": {label: with_intervals(h, samples[label]) for label, h in headline.items()},
        "comparisons": comparisons,
    }
    return rows, metrics


def calibrated(task: Task, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """ECE and reliability bins of a model's label, over rows with gold, a stated label and its probabilities."""
    name = task.label_field
    pairs = []
    for row in rows:
        scores, probs = row["fields"].get(name) if name else None, row.get("label_probs")
        if scores and probs and scores.get("gold") is not None and scores.get("predicted") in probs:
            pairs.append((probs[scores["predicted"]], bool(scores.get("correct"))))
    if not pairs:
        return None
    return reliability([c for c, _ in pairs], [ok for _, ok in pairs])


def warnings_for(config: EvalConfig, task: Task, metrics: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Things a reader must not miss: an ignored constraint, truncated answers, answers the parser could not use."""
    found = []
    for label, result in metrics["metrics"].items():
        fmt, n = result["format"], result["n"]
        if config.constrained != "none" and label != "teacher" and fmt["schema_valid"] < 1:
            bad = round((1 - fmt["schema_valid"]) * n)
            found.append(
                f"{label}: --constrained {config.constrained} was sent, yet {bad} of {n} answers are not "
                "schema-valid: the server ignored or does not support this form of constraint"
            )
        if fmt["truncated"] > 0:
            found.append(
                f"{label}: {round(fmt['truncated'] * n)} of {n} answers hit max_tokens={params['max_tokens']}; "
                "raise --max-tokens"
            )
        if config.logprobs and label != "teacher" and result.get("calibration") is None:
            found.append(
                f"{label}: --logprobs {config.logprobs} was sent, but no answer had readable log-probabilities at its "
                "label: the server does not return logprobs (vLLM does), so there is no calibration"
            )
        if fmt["parsed"] < 1 and task.answer_kind == "json":
            found.append(f"{label}: {round((1 - fmt['parsed']) * n)} of {n} answers hold no usable JSON (missing)")
    return found


def usage_summary(completions: list[Completion]) -> dict[str, Any]:
    latencies = sorted(c.latency_s for c in completions if not c.from_cache)
    return {
        "answers": len(completions),
        "from_cache": sum(c.from_cache for c in completions),
        "prompt_tokens": sum(c.usage.prompt_tokens for c in completions),
        "completion_tokens": sum(c.usage.completion_tokens for c in completions),
        "latency_s": {
            "mean": statistics.fmean(latencies) if latencies else None,
            "p95": latencies[int(0.95 * (len(latencies) - 1))] if latencies else None,
        },
    }


def plan(config: EvalConfig, task: Task, evalset: EvalSet) -> list[str]:
    """What a run would do: the dry run's output."""
    facts = evalset.facts()
    served = groups(config)
    labels = [spec.label for group in served for spec in group] + (["teacher"] if config.teacher else [])
    lines = [
        f"data: {facts['path']} ({facts['kind']}): {facts['evaluated']} rows to evaluate, "
        f"{facts['rejected']} rejected, {facts['not_selected']} in other splits; gold fields: "
        f"{', '.join(facts['gold_fields']) or 'none (format only)'}",
        f"task: {task.name}; models: {', '.join(labels)}; requests: {len(evalset.items) * len(labels)} "
        f"(max_tokens {config.max_tokens or task.max_completion_tokens}, temperature {config.temperature}, "
        f"seed {config.seed}, constrained {config.constrained}, the {models_prompt(config, evalset)} system prompt for "
        "the models); stored answers are not asked again",
    ]
    if evalset.overlap is not None:
        lines.append(f"training data {evalset.overlap['train_data']}: {overlap.describe(evalset.overlap)}")
    backend = config.resolved_backend()
    if not config.model:
        pass
    elif backend == "vllm":
        lines.append("would start: " + " ".join(vllm_command(config, served[0], 8000)))
    elif backend == "llamafactory":
        lines.append(f"would start: {config.llamafactory_cli} api (one model at a time: {', '.join(labels)})")
    else:
        lines.append(f"endpoint: {config.endpoint}")
    return lines


def run(config: EvalConfig, argv: list[str]) -> dict[str, Any]:
    """The whole evaluation; returns results (also written to <out>/results.json)."""
    started = time.time()
    task = load_task(config.task)
    evalset = load_eval_set(config, task)  # data problems: one line, before any server starts
    check_models(config)
    evalset.overlap = overlap.check(config, task, evalset)
    out = Path(config.out or "")
    folder = OutputDir(out, "eval", task.name, config.data, config.overwrite)
    if config.out:
        folder.check()  # a file, an unwritable folder, someone else's folder: one line, nothing created
    if config.dry_run:
        for line in plan(config, task, evalset):
            print(line)
        return {}
    with folder.run(store=config.cache) as cache:  # a run refused before any answer leaves nothing behind
        answers, models = asyncio.run(collect(config, task, evalset, out, cache))
    rows, metrics = score(config, task, evalset, answers)
    params = generation_params(config, task)
    for label, completions in answers.items():
        models[label].update(usage_summary(completions))
    schema_text = json.dumps(task.schema, sort_keys=True).encode()
    results = {
        "task": task.name,
        "command": " ".join(argv),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 2),
        "data": evalset.facts(),
        "generation": {
            **{k: v for k, v in params.items() if k not in ("response_format", "structured_outputs", "guided_json")},
            "constrained": config.constrained,
            "system_prompt": {"models": models_prompt(config, evalset), "teacher": "teacher"},
            "schema_sha256": hashlib.sha256(schema_text).hexdigest(),
        },
        "models": models,
        **metrics,
        "warnings": overlap.warning(evalset.overlap) + warnings_for(config, task, metrics, params),
        "config": config.as_dict(),
        "versions": versions(),
    }
    report.write_all(out, task, evalset, answers, rows, results, config.examples)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(EvalConfig, __doc__ or "", EPILOG, prog="python -m eval.run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill stops the servers like Ctrl-C does
    loaded: list[EvalConfig] = []

    def work() -> int:
        config = load_config(args, EvalConfig, validate)
        loaded.append(config)
        results = run(config, ["python", "-m", "eval.run", *(argv if argv is not None else sys.argv[1:])])
        if results:
            for line in report.summary_lines(results, config.out or ""):
                print(line)
        return 0

    def stored_answers() -> str:
        out = loaded[0].out if loaded else None
        where = Path(out) / "cache.sqlite" if out else None
        return (
            f"answers received so far (if any) are stored in {where}: rerun the same command to resume" if where else ""
        )

    return run_cli(work, stored="answers received so far are stored", resume_hint=stored_answers)


if __name__ == "__main__":
    sys.exit(main())
