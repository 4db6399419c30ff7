"""The three outputs of a run: results.json, predictions.jsonl, report.md (with PNG plots by matplotlib).

Files are written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_gen.client.types import Completion
from data_gen.tasks.kinds import KINDS
from data_gen.tasks.task import Task
from data_gen.writers.atomic import AtomicFiles, jsonl_line
from eval.data import EvalSet
from eval.markdown import headline_names, md_table, num, short, with_interval
from eval.overlap import describe as overlap_sentence
from eval.plots import make_plots


def write_all(
    out: Path,
    task: Task,
    evalset: EvalSet,
    answers: dict[str, list[Completion]],
    rows: dict[str, list[dict[str, Any]]],
    results: dict[str, Any],
    examples: int,
) -> None:
    lines = []
    for label, completions in answers.items():
        for item, completion, row in zip(evalset.items, completions, rows[label], strict=True):
            lines.append(
                jsonl_line(
                    {
                        "model": label,
                        "id": item.id,
                        "row": item.row,
                        "text": item.text,
                        "gold": item.gold,
                        "raw": completion.text,
                        "reasoning": completion.reasoning,
                        "finish_reason": completion.finish_reason,
                        **row,
                    }
                )
            )
    plots = make_plots(out / "plots", task, results)
    results["plots"] = [str(p.relative_to(out)) for p in plots]
    with AtomicFiles(out) as files:  # all three or none; a model's lone surrogate stays visible (backslashreplace)
        files.open("predictions.jsonl").write("\n".join(lines) + "\n")
        results_json = json.dumps(results, indent=1, ensure_ascii=False, default=str) + "\n"
        files.open("results.json", "backslashreplace").write(results_json)
        files.open("report.md", "backslashreplace").write(render(task, evalset, rows, results, plots, out, examples))


def _found(overlap: dict[str, Any]) -> str:
    return f"{overlap['exact']} exact + {overlap['near']} near duplicates"


def summary_lines(results: dict[str, Any], out: str) -> list[str]:
    """What the terminal shows at the end: the report's path, the data, one line per model, the first comparison."""
    facts = results["data"]
    warnings = len(results["warnings"])
    lines = [
        f"report: {Path(out) / 'report.md'} (results.json, predictions.jsonl, plots/ beside it)",
        f"data: {facts['evaluated']} rows of {facts['path']} ({facts['kind']}); {results['seconds']} s"
        + (f"; in training data: {_found(facts['overlap'])}" if facts.get("overlap") else "")
        + (f"; {warnings} warning(s), see the report" if warnings else ""),
    ]
    names = [*[n for n in headline_names(results) if not n.startswith("format.")][:2], "format.parsed",
             "format.schema_valid"]  # fmt: skip
    for label, values in results["intervals"].items():
        shown = ", ".join(f"{n} {with_interval(values.get(n))}" for n in names if n in values)
        lines.append(f"{label}: {shown}")
    if results["comparisons"]:
        comparison = results["comparisons"][0]
        shown = []
        for name in names:
            d = comparison["differences"].get(name)
            if d is not None:
                shown.append(f"{name} {num(d['difference'])} [{num(d['low'])}, {num(d['high'])}]")
        lines.append(f"{comparison['b']} - {comparison['a']}: {', '.join(shown)}")
    return lines


