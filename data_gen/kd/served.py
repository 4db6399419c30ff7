"""A teacher behind ``vllm serve`` scores replies for logit distillation over HTTP.

The student's tokenizer renders each conversation to the token ids the student will train on; they are the prompt
of one ``/v1/completions`` request with ``echo``, ``logprobs: K``, ``max_tokens: 1``, ``temperature: 0`` and
``return_tokens_as_token_ids``. vLLM answers with one entry per token: for prompt token i > 0 the top-K
log-probabilities of the token at i given the tokens before it (its prompt log-probabilities, plus the prompt token
itself when it is not among them), keyed ``token_id:<n>``, then the same for the one generated token. Row p of
Axolotl's KD format (the distribution of the token after position p) is therefore entry p + 1, and the last row is
the generated token's entry.

``check`` refuses a server that cannot do this before anything is asked: its ``/tokenize`` must render a probe
conversation to exactly the ids the student's tokenizer gives (same vocabulary, same chat template), and a probe
scoring must come back with token ids and K log-probabilities per position. OpenAI's and DeepSeek's APIs have
neither; ``vllm serve`` allows 20 log-probabilities unless started with ``--max-logprobs``.
"""

from __future__ import annotations

import importlib.util
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import numpy as np

from data_gen.client.api import ChatClient, describe_error
from data_gen.client.types import Usage, normalize_endpoint
from data_gen.errors import ConfigError
from data_gen.teachers.local import Scored, clamp, clamp_rows, conversation_ids, load_tokenizer, tokenizer_fingerprint

# covers the chat template (system, user, assistant, end of turn), digits, punctuation, JSON and non-ASCII text
PROBE = [
    {"role": "system", "content": "You are a financial analyst. Answer in JSON."},
    {"role": "user", "content": "Société Générale cut its 2025 outlook: revenue −4.5% to €6.1bn; shares fell 7%."},
    {"role": "assistant", "content": '<think>Lower guidance.</think>\n{"sentiment": "negative", "risk": "High"}'},
]


PREFIX = "token_id:"


class ScoringError(ValueError):
    """The server's answer cannot be turned into KD rows (the example is rejected as kd_rows_invalid)."""


def token_id(token: str) -> int:
    """``token_id:1234`` -> 1234, as vLLM names tokens with ``return_tokens_as_token_ids``."""
    number = token[len(PREFIX) :]
    if not token.startswith(PREFIX) or not number.isdigit():
        raise ScoringError(
            f"the server names tokens as text ({token[:20]!r}), not token_id:<n>: it ignores "
            "return_tokens_as_token_ids (start vllm serve with --return-tokens-as-token-ids)"
        )
    return int(number)


def scored_from_echo(response: dict[str, Any], input_ids: list[int], prompt_tokens: int, top_k: int) -> Scored:
    """KD rows from a ``/v1/completions`` answer to the conversation ``input_ids`` sent with ``echo``."""
    choices = response.get("choices") or [{}]
    logprobs = choices[0].get("logprobs") or {}
    tokens, top = logprobs.get("tokens") or [], logprobs.get("top_logprobs") or []
    if not top:
        raise ScoringError("the server returned no log-probabilities for the prompt (echo with logprobs)")
    if len(tokens) != len(input_ids) + 1 or len(top) != len(tokens):
        raise ScoringError(
            f"the server returned {len(top)} positions for {len(input_ids)} prompt tokens + 1 generated (it must "
            "score the prompt it was sent, unchanged)"
        )
    if tokens[: len(input_ids)] != [f"{PREFIX}{t}" for t in input_ids]:
        token_id(tokens[0])  # names that are text, not ids, say so
        raise ScoringError("the server scored other tokens than it was sent (did it add special tokens?)")
    entries = top[prompt_tokens + 1 :]  # entry p + 1 is the distribution after position p
    rows = _top_rows(entries, top_k)
    if rows is None:
        rows = _top_rows_one_by_one(entries, top_k)
    return Scored(list(input_ids), prompt_tokens, *rows)


def _top_rows(entries: list[Any], top_k: int) -> tuple[list[list[float]], list[list[int]]] | None:
    """The K highest of each entry (highest first, ties in the server's rank order), as arrays: a whole answer at
    once, since an answer holds K + 1 entries for each of hundreds of positions. None when the answer is not
    regular (an entry that is not a mapping of ``token_id:<n>`` to at least K numbers, none of them NaN): the
    one-by-one path says what is wrong with it."""
    if not entries or not all(type(entry) is dict for entry in entries):
        return None
    widths = np.fromiter(map(len, entries), dtype=np.int64, count=len(entries))
    if widths.min() < top_k:
        return None
    names = [name for entry in entries for name in entry]
    if not all(map(str.startswith, names, repeat(PREFIX))):
        return None
    digits = [name[len(PREFIX) :] for name in names]
    joined = "".join(digits)
    if not (joined.isascii() and joined.isdigit()) or not 0 < min(map(len, digits)) <= max(map(len, digits)) <= 18:
        return None  # not all token ids, or one beyond int64
    numbers = list(chain.from_iterable(map(dict.values, entries)))
    if not set(map(type, numbers)) <= {float, int}:
        return None
    values = np.array(numbers, dtype=np.float64)
    if np.isnan(values).any():
        return None
    # one row per position, padded to the widest entry with -inf (which sorts after every value kept)
    filled = np.arange(widths.max()) < widths[:, None]
    table = np.full(filled.shape, -np.inf)
    table[filled] = values
    ids = np.zeros(filled.shape, dtype=np.int64)
    ids[filled] = np.fromiter(map(int, digits), dtype=np.int64, count=len(digits))
    order = np.argsort(-table, axis=1, kind="stable")[:, :top_k]  # stable: ties keep the server's order
    return clamp_rows(np.take_along_axis(table, order, axis=1)), np.take_along_axis(ids, order, axis=1).tolist()


