"""python -m eval.chat: a page made for the task, where base, student (and teacher) answer the same text side by side.

The models are served and asked exactly as ``eval.run`` serves and asks them (the same backends, client, prompts
and greedy settings); each answer is read by the task's own parser and schema and shown as fields, with its
thinking, the verdict and the latency (``eval.answer_view``). A second tab opens the eval reports under
``--reports``. Servers the page started stop when it stops (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from data_gen.client.api import describe_error
from data_gen.client.types import ChatRequest, normalize_endpoint
from data_gen.errors import ConfigError, run_cli
from data_gen.options import build_parser, load_config, option
from data_gen.redact import redact
from data_gen.tasks.loader import load_task
from data_gen.tasks.task import Task
from eval.answer_view import CSS, Shown, message, render, waiting
from eval.backends import Served, ServerProcess, check_models, free_port, groups, serve
from eval.config import ModelOptions, validate_models
from eval.generate import client_for, generation_params, reference_teacher

LABELS = {"base": "base", "tuned": "student", "teacher": "teacher"}


@dataclass
class ChatConfig(ModelOptions):
    """The models to compare (``ModelOptions``, as in ``eval.run``) and where the page listens."""

    student_endpoint: str | None = option(None, "the student's own running server, when --endpoint serves only the "
                                          "base", group="models", metavar="URL")  # fmt: skip
    prompt: str = option("student", "system prompt for base and student: student or teacher", group="models",
                         metavar="WHICH", choices=["student", "teacher"])  # fmt: skip
    host: str = option("127.0.0.1", "address the page listens on", group="page", metavar="HOST")
    port: int = option(7860, "port of the page (0: any free one)")
    reports: str = option("reports", "folder searched for eval reports (report.md) for the Reports tab", metavar="DIR")
    max_input_chars: int = option(2000, "longest text the page accepts")
    max_retries: int = option(0, "retries on 429 / 5xx / timeouts (0: the page says what failed at once)")
    timeout: float = option(120.0, "seconds before a request times out")


@dataclass
class Panel:
    """One model on the page: what it is, how it is asked, and the client once the page's loop made it."""

    label: str  # base | student | teacher
    title: str
    prompt: str  # the system prompt it is asked with: student | teacher
    served: Served | None = None  # None: the --teacher
    asker: Any = None

    @property
    def process(self) -> ServerProcess | None:
        return self.served.process if self.served is not None else None


def check_text(text: str, limit: int) -> str | None:
    """Why the page will not send ``text``, or None."""
    if not text.strip():
        return "Type a sentence (or pick an example) first."
    if len(text) > limit:
        return f"The text has {len(text):,} characters; the limit is {limit:,} (--max-input-chars)."
    return None


class Compare:
    """The models the page compares; ``answers`` asks all of them one text, yielding each panel as it is ready."""

    def __init__(self, config: ChatConfig, task: Task, panels: list[Panel]) -> None:
        self.config, self.task, self.panels = config, task, panels
        self.params = generation_params(config, task)

    async def ask(self, panel: Panel, text: str) -> Shown:
        """One answer, or the reason there is none, in words for the page."""
        if panel.process is not None and not panel.process.alive():
            code = panel.process.proc.returncode if panel.process.proc else None
            return Shown(error=f"The {panel.label} server has stopped (exit status {code}); see {panel.process.log}.")
        if panel.asker is None:
            panel.asker = (
                reference_teacher(self.config, self.task)
                if panel.served is None
                else client_for(self.config, panel.served)
            )
        name = panel.served.name if panel.served is not None else panel.asker.model
        request = ChatRequest(name, self.task.messages(text, panel.prompt), self.params, text=text)
        started = time.monotonic()
        try:
            completion = await panel.asker.complete(request)
        except Exception as exc:  # the page shows it; the server's log has the rest
            return Shown(error=friendly(panel, exc))
        usage = completion.usage.completion_tokens if completion.usage else None
        return Shown(completion.text, completion.reasoning, completion.finish_reason, time.monotonic() - started, usage)

    async def answers(self, text: str) -> AsyncIterator[list[str]]:
        problem = check_text(text or "", self.config.max_input_chars)
        if problem is not None:
            yield [message(problem) for _ in self.panels]
            return
        shown = [waiting(panel.label) for panel in self.panels]
        yield list(shown)

        async def one(index: int) -> tuple[int, Shown]:
            return index, await self.ask(self.panels[index], text)

        for next_done in asyncio.as_completed([one(i) for i in range(len(self.panels))]):
            index, answer = await next_done
            shown[index] = render(self.task, answer)
            yield list(shown)


def friendly(panel: Panel, exc: BaseException) -> str:
    """An error as one line for a person: a model still loading, a server that is down, anything else."""
    status = getattr(exc, "status_code", None)
    if status == 503:
        return f"The {panel.label} model is still loading; try again in a few seconds."
    described = redact(describe_error(exc))  # a server may echo the key it was sent
    if "connect" in described.lower() or isinstance(exc, ConnectionError):
        where = panel.served.base_url if panel.served is not None else "the teacher"
        return f"The {panel.label} server at {where} does not answer ({described})."
    return f"The {panel.label} model failed: {described}"


