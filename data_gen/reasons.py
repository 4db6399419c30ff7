"""Every reason a row can be rejected for, in one registry: the codes are a public contract (``rejects.jsonl``, the
manifest's ``rejected_by_reason``, the dataset card), so a code that is not registered here is refused where it is
raised. Adding a reason: one entry below, then raise it where the check lives.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    """``stage``: input (the row as read), reply (what the teacher said: a stored reply that caused it is asked
    again by ``--refresh-rejected``), teacher (the call itself), output (the example as written)."""

    stage: str
    meaning: str


REASONS: dict[str, Reason] = {
    # the row as read (data_gen/sources/, data_gen/run/read.py, eval/data.py)
    "malformed_input": Reason("input", "a line or record of the file cannot be read (bad JSON, wrong columns)"),
    "empty_text": Reason("input", "the text field is empty"),
    "text_too_long": Reason("input", "the text is longer than --max-chars"),
    "undecodable_text": Reason("input", "bytes that do not decode, or a lone surrogate"),
    "control_characters": Reason("input", "a NUL, or a control character the task does not keep"),
    "duplicate_id": Reason("input", "the same id as an earlier row"),
    "duplicate_text": Reason("input", "the same text as an earlier row"),
    "near_duplicate_text": Reason("input", "nearly the same text as an earlier row (MinHash)"),
    "contaminated": Reason("input", "equal or nearly equal to a text of an evaluation set (--decontaminate)"),
    "no_gold": Reason("input", "evaluation against gold labels, and the row has none"),
    # what the teacher said (data_gen/tasks/, data_gen/run/ladder.py)
    "empty_response": Reason("reply", "the reply is empty"),
    "undecodable_reply": Reason("reply", "the reply holds a lone surrogate (not valid Unicode)"),
    "no_thinking": Reason("reply", "the reasoning block the task requires is missing"),
    "no_json": Reason("reply", "no JSON object in the answer"),
    "invalid_json": Reason("reply", "unparseable JSON, or more than one object"),
    "schema_invalid": Reason("reply", "the answer breaks the task's JSON Schema"),
    "thinking_mismatch": Reason("reply", "the reasoning concludes otherwise than the answer"),
    "declined": Reason("reply", "the teacher declined to answer"),
    "truncated": Reason("reply", "the reply hit the completion limit, also after doubling it"),
    "gold_disagreement": Reason("reply", "the answer disagrees with the gold label (--require-gold-agreement)"),
    # the call (data_gen/run/ladder.py)
    "teacher_error": Reason("teacher", "the request failed after its retries"),
    "budget_exhausted": Reason("teacher", "not asked: the budget could not cover it (a higher cap resumes)"),
    "batch_pending": Reason("teacher", "written to a batch file; not a rejection, the next run completes it"),
    # the example as written (data_gen/run/write.py, data_gen/run/score.py)
    "record_invalid": Reason("output", "the training record breaks its format's schema"),
    "kd_rows_invalid": Reason("output", "the KD teacher's top-k rows cannot be used"),
    "kd_score_failed": Reason("output", "the KD teacher could not score the reply"),
    "low_confidence": Reason("output", "the KD teacher's probability of the label is below --min-label-confidence"),
}
REPLY_REJECTIONS = frozenset(name for name, reason in REASONS.items() if reason.stage == "reply")


def registered(code: str) -> str:
    """``code`` itself when it is a registered reason; ValueError (a bug in the code, not in the input) if not."""
    if code not in REASONS:
        raise ValueError(f"rejection reason {code!r} is not registered: add it to data_gen/reasons.py")
    return code
