"""One row's way through the teacher: ask, parse, validate, and on failure ask again, within bounds.

The ladder for a row: ask; a reply cut by the completion-token limit is asked once more with twice the limit,
then rejected as ``truncated``; a reply that fails the task's checks is re-asked with the error (at most
``max_reasks`` times, never the whole history), then rejected with its reason. Every attempt passes the
budget first: a row the budget cannot cover ends ``budget_exhausted`` and no row after it is asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from data_gen.client.api import describe_error, is_fatal
from data_gen.client.batch import Deferred
from data_gen.client.budget import BudgetExhausted
from data_gen.client.types import ChatRequest, Completion, Usage, request_key
from data_gen.errors import TeacherSetupError
from data_gen.reasons import REPLY_REJECTIONS
from data_gen.run.config import DistillConfig
from data_gen.sources.records import Record
from data_gen.sources.text import unencodable
from data_gen.tasks.parsing import RowRejected
from data_gen.tasks.task import Parsed, Task

NOT_REASKED = {"declined"}  # a refusal is an answer: asking again with "your refusal failed validation" is waste


@dataclass
class Outcome:
    """What happened to one row that was sent to the teacher."""

    record: Record
    parsed: Parsed | None = None
    reason: str | None = None
    detail: str = ""
    completion: Completion | None = None
    usage: Usage = field(default_factory=Usage)  # every reply this row used, stored earlier or not
    sent_usage: Usage = field(default_factory=Usage)  # replies paid for in this run
    asks: int = 0
    sent: int = 0
    bumps: int = 0
    key: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None

    @property
    def from_cache(self) -> int:
        return self.asks - self.sent

    def reject(self, reason: str, detail: str) -> Outcome:
        self.reason, self.detail = reason, detail
        return self

    def count(self, completion: Completion) -> None:
        self.asks += 1
        self.completion = completion
        self.usage.add(completion.usage)
        if not completion.from_cache:
            self.sent += 1
            self.sent_usage.add(completion.usage)


def sampling_params(config: DistillConfig, task: Task) -> dict[str, Any]:
    return {
        "temperature": config.temperature if config.temperature is not None else task.temperature,
        "max_tokens": config.max_completion_tokens or task.max_completion_tokens,
        "top_p": config.top_p,
        "seed": config.seed,
    }


class Distiller:
    """Decides accept / reject for each row, asking the teacher as often as the ladder allows."""

    def __init__(self, config: DistillConfig, task: Task, teacher: Any) -> None:
        self.config = config
        self.task = task
        self.teacher = teacher
        self.params = sampling_params(config, task)
        # a deterministic teacher would give the same answer again: re-asking it only costs time
        self.max_reasks = config.max_reasks if getattr(teacher, "reaskable", True) else 0
        self.stop_reason: str | None = None  # set once the budget refuses: no further row is asked

    def first_request(self, record: Record) -> ChatRequest:
        return ChatRequest(self.teacher.model, self.task.messages(record.text), self.params, text=record.text)

    async def ask(self, record: Record) -> Outcome:
        if self.stop_reason:
            return Outcome(record).reject("budget_exhausted", f"not asked: {self.stop_reason}")
        outcome = await self._ladder(record, refresh=False)
        if self.config.refresh_rejected and outcome.reason in REPLY_REJECTIONS and outcome.from_cache:
            fresh = await self._ladder(record, refresh=True)  # new replies replace the stored ones
            fresh.usage.add(outcome.usage)
            return fresh
        return outcome

    def _key(self, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        return request_key(self.teacher.endpoint, ChatRequest(self.teacher.model, messages, params).body())

    async def _ladder(self, record: Record, refresh: bool) -> Outcome:
        outcome = Outcome(record)
        base = self.task.messages(record.text)
        messages, limit, reasks = base, self.params["max_tokens"], 0
        asked: set[str] = set()  # request keys of this row's ladder
        while True:
            params = {**self.params, "max_tokens": limit}
            outcome.key = self._key(messages, params)
            asked.add(outcome.key)
            request = ChatRequest(self.teacher.model, messages, params, text=record.text, key=outcome.key)
            try:
                completion = await self.teacher.complete(request, refresh=refresh)
            except BudgetExhausted as exc:
                self.stop_reason = self.stop_reason or str(exc)
                return outcome.reject("budget_exhausted", f"not asked: {exc}")
            except Deferred:
                return outcome.reject("batch_pending", "written to a batch file")
            except Exception as exc:
                if is_fatal(exc):
                    raise TeacherSetupError(f"{self.teacher.endpoint}: {describe_error(exc)}") from None
                return outcome.reject("teacher_error", describe_error(exc))
            outcome.count(completion)
            if unencodable(completion.text) or unencodable(completion.reasoning or ""):
                return outcome.reject("undecodable_reply", "the reply holds a lone surrogate (not valid Unicode "
                                      "text); it is kept in cache.sqlite, escaped, and not asked again")  # fmt: skip
            if completion.finish_reason == "length":
                if outcome.bumps == 0:  # once per row, with twice the room
                    outcome.bumps, limit = 1, limit * 2
                    continue
                return outcome.reject("truncated", f"the reply hit max_tokens={limit}, also after doubling it")
            try:
                outcome.parsed = self.task.parse(completion.text, completion.reasoning)
            except RowRejected as rejection:
                suffix = f" (after {reasks} re-ask{'s' * (reasks != 1)})" if reasks else ""
                if reasks < self.max_reasks and rejection.reason not in NOT_REASKED:
                    reask = self.task.reask_messages(base, completion.text, rejection.detail or rejection.reason)
                    if self._key(reask, {**self.params, "max_tokens": limit}) not in asked:
                        reasks, messages = reasks + 1, reask
                        continue
                    # the teacher repeated its reply: this re-ask was sent already, and its answer is this one
                    suffix = f" (after {reasks} re-ask{'s' * (reasks != 1)}; the teacher repeated its reply)"
                return outcome.reject(rejection.reason, rejection.detail + suffix)
            if self.config.require_gold_agreement:  # never re-asked: the gold label must not leak into prompts
                try:
                    self.task.check_gold(outcome.parsed, record.label)
                except RowRejected as rejection:
                    return outcome.reject(rejection.reason, rejection.detail)
            return outcome
