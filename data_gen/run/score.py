"""Pass 3 (--kd-top-k only), score: the KD teacher scores every accepted reply (top-k rows, the label belief);
examples it cannot score, or whose label it doubts, become rejections."""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from data_gen.client.api import describe_error, is_fatal, is_request_error
from data_gen.client.cache import ResponseCache
from data_gen.client.limits import run_bounded
from data_gen.client.types import normalize_endpoint
from data_gen.errors import ConfigError
from data_gen.kd import rows as kd
from data_gen.run.config import DistillConfig, kd_server
from data_gen.run.progress import ProgressFile
from data_gen.run.workspace import StoredExample, Workspace
from data_gen.tasks.task import Task
from data_gen.writers.training import Example


async def kd_scorer(config: DistillConfig, teacher: Any, cache: ResponseCache | None) -> Any:
    """The model that scores replies for logit distillation, loaded or reached and checked against the student's
    tokenizer before anything is asked: logit distillation compares distributions token by token."""
    from data_gen.teachers.local import LocalTeacher, load_tokenizer, tokenizer_fingerprint

    server = kd_server(config)
    if server is not None:
        from data_gen.kd.served import ServedScorer

        own = config.teacher == "openai" and normalize_endpoint(server) == normalize_endpoint(config.base_url or "")
        key = os.environ.get(config.api_key_env) if (own and config.api_key_env) else None  # never sent elsewhere
        model = config.kd_model or (config.model if own else None)
        limits = {"concurrency": config.concurrency, "timeout": config.timeout, "max_retries": config.max_retries}
        scorer = ServedScorer(server, config.student_tokenizer or "", config.kd_top_k, model, key, **limits)
        try:
            await scorer.check()
        except BaseException:
            await scorer.close()
            raise
    else:
        scorer = LocalTeacher(config.kd_teacher) if config.kd_teacher else teacher
        await scorer.check()
        if config.student_tokenizer is not None:
            student = load_tokenizer(config.student_tokenizer)
            if tokenizer_fingerprint(student) != tokenizer_fingerprint(scorer.tokenizer):
                raise ConfigError(
                    f"--student-tokenizer {config.student_tokenizer} does not tokenize like the KD teacher "
                    f"{scorer.path} (vocabularies of {len(student)} and {len(scorer.tokenizer)} tokens, or another "
                    "chat template): logit distillation needs a teacher of the student's family; use hard-label "
                    "distillation (no --kd-top-k)"
                )
    return kd.CachedScorer(scorer, cache) if (cache is not None and config.cache) else scorer


@dataclass
class Scored:
    """One accepted reply after the KD teacher saw it: its rows, or why there are none."""

    item: StoredExample
    rows: Any = None
    failure: tuple[str, str] | None = None  # (reason, detail)


@dataclass
class ScorePass:
    """The teacher scores every accepted reply (top-k rows for Axolotl's KD trainer, the label belief), several at a
    time; examples whose rows cannot be had or used, or whose label the teacher doubts (--min-label-confidence),
    are rejected with the reason."""

    config: DistillConfig
    task: Task
    scorer: Any
    work: Workspace
    outcomes: Counter = field(default_factory=Counter)
    confidences: list[float] = field(default_factory=list)

    async def score(self, item: StoredExample) -> Scored:
        """Ask for the reply's top-k rows; a request that fails for good is a rejection, not a crash."""
        from data_gen.kd.served import ScoringError

        system = self.task.system_for(self.config.training_prompt)
        messages = Example(item.id, "", system, item.user, item.assistant).messages()
        try:
            return Scored(item, await self.scorer.score(messages, self.config.kd_top_k))
        except ScoringError as exc:
            return Scored(item, failure=("kd_rows_invalid", str(exc)))
        except Exception as exc:
            if is_fatal(exc) or not is_request_error(exc):
                raise
            return Scored(item, failure=("kd_score_failed", describe_error(exc)))

    def judge(self, scored: Scored) -> tuple[tuple[str, str] | None, Any]:
        """(why the example is rejected, or None; the teacher's belief in its label, when there is one)."""
        config, task = self.config, self.task
        if scored.failure is not None:
            return scored.failure, None
        if invalid := kd.check_rows(scored.rows, config.kd_top_k):
            return ("kd_rows_invalid", invalid), None
        belief = None
        if task.label_field:
            belief = kd.label_belief(self.scorer.tokenizer, scored.rows, scored.item.assistant, task.label_field,
                                     task.labels)  # fmt: skip
        if config.min_label_confidence and (belief is None or belief.confidence < config.min_label_confidence):
            shown = f"{belief.confidence:.3f}" if belief else "unreadable"
            return ("low_confidence", f"teacher probability of its label {shown} < {config.min_label_confidence}"), None
        return None, belief

    def record(self, scored: Scored) -> None:
        """Store the rows (and the belief) of an example that passed, or turn it into a rejection."""
        item, work = scored.item, self.work
        failure, belief = self.judge(scored)
        if failure is not None:
            reason, detail = failure
            work.drop_example(item.row)
            work.reject(item.row, item.id, reason, f"row {item.row}: {detail}")
            self.outcomes[reason] += 1
            return
        if belief is not None:
            work.set_meta(item.row, {**item.meta, "label_belief": belief.to_dict()})
            self.confidences.append(belief.confidence)
        work.add_kd(item.row, kd.dumps(scored.rows))
        self.outcomes["scored"] += 1

    def summary(self) -> dict[str, Any]:
        """The manifest's ``kd`` section."""
        config, confidences = self.config, self.confidences
        return {
            "top_k": config.kd_top_k,
            "teacher": {"model": self.scorer.model, "path": self.scorer.path},
            "student_tokenizer": config.student_tokenizer,
            "scored": self.outcomes.get("scored", 0),
            "from_cache": getattr(self.scorer, "hits", 0),
            "rejected_by_reason": {k: v for k, v in self.outcomes.items() if k != "scored"},
            "min_label_confidence": config.min_label_confidence,
            "label_belief": {
                "examples": len(confidences),
                "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
            },
        }


async def score_all(config: DistillConfig, task: Task, scorer: Any, work: Workspace) -> dict[str, Any]:
    """Pass 3: every accepted reply scored (``ScorePass``), with a progress bar; returns the manifest's ``kd``."""
    from tqdm import tqdm

    scoring = ScorePass(config, task, scorer, work)
    items = list(work.examples())
    bar = tqdm(total=len(items), unit="row", desc="score (kd)", disable=not config.progress, dynamic_ncols=True,
               file=sys.stderr)  # fmt: skip

    shown = ProgressFile("score")  # for a --workers parent's bar

    def record(scored: Scored) -> None:
        bar.update()
        scoring.record(scored)
        shown.update(bar.n, len(items))

    try:
        await run_bounded(items, scoring.score, max(1, config.concurrency), record)
    finally:
        bar.close()
    shown.update(bar.n, len(items), final=True)
    return scoring.summary()
