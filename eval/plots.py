"""The PNG plots of report.md, drawn with matplotlib: per-class scores, confusion matrices, calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_gen.tasks.kinds import KINDS
from data_gen.tasks.task import Task
from eval.markdown import headline_names


def make_plots(folder: Path, task: Task, results: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    labels = list(results["intervals"])
    names = [n for n in headline_names(results) if not n.endswith("missing_rate")][:10]
    if names:
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names) * max(1, len(labels)) / 2), 4))
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            values = [results["intervals"][label].get(n) or {} for n in names]
            heights = [v.get("value") or 0 for v in values]
            low = [h - (v.get("low") if v.get("low") is not None else h) for h, v in zip(heights, values, strict=True)]
            high = [
                (v.get("high") if v.get("high") is not None else h) - h for h, v in zip(heights, values, strict=True)
            ]
            ax.bar([x + i * width for x in range(len(names))], heights, width, yerr=[low, high], capsize=3, label=label)
        ax.set_xticks([x + width * (len(labels) - 1) / 2 for x in range(len(names))], names, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_title("Headline metrics (95% bootstrap intervals)")
        ax.legend()
        made.append(_save(fig, folder / "headline.png", plt))
    for name, kind in task.metrics.items():
        if not KINDS[kind].classes:
            continue
        reports = {label: results["metrics"][label]["fields"].get(name) for label in labels}
        reports = {label: r for label, r in reports.items() if r}
        if not reports:
            continue
        classes = task.enum(name)
        fig, axes = plt.subplots(1, len(reports), figsize=(3.6 * len(reports), 3.4), squeeze=False)
        for ax, (label, rep) in zip(axes[0], reports.items(), strict=True):
            matrix = rep["confusion"]
            ax.imshow(matrix, cmap="Blues")
            for r, row in enumerate(matrix):
                for c, count in enumerate(row):
                    ax.text(c, r, str(count), ha="center", va="center")
            ax.set_xticks(range(len(classes)), classes, rotation=30)
            ax.set_yticks(range(len(classes)), classes)
            ax.set_xlabel(f"predicted ({rep['missing']} missing)")
            ax.set_ylabel("gold")
            ax.set_title(label)
        fig.suptitle(f"{name}: confusion matrices")
        made.append(_save(fig, folder / f"confusion_{name}.png", plt))
        fig, ax = plt.subplots(figsize=(6, 3.6))
        width = 0.8 / len(reports)
        for i, (label, rep) in enumerate(reports.items()):
            f1s = [rep["per_class"][c]["f1"] for c in classes]
            ax.bar([x + i * width for x in range(len(classes))], f1s, width, label=label)
        ax.set_xticks([x + width * (len(reports) - 1) / 2 for x in range(len(classes))], classes)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("F1")
        ax.set_title(f"{name}: F1 per class")
        ax.legend()
        made.append(_save(fig, folder / f"per_class_f1_{name}.png", plt))
    calibrations = {label: results["metrics"][label].get("calibration") for label in labels}
    calibrations = {label: c for label, c in calibrations.items() if c}
    if calibrations:
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        for label, cal in calibrations.items():
            used = [b for b in cal["bins"] if b["count"]]
            ax.plot([b["confidence"] for b in used], [b["accuracy"] for b in used], marker="o",
                    label=f"{label} (ECE {cal['ece']:.3f}, n={cal['n']})")  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"confidence in its {task.label_field} (bin mean)")
        ax.set_ylabel("accuracy in the bin")
        ax.set_title("Reliability")
        ax.legend(fontsize=8)
        made.append(_save(fig, folder / "reliability.png", plt))
    return made


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