# ---------------------------------------------------------------- reports
def find_reports(folder: Path) -> list[str]:
    """report.md files under ``folder``, newest first, as paths relative to it."""
    found = sorted(folder.rglob("report.md"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    return [str(p.relative_to(folder)) for p in found]


def report_markdown(folder: Path, relative: str | None) -> str:
    """A report's Markdown with its plots linked through the page's file route."""
    if not relative:
        return f"No report picked. Reports are the `report.md` files of `eval.run` outputs under `{folder}`."
    path = (folder / relative).resolve()
    if folder.resolve() not in path.parents or not path.is_file():
        return f"Not a report under `{folder}`: `{relative}`."
    text = path.read_text(encoding="utf-8", errors="replace")
    return re.sub(r"\]\((plots/[^)\s]+)\)", lambda m: f"](/gradio_api/file={path.parent / m.group(1)})", text)


# ---------------------------------------------------------------- the page
def build_page(compare: Compare, reports: Path) -> Any:
    import gradio as gr

    task = compare.task
    examples = [[example["text"]] for example in task.examples if example.get("text")][:6]
    with gr.Blocks(title=f"fin-distill: {task.name}") as page:
        gr.Markdown(f"## {task.name}: {task.description}")
        with gr.Tab("Compare"):
            text = gr.Textbox(label="Your text", placeholder="Paste a sentence from the news, a filing or a tweet",
                              lines=3, max_length=None)  # fmt: skip
            send = gr.Button("Send", variant="primary")
            if examples:
                gr.Examples(examples, inputs=[text], label="Examples")
            panels = []
            with gr.Row():
                for panel in compare.panels:
                    with gr.Column():
                        gr.Markdown(f"### {panel.label}\n{panel.title}")
                        panels.append(gr.HTML(elem_id=f"panel-{panel.label}", elem_classes=["panel"]))
            send.click(compare.answers, inputs=[text], outputs=panels)
            text.submit(compare.answers, inputs=[text], outputs=panels)
        with gr.Tab("Reports"):
            names = find_reports(reports)
            choose = gr.Dropdown(names, value=names[0] if names else None, label=f"Report (under {reports})")
            shown = gr.Markdown(report_markdown(reports, names[0] if names else None))
            choose.change(lambda name: report_markdown(reports, name), inputs=[choose], outputs=[shown])
    return page


def panels_for(config: ChatConfig, served: list[Served]) -> list[Panel]:
    """One panel per served model (the student on --student-endpoint when it has its own server), then the teacher."""
    panels = []
    for model in served:
        if model.label == "tuned" and config.student_endpoint:
            where = normalize_endpoint(config.student_endpoint)
            model = replace(model, base_url=config.student_endpoint, identity={**model.identity, "endpoint": where})
        label = LABELS.get(model.label, model.label)
        what = model.identity.get("adapter") or model.identity.get("model") or model.name
        place = model.identity.get("endpoint") or model.identity.get("backend")
        panels.append(Panel(label, f"`{what}` · {place}", config.prompt, model))
    if config.teacher:
        what = config.teacher_model or "offline rules"
        panels.append(Panel("teacher", f"`{what}` · {config.teacher} (the teacher's full prompt)", "teacher"))
    return panels


def validate(config: ChatConfig) -> None:
    validate_models(config)
    if not config.model and not config.teacher:
        raise ConfigError("nothing to show: pass --model (and --adapter) and/or --teacher")
    if config.max_input_chars < 1:
        raise ConfigError("--max-input-chars must be at least 1")
    if config.student_endpoint and not (config.resolved_backend() == "endpoint" and config.adapter):
        raise ConfigError("--student-endpoint is for --backend endpoint, with --adapter naming the student there")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        ChatConfig,
        "A chat page for the task: base, student (and teacher) answer the same text side by side.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else "",
        prog="python -m eval.chat",
    )

    def run() -> int:
        config = load_config(parser.parse_args(argv), ChatConfig, validate)
        task = load_task(config.task)
        check_models(config)
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise ConfigError(
                "the chat page needs gradio: sh scripts/setup_env.sh core (pip: fin-distill[chat])"
            ) from None
        port = config.port or free_port()
        with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="fin-distill-chat-") as logs:
            served = [s for group in groups(config) for s in stack.enter_context(serve(config, group, Path(logs)))]
            page = build_page(Compare(config, task, panels_for(config, served)), Path(config.reports))
            print(f"chat page on http://{config.host}:{port} (Ctrl-C stops it and the servers it started)", flush=True)
            page.queue().launch(
                server_name=config.host,
                server_port=port,
                allowed_paths=[config.reports],
                css=CSS,
                ssr_mode=False,
                quiet=True,
                footer_links=[],
            )  # blocks until Ctrl-C or SIGTERM; then the servers stop
        return 0

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill stops the servers like Ctrl-C does
    return run_cli(run, stored="the page stopped")


if __name__ == "__main__":
    sys.exit(main())
