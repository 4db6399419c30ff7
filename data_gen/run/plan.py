"""The dry run's plan: requests, tokens and cost a run would need, online and as batch files, from pass 1's rows
(no tokenizer download, no network, nothing written)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from data_gen.client.pricing import Price
from data_gen.client.tokens import TokenCounter
from data_gen.client.types import Usage, request_key
from data_gen.run.config import kd_server
from data_gen.run.ladder import Distiller
from data_gen.run.report import sampled, selection

if TYPE_CHECKING:
    from data_gen.client.cache import ResponseCache
    from data_gen.run.config import DistillConfig
    from data_gen.run.state import Prepared
    from data_gen.run.workspace import Workspace
    from data_gen.tasks.task import Task

CHARS_PER_TOKEN = 4.0  # rough English average, for estimates only (no tokenizer download needed)


def estimate(
    config: DistillConfig,
    task: Task,
    teacher: Any,
    price: Price | None,
    cache: ResponseCache | None,
    work: Workspace,
    prepared: Prepared,
) -> dict[str, Any]:
    """Requests, tokens and cost a run would need, online and as batch files (no tokenizer, no network)."""
    distiller = Distiller(config, task, teacher)
    limit = distiller.params["max_tokens"]
    counter = TokenCounter(config.tokenizer)  # what the budget reserves: exact with --tokenizer, else conservative
    to_send = cached = prompt_chars = counted = 0
    for record in work.rows():
        request = distiller.first_request(record)
        if cache is not None and cache.contains(request_key(teacher.endpoint, request.body()), limit):
            cached += 1
            continue
        to_send += 1
        prompt_chars += request.prompt_chars()
        counted += counter.messages(request.messages)
    prompt = int(prompt_chars / CHARS_PER_TOKEN)
    expected = Usage(prompt, to_send * task.expected_completion_tokens)
    # worst case: every ask uses its whole limit, every row is re-asked max_reasks times and doubled once
    asks = 1 + distiller.max_reasks
    worst = Usage(counted * (asks + 1), to_send * limit * (asks + 2))
    result: dict[str, Any] = {
        "rows": prepared.source.rows,
        **selection(config, prepared.source),
        "rejected_before_asking": prepared.input_rejected,
        "rejected_by_reason": dict(work.reject_counts().most_common()),
        "requests": to_send,
        "already_cached": cached,
        "prompt_tokens": expected.prompt_tokens,
        "completion_tokens_expected": expected.completion_tokens,
        "completion_tokens_max": worst.completion_tokens,
        "max_completion_tokens": limit,
    }
    for mode, rate in (("online", price), ("batch", price.batch() if price else None)):
        result[f"cost_{mode}_expected_usd"] = rate.cost(expected) if rate else None
        result[f"cost_{mode}_max_usd"] = rate.cost(worst) if rate else None
    return result


def format_estimate(est: dict[str, Any], config: DistillConfig, teacher: Any) -> str:
    def money(value: float | None) -> str:
        return "unknown (no price for this model in --prices)" if value is None else f"${value:,.4f}"

    reasons = ", ".join(f"{k} {v}" for k, v in est["rejected_by_reason"].items())
    scoring = []
    if config.kd_top_k:
        scorer = kd_server(config) or config.kd_teacher or config.model
        scoring = [f"  kd scoring               one request per accepted reply to {scorer} (top {config.kd_top_k}; "
                   "its tokenizer and log-probabilities are checked when the run starts)"]  # fmt: skip
    return "\n".join(
        [
            f"dry run: task {config.task}, teacher {teacher.kind} {teacher.model} @ {teacher.endpoint}",
            f"  input rows               {est['rows']:,}" + sampled(est),
            f"  rejected before asking   {est['rejected_before_asking']:,}" + (f" ({reasons})" if reasons else ""),
            f"  requests to send         {est['requests']:,} ({est['already_cached']:,} already cached)",
            f"  prompt tokens (est.)     {est['prompt_tokens']:,}  (characters / {CHARS_PER_TOKEN:g})",
            f"  completion tokens        {est['completion_tokens_expected']:,} expected; at most "
            f"{est['completion_tokens_max']:,} (every reply at max_tokens {est['max_completion_tokens']:,}, "
            f"{config.max_reasks} re-asks and one doubling per row)",
            f"  cost online              {money(est['cost_online_expected_usd'])} expected, "
            f"at most {money(est['cost_online_max_usd'])}",
            f"  cost as batch files      {money(est['cost_batch_expected_usd'])} expected, "
            f"at most {money(est['cost_batch_max_usd'])} (--batch-write)",
            *scoring,
            "nothing was sent.",
        ]
    )


# ---------------------------------------------------------------- manifest
