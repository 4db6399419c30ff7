"""Ask one model every test prompt, through the same client, concurrency limit and request cache as ``data_gen``.

Answers are stored in ``<out>/cache.sqlite`` as they arrive, so a run that stops (a server that died or hung,
Ctrl-C) keeps them and the same command resumes with only the missing ones. A started server is watched while
it works: if it exits, the run stops at once with its log's last lines instead of waiting for timeouts.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from data_gen.client.api import ChatClient, describe_error
from data_gen.client.limits import run_bounded
from data_gen.client.types import ChatRequest, Completion
from data_gen.errors import ServiceError
from data_gen.tasks.task import Task
from data_gen.teachers import TeacherSpec, make_teacher
from eval.backends import Served, ServerError, ServerProcess
from eval.config import ModelOptions
from eval.data import Item


class GenerationFailed(ServiceError):
    """A request failed after its retries: the run stops (answers so far are stored)."""


def client_for(config: ModelOptions, served: Served) -> ChatClient:
    """The OpenAI-compatible client of one served model (its cache name stays stable across ports)."""
    return ChatClient(
        served.base_url,
        served.name,
        served.api_key,
        concurrency=config.concurrency,
        timeout=config.timeout,
        max_retries=config.max_retries,
        endpoint_id=served.cache_endpoint,
    )


def reference_teacher(config: ModelOptions, task: Task) -> Any:
    """The --teacher that answers beside the models (rules offline, or an OpenAI-compatible API)."""
    spec = TeacherSpec(
        kind=config.teacher or "rules",
        base_url=config.teacher_base_url,
        model=config.teacher_model,
        api_key_env=config.teacher_api_key_env,
        concurrency=config.concurrency,
        timeout=config.timeout,
        max_retries=config.max_retries,
    )
    return make_teacher(spec, task)


def generation_params(config: ModelOptions, task: Task) -> dict[str, Any]:
    """The sampling settings every request carries (recorded in results.json), with the constraint, if any."""
    params: dict[str, Any] = {
        "temperature": config.temperature,
        "max_tokens": config.max_tokens or task.max_completion_tokens,
        "seed": config.seed,
        "top_p": config.top_p,
    }
    if config.logprobs:
        params.update({"logprobs": True, "top_logprobs": config.logprobs})
    schema = task.schema_for_prompt
    if config.constrained == "json_schema":  # OpenAI's form; vLLM's server accepts it too
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": task.name, "schema": schema, "strict": True},
        }
    elif config.constrained == "structured_outputs":  # vLLM >= 0.10 (the guided_* fields were removed later)
        params["structured_outputs"] = {"json": schema}
    elif config.constrained == "guided_json":  # older vLLM releases
        params["guided_json"] = schema
    return params


async def generate(
    asker: Any,
    model_name: str,
    label: str,
    task: Task,
    prompt: str,
    items: list[Item],
    params: dict[str, Any],
    concurrency: int,
    progress: bool = True,
    process: ServerProcess | None = None,
) -> list[Completion]:
    """One Completion per item, in item order, asked with the task's ``prompt`` (student or teacher system prompt).
    Raises GenerationFailed or ServerError (answers so far stay stored)."""
    from tqdm import tqdm

    answers: dict[int, Completion] = {}
    bar = tqdm(total=len(items), unit="answer", desc=f"eval {label}", disable=not progress, file=sys.stderr)

    def server_died() -> ServerError:
        assert process is not None
        return process.died(f"the {label!r} server died after {len(answers)} of {len(items)} answers")

    async def ask(index: int) -> tuple[int, Completion]:
        item = items[index]
        request = ChatRequest(model_name, task.messages(item.text, prompt), params, text=item.text)
        try:
            return index, await asker.complete(request)
        except Exception as exc:  # after the client's own retries
            if process is not None and not process.alive():
                raise server_died() from exc
            raise GenerationFailed(
                f"model {label!r}: {describe_error(exc)} (row {item.row}, id {item.id}) after {len(answers)} of "
                f"{len(items)} answers"
            ) from exc

    def done(result: tuple[int, Completion]) -> None:
        answers[result[0]] = result[1]
        bar.update()

    work = asyncio.ensure_future(run_bounded(range(len(items)), ask, concurrency, done))
    watch = asyncio.ensure_future(_watch(process)) if process is not None else None
    try:
        await asyncio.wait([t for t in (work, watch) if t is not None], return_when=asyncio.FIRST_COMPLETED)
        if not work.done():  # the watchdog fired: the server is gone
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise server_died()
        work.result()
    finally:
        bar.close()
        if watch is not None:
            watch.cancel()
    return [answers[i] for i in range(len(items))]


async def _watch(process: ServerProcess) -> None:
    """Return when the server process has exited."""
    while process.alive():
        await asyncio.sleep(0.5)