def _top_rows_one_by_one(entries: list[Any], top_k: int) -> tuple[list[list[float]], list[list[int]]]:
    rows: list[list[float]] = []
    ids: list[list[int]] = []
    for entry in entries:
        # highest first, ties in the server's (rank) order; vLLM adds the prompt token itself when it is not
        # among the top K, which drops out here
        try:
            ranked = sorted((entry or {}).items(), key=itemgetter(1), reverse=True)[:top_k]
            rows.append([clamp(v) for _, v in ranked])
        except (AttributeError, TypeError, ValueError):
            raise ScoringError(f"the server's log-probabilities are not numbers: {str(entry)[:80]}") from None
        ids.append([token_id(t) for t, _ in ranked])
    return rows, ids


class ServedScorer:
    """``--kd-teacher http://host:8000/v1``: scores like ``LocalTeacher.score``, through ``vllm serve``."""

    kind = "served"

    def __init__(
        self,
        base_url: str,
        student_tokenizer: str,
        top_k: int,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 300.0,
        max_retries: int = 6,
    ) -> None:
        if importlib.util.find_spec("transformers") is None:
            raise ConfigError("a served KD teacher needs transformers for the student's tokenizer: "
                              "sh scripts/setup_env.sh local")  # fmt: skip
        self.tokenizer = load_tokenizer(student_tokenizer)
        self.tokenizer_id = tokenizer_fingerprint(self.tokenizer)[:16]
        self.top_k = top_k
        self.path = normalize_endpoint(base_url)
        self.root = self.path.removesuffix("/v1")  # /tokenize lives at the server's root
        self.client = ChatClient(base_url, model or "", api_key, concurrency, timeout, max_retries)
        self.endpoint = self.client.endpoint

    @property
    def model(self) -> str:
        return self.client.model

    async def check(self) -> None:
        """Reach the server and refuse it, with one line, unless it tokenizes like the student and returns
        token-id log-probabilities over a given conversation."""
        import openai

        await self.client.check()
        try:
            served_models = [m.id for m in (await self.client.client.models.list()).data]
        except openai.APIStatusError as exc:
            raise ConfigError(
                f"--kd-teacher {self.path} lists no models ({describe_error(exc)}): give the server's OpenAI base "
                "URL, e.g. http://HOST:8000/v1"
            ) from None
        expected, _ = conversation_ids(self.tokenizer, PROBE)
        listed = self.model if self.model in served_models else (served_models or [None])[0]
        body = {"model": listed, "messages": PROBE, "add_generation_prompt": False}  # old vLLMs require a model
        try:
            answer, _, _ = await self.client.post(self.root + "/tokenize", body, 0, 0)
        except openai.APIStatusError as exc:
            raise ConfigError(
                f"--kd-teacher {self.path} cannot tokenize ({describe_error(exc)}), so neither its tokenizer nor its "
                "log-probabilities can be checked: logit distillation needs a `vllm serve` of the student's family "
                "(OpenAI's and DeepSeek's APIs return no log-probabilities over a given text)"
            ) from None
        if not served_models or (self.model and self.model not in served_models):
            raise ConfigError(f"--kd-teacher {self.path} serves {served_models or 'no model'}, not {self.model!r}: "
                              "pass --kd-model NAME")  # fmt: skip
        self.client.model = self.model or served_models[0]
        served = answer.get("tokens") or []
        if served != expected:
            first = next((i for i, (a, b) in enumerate(zip(served, expected, strict=False)) if a != b),
                         min(len(served), len(expected)))  # fmt: skip
            raise ConfigError(
                f"--kd-teacher {self.path} ({self.model}) tokenizes a probe conversation into {len(served)} tokens "
                f"and --student-tokenizer into {len(expected)} (first difference at token {first}): they do not "
                "share a vocabulary and chat template; use a teacher of the student's family, or hard-label "
                "distillation (no --kd-top-k)"
            )
        try:
            await self.score(PROBE, self.top_k)
        except ScoringError as exc:
            raise ConfigError(f"--kd-teacher {self.path} ({self.model}) cannot give KD rows: {exc}") from None
        except openai.APIStatusError as exc:
            hint = (" (vllm serve allows 20 unless started with --max-logprobs K)"
                    if "logprob" in str(exc).lower() else "")  # fmt: skip
            raise ConfigError(
                f"--kd-teacher {self.path} ({self.model}) refused a scoring request with {self.top_k} "
                f"log-probabilities: {describe_error(exc)}{hint}"
            ) from None

    async def score(self, messages: list[dict[str, str]], top_k: int) -> Scored:
        input_ids, prompt_tokens = conversation_ids(self.tokenizer, messages)
        body = {
            "model": self.model,
            "prompt": input_ids,
            "echo": True,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": top_k,
            "return_tokens_as_token_ids": True,
            "add_special_tokens": False,
        }
        response, _, _ = await self.client.post(
            "/completions", body, len(input_ids), 1, count=lambda _: Usage(len(input_ids), 1)
        )
        return scored_from_echo(response, input_ids, prompt_tokens, top_k)

    async def close(self) -> None:
        await self.client.close()
