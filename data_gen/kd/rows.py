"""Logit-level distillation data: the teacher's top-k next-token log-probabilities over every training reply, in
the format Axolotl's KD dataset type reads, and the teacher's belief in each class at the label position.

Axolotl (``type: axolotl.integrations.kd.chat_template``) reads ``logprobs`` and ``target_token_ids``, two parallel
lists with one row per position of the reply (its content, the end-of-turn token and what the chat template
appends), aligned to the end of the tokenized conversation; row p holds the teacher's distribution over the token
*after* position p. ``LocalTeacher.score`` returns exactly that, over the exact text the student is trained on.

The label belief: at the position where the JSON's label value starts (``"sentiment": "positive"``), the teacher's
probability of the first token of each class, renormalised over the classes. ``confidence`` is the share of the
class the example is labelled with, ``mass`` how much of the teacher's probability the classes held at all.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from data_gen.client.cache import ResponseCache
from data_gen.client.types import Completion, Usage, request_key
from data_gen.teachers.local import Scored


@dataclass
class LabelBelief:
    probs: dict[str, float]  # renormalised over the classes
    confidence: float  # probs[label of the example]
    mass: float  # total teacher probability on the classes' first tokens (before renormalising)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_span(text: str, field: str) -> tuple[int, int] | None:
    """Where the JSON states ``field``'s string value (``"sentiment": "positive"`` -> the span of positive): the
    last occurrence, since the JSON follows the thinking; None when the text states none."""
    found = list(re.finditer(rf'"{re.escape(field)}"\s*:\s*"', text))
    if not found:
        return None
    start = found[-1].end()
    end = text.find('"', start)
    return (start, end) if end > start else None


def label_belief(tokenizer: Any, scored: Scored, reply: str, field: str, labels: list[str]) -> LabelBelief | None:
    """The teacher's belief in each class where the reply states its ``field``; None when it cannot be read off
    (no such field, a label token merged with the text before it, classes sharing a first token)."""
    span = label_span(reply, field)
    if span is None:
        return None
    start, end = span
    value = reply[start:end]
    if value not in labels:
        return None
    reply_ids = scored.input_ids[scored.prompt_tokens :]
    prefix = tokenizer(reply[:start], add_special_tokens=False)["input_ids"]
    if reply_ids[: len(prefix)] != prefix or not prefix:
        return None  # the label's first token does not start where the value starts
    first: dict[str, int] = {}
    for label in labels:
        ids = tokenizer(reply[:start] + label + reply[end:], add_special_tokens=False)["input_ids"]
        if ids[: len(prefix)] != prefix or len(ids) <= len(prefix):
            return None
        first[label] = ids[len(prefix)]
    if len(set(first.values())) < len(labels) or first[value] != reply_ids[len(prefix)]:
        return None
    row = len(prefix) - 1  # the row of the position before the label predicts the label's first token
    top = dict(zip(scored.token_ids[row], scored.logprobs[row], strict=True))
    raw = {label: math.exp(top[t]) if t in top else 0.0 for label, t in first.items()}
    mass = sum(raw.values())
    if mass <= 0:
        return LabelBelief({label: 0.0 for label in labels}, 0.0, 0.0)
    probs = {label: round(p / mass, 6) for label, p in raw.items()}
    return LabelBelief(probs, probs[value], round(mass, 6))


def check_rows(scored: Scored, top_k: int) -> str | None:
    """Why these rows cannot be used (Axolotl would misalign or crash on them silently), or None."""
    expected = len(scored.input_ids) - scored.prompt_tokens
    if len(scored.logprobs) != expected or len(scored.token_ids) != expected:
        return f"{len(scored.logprobs)} rows for {expected} reply positions"
    if _regular(scored, expected, top_k):
        return None
    for i, (values, ids) in enumerate(zip(scored.logprobs, scored.token_ids, strict=True)):
        if len(values) != top_k or len(ids) != top_k:
            return f"row {i} has {len(values)} log-probabilities, not {top_k}"
        if any(not math.isfinite(v) or v > 1e-6 for v in values):
            return f"row {i} holds a log-probability that is not finite or above 0"
        if any(type(t) is not int or t < 0 for t in ids):
            return f"row {i} holds a token id that is not a non-negative integer"
    return None


def _regular(scored: Scored, expected: int, top_k: int) -> bool:
    """check_rows' conditions over all rows at once (the common case); False sends it row by row for the reason."""
    import numpy as np

    try:
        values, ids = np.asarray(scored.logprobs, dtype=np.float64), np.asarray(scored.token_ids)
    except (TypeError, ValueError):  # rows of different lengths, or not numbers
        return False
    if values.shape != (expected, top_k) or ids.shape != values.shape or ids.dtype.kind != "i":
        return False
    return bool(np.isfinite(values).all() and (values <= 1e-6).all() and (ids >= 0).all())


def dumps(scored: Scored) -> str:
    """The rows as JSON, serialised once (the cache and the workspace both store them)."""
    if scored.json is None:
        # the fields as they are, not dataclasses.asdict, which deep-copies every row (ten times slower)
        fields = {
            "input_ids": scored.input_ids,
            "prompt_tokens": scored.prompt_tokens,
            "logprobs": scored.logprobs,
            "token_ids": scored.token_ids,
        }
        scored.json = json.dumps(fields, separators=(",", ":"))
    return scored.json


def loads(text: str) -> Scored:
    return Scored(**json.loads(text), json=text)


class CachedScorer:
    """Puts the response cache in front of a scorer: rows already computed (a served teacher's GPU time) are not
    asked for again after a crash or in a re-run. The key names the scorer, its tokenizer, K and the messages."""

    def __init__(self, scorer: Any, cache: ResponseCache) -> None:
        self.scorer = scorer
        self.cache = cache
        self.hits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scorer, name)

    async def score(self, messages: list[dict[str, str]], top_k: int) -> Scored:
        body = {"model": self.scorer.model, "tokenizer": self.scorer.tokenizer_id, "kd_top_k": top_k,
                "messages": messages}  # fmt: skip
        key = request_key(self.scorer.endpoint, body)
        stored = self.cache.get(key)
        if stored is not None:
            self.hits += 1
            return loads(stored.text)
        scored = await self.scorer.score(messages, top_k)
        usage = Usage(prompt_tokens=len(scored.input_ids), completion_tokens=1)
        self.cache.put(key, self.scorer.endpoint, body, Completion(dumps(scored), finish_reason="stop", usage=usage))
        return scored