# ---------------------------------------------------------------- report.md
def render(
    task: Task,
    evalset: EvalSet,
    rows: dict[str, list[dict[str, Any]]],
    results: dict[str, Any],
    plots: list[Path],
    out: Path,
    examples: int,
) -> str:
    facts, labels = results["data"], list(results["intervals"])
    lines = [
        f"# Evaluation: `{task.name}` on `{facts['path']}`",
        "",
        f"{results['created_at']} · {facts['evaluated']} rows ({facts['kind']}, sha256 `{facts['sha256'][:12]}`) · "
        f"models: {', '.join(labels)} · {results['seconds']} s",
        "",
        f"`{results['command']}`",
        "",
    ]
    if results["warnings"]:
        lines += ["## Warnings", "", *[f"- {w}" for w in results["warnings"]], ""]
    if facts.get("overlap"):
        lines += _overlap_section(facts["overlap"])
    names = headline_names(results)
    lines += ["## Headline metrics", "", "Value [95% bootstrap interval]; a missing answer counts as wrong.", ""]
    lines += md_table(
        ["metric", *labels],
        [[name, *(with_interval(results["intervals"][label].get(name)) for label in labels)] for name in names],
    )
    if any(p.name == "headline.png" for p in plots):
        lines += ["", "![headline metrics](plots/headline.png)"]
    if results["comparisons"]:
        lines += [
            "",
            "## Comparisons",
            "",
            "Difference b - a on the same prompts, paired bootstrap 95% interval; McNemar's exact test for accuracies.",
            "",
        ]
        table = []
        for comparison in results["comparisons"]:
            for name in names:
                d = comparison["differences"].get(name)
                if d is None:
                    continue
                test = comparison["mcnemar"].get(name)
                p_value = f"{test['p_value']:.3g} ({test['only_a']} vs {test['only_b']})" if test else ""
                interval = f"[{num(d['low'])}, {num(d['high'])}]"
                table.append([f"{comparison['b']} - {comparison['a']}", name, num(d["difference"]), interval, p_value])
        lines += md_table(["pair", "metric", "difference", "95% interval", "McNemar p (only a vs only b right)"], table)
    lines += [
        "",
        "## Format ladder",
        "",
        "Share of answers that pass each step (agreement: the thinking's stated "
        "conclusion equals the JSON's label, over answers that state one).",
        "",
    ]
    steps = ("thinking", "json_found", "parsed", "schema_valid", "truncated", "agreement")
    table = []
    for label in labels:
        fmt = results["metrics"][label]["format"]
        failures = ", ".join(f"{k} {v}" for k, v in fmt["failures"].items()) or "none"
        table.append([label, *(num(fmt[s]) for s in steps), failures])
    lines += md_table(["model", *steps, "first failure (count)"], table)
    lines += _calibration_section(task, results, labels, plots)
    for name, kind in task.metrics.items():
        reports = {label: results["metrics"][label]["fields"].get(name) for label in labels}
        reports = {label: r for label, r in reports.items() if r}
        if not reports:
            continue
        lines += ["", f"## `{name}` ({kind})", ""]
        lines += _field_section(task, name, kind, reports)
        for plot in plots:
            if plot.stem in (f"confusion_{name}", f"per_class_f1_{name}"):
                lines += ["", f"![{plot.stem}](plots/{plot.name})"]
    lines += _examples(task, evalset, rows, labels, examples)
    lines += [
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(
            {"generation": results["generation"], "models": results["models"], "data": facts},
            indent=1,
            ensure_ascii=False,
            default=str,
        ),
        "```",
        "",
    ]
    return "\n".join(lines)


def _calibration_section(task: Task, results: dict[str, Any], labels: list[str], plots: list[Path]) -> list[str]:
    calibrations = {label: results["metrics"][label].get("calibration") for label in labels}
    calibrations = {label: c for label, c in calibrations.items() if c}
    if not calibrations:
        return []
    lines = [
        "",
        f"## Calibration of `{task.label_field}`",
        "",
        "The model's probability of the class it wrote (from the top log-probabilities at the label, renormalised over "
        "the classes) against how often it was right, in 10 equal-width bins; ECE: expected calibration error.",
        "",
    ]
    table = [
        [label, str(c["n"]), num(c["ece"]), num(c["mean_confidence"]), num(c["accuracy"])]
        for label, c in calibrations.items()
    ]
    lines += md_table(["model", "rows", "ECE", "mean confidence", "accuracy"], table)
    if any(p.name == "reliability.png" for p in plots):
        lines += ["", "![reliability](plots/reliability.png)"]
    return lines


def _overlap_section(overlap: dict[str, Any]) -> list[str]:
    lines = [
        "## Test rows in the training data",
        "",
        f"Training data `{overlap['train_data']}`: {overlap_sentence(overlap)} (near: MinHash Jaccard >= "
        f"{overlap['threshold']} over character 5-grams).",
    ]
    if overlap["matches"]:
        lines += ["", *[f"- {match}" for match in overlap["matches"]]]
    return [*lines, ""]


def _field_section(task: Task, name: str, kind: str, reports: dict[str, dict[str, Any]]) -> list[str]:
    """The field's table: one row per model, the columns its metric kind lays out."""
    columns = KINDS[kind].columns(task, name)
    table = [[label, *(num(column.read(report)) for column in columns)] for label, report in reports.items()]
    return md_table(["model", *(column.header for column in columns)], table)


def _examples(
    task: Task, evalset: EvalSet, rows: dict[str, list[dict[str, Any]]], labels: list[str], limit: int
) -> list[str]:
    """Rows where the first two models disagree on the first scored field, gold first."""
    if len(labels) < 2 or not limit or not task.metrics:
        return []
    a, b = labels[0], labels[1]
    name = next(iter(task.metrics))
    picked = []
    for item, ra, rb in zip(evalset.items, rows[a], rows[b], strict=True):
        pa, pb = ra["fields"][name]["predicted"], rb["fields"][name]["predicted"]
        if pa != pb:
            picked.append(
                [
                    item.id,
                    short(item.text, 120),
                    short(item.gold.get(name), 60) if item.gold else "",
                    short(pa, 60) if pa is not None else "missing",
                    short(pb, 60) if pb is not None else "missing",
                ]
            )
        if len(picked) >= limit:
            break
    if not picked:
        return ["", "## Before / after", "", f"{a} and {b} give the same `{name}` on every row."]
    return [
        "",
        f"## Before / after: `{name}` where {a} and {b} disagree",
        "",
        *md_table(["id", "text", "gold", a, b], picked),
    ]
