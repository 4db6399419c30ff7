"""The chat page (python -m eval.chat): answers rendered from the task's own parser and schema, bad input and
failing servers as messages, reports a click away; in a real browser (Playwright + Debian's chromium) against the
real SmolLM2-135M-Instruct served by llama.cpp, a trained adapter and the rules teacher."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from data_gen.errors import ConfigError
from data_gen.redact import register
from data_gen.tasks.loader import load_task
from eval.answer_view import Shown, render
from eval.backends import Served, ServerProcess, free_port
from eval.chat import (
    ChatConfig,
    Compare,
    Panel,
    check_text,
    find_reports,
    friendly,
    panels_for,
    report_markdown,
    validate,
)

from .browser import browser_page, chat_page, need_browser
from .conftest import MODEL, ROOT, need_real_model
from .http_stub import JSONHandler, LoopbackServer
from .test_eval_llamafactory import processes_mentioning

FINSIGHT = load_task("finsight")
NOKIA = "Nokia shares fell 8% after the company cut its full-year outlook."
SCREENSHOTS = ROOT / "reports" / "screenshots"  # ignored; docs/images/chat.png is copied from here by hand


def reply(answer: dict, thinking: str = "Sales fell.\nConclusion: sentiment is negative; risk is Medium.") -> str:
    return f"<thinking>\n{thinking}\n</thinking>\n{json.dumps(answer)}"


def test_a_valid_answer_shows_its_fields_thinking_and_time() -> None:
    answer = {"entities": [{"name": "Nokia", "sentiment": "negative"}], "sentiment": "negative", "risk_level": "Medium"}
    html = render(FINSIGHT, Shown(reply(answer), finish_reason="stop", seconds=1.234, completion_tokens=80))
    assert 'class="verdict ok"' in html and '<span class="label negative">negative</span>' in html
    assert "<td>Nokia</td><td>negative</td>" in html and "<summary>Thinking</summary>" in html
    assert "1.23 s · 80 tokens · stopped: stop" in html


def test_a_failed_answer_says_why_with_the_task_parsers_reason_and_shows_the_raw_reply() -> None:
    cut = render(FINSIGHT, Shown('{"sentiment": "negative"', finish_reason="length"))
    assert 'data-reason="no_thinking"' in cut and "(cut at max_tokens)" in cut and "Raw reply" in cut
    wrong = render(FINSIGHT, Shown(reply({"sentiment": "bullish", "entities": [], "risk_level": "Low"})))
    assert 'class="verdict fail"' in wrong and "schema" in wrong


def test_everything_a_model_writes_is_escaped() -> None:
    html = render(FINSIGHT, Shown("<script>alert(1)</script><img src=x onerror=alert(2)>"))
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html


def test_empty_and_too_long_texts_are_refused_with_the_limit() -> None:
    assert "Type a sentence" in check_text("  \n", 100)
    assert check_text("x" * 101, 100) == "The text has 101 characters; the limit is 100 (--max-input-chars)."
    assert check_text(NOKIA, 100) is None


def test_reports_are_found_newest_first_and_their_plots_linked_and_nothing_outside_is_read(tmp_path: Path) -> None:
    for name in ("old", "new"):
        (tmp_path / name / "plots").mkdir(parents=True)
        (tmp_path / name / "report.md").write_text(f"# {name}\n\n![headline](plots/headline.png)\n")
    (tmp_path / "new" / "report.md").touch()
    assert find_reports(tmp_path)[0] == str(Path("new") / "report.md")
    shown = report_markdown(tmp_path, "new/report.md")
    assert f"](/gradio_api/file={(tmp_path / 'new' / 'plots' / 'headline.png').resolve()})" in shown
    assert report_markdown(tmp_path, "../../etc/passwd").startswith("Not a report under")


def test_a_qa_answer_is_a_paragraph() -> None:
    html = render(load_task("qa"), Shown("EBITDA is earnings before interest, taxes, depreciation and amortisation."))
    assert 'class="verdict ok"' in html and '<div class="field" data-field="answer">' in html


def test_a_server_that_has_exited_is_named_with_its_log(tmp_path: Path) -> None:
    process = ServerProcess(["true"], tmp_path / "base.log")
    process.start()
    process.proc.wait(timeout=10)
    served = Served("base", "http://127.0.0.1:9/v1", "base", {"backend": "llamacpp"}, process)
    config = ChatConfig(model="m", backend="llamacpp")
    compare = Compare(config, FINSIGHT, [Panel("base", "m", "student", served)])
    shown = asyncio.run(compare.ask(compare.panels[0], NOKIA))
    assert shown.error == f"The base server has stopped (exit status 0); see {tmp_path / 'base.log'}."


def test_an_error_that_echoes_the_key_is_masked_on_the_page() -> None:
    key = "sk-test-0123456789abcdef0123"
    register(key)
    shown = friendly(Panel("base", "m", "student"), RuntimeError(f"401: invalid key {key}"))
    assert key not in shown and shown.startswith("The base model failed:")


UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input, textarea, select, button')]
    .filter(e => e.offsetParent !== null && e.type !== 'hidden')
    .filter(e => !(e.getAttribute('aria-label') || (e.labels && e.labels.length) || e.innerText.trim() || e.title))
    .map(e => e.outerHTML.slice(0, 120))"""


def test_base_and_student_on_two_running_servers() -> None:
    config = ChatConfig(backend="endpoint", endpoint="http://127.0.0.1:8001/v1", model="base-model",
                        adapter="student-model", student_endpoint="http://127.0.0.1:8002/v1")  # fmt: skip
    validate(config)
    identity = {"backend": "endpoint"}
    served = [Served("base", config.endpoint, "base-model", {**identity, "model": "base-model"}),
              Served("tuned", config.endpoint, "student-model", {**identity, "adapter": "student-model"})]  # fmt: skip
    base, student = panels_for(config, served)
    assert (base.served.base_url, student.served.base_url) == (config.endpoint, config.student_endpoint)
    assert student.label == "student" and student.served.name == "student-model" and "8002" in student.title
    with pytest.raises(ConfigError, match="--student-endpoint is for --backend endpoint"):
        validate(ChatConfig(backend="llamacpp", model="m", adapter="a", student_endpoint="http://127.0.0.1:8002/v1"))


class Failing(JSONHandler):
    """llama.cpp's answer while its model loads (503), or a server error (500)."""

    status = 503

    def do_POST(self) -> None:
        self.read_json()
        message = "Loading model" if self.status == 503 else "the model crashed"
        self.send_json(self.status, {"error": {"code": self.status, "message": message, "type": "server_error"}})


class Crashing(Failing):
    status = 500


@pytest.mark.slow
def test_the_page_tells_a_loading_model_a_failing_and_a_dead_server_apart(tmp_path: Path) -> None:
    need_browser()
    loading, crashing = LoopbackServer(0, Failing), LoopbackServer(0, Crashing)
    for server in (loading, crashing):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    down = free_port()  # nothing listens there
    cases = ((loading.server_address[1], "still loading"), (crashing.server_address[1], "the model crashed"),
             (down, "does not answer"))  # fmt: skip
    try:
        for endpoint, expected in cases:
            args = ["--backend", "endpoint", "--endpoint", f"http://127.0.0.1:{endpoint}/v1", "--model", "m",
                    "--reports", str(tmp_path)]  # fmt: skip
            with chat_page(args, tmp_path / f"chat-{endpoint}.log", free_port()) as url, browser_page() as page:
                page.goto(url)
                page.get_by_role("button", name="Send").wait_for(timeout=30_000)
                assert page.evaluate(UNNAMED_CONTROLS) == []  # every control says what it is
                page.get_by_label("Your text").fill(NOKIA)
                page.get_by_role("button", name="Send").click()
                notice = page.locator("#panel-base .verdict.error")
                notice.wait_for(timeout=60_000)
                assert expected in notice.inner_text()
                assert "Traceback" not in page.content()
    finally:
        loading.shutdown()
        crashing.shutdown()


@pytest.mark.engine
@pytest.mark.slow
def test_base_student_and_teacher_side_by_side_in_a_real_browser(adapter: Path, tmp_path: Path) -> None:
    """The real base fails the format (marked, with the reason), the teacher's answer shows as fields, the student
    (six LoRA steps) answers in its panel; bad input is a message; the report tab shows a report; every server the
    page started stops with it."""
    need_browser()
    need_real_model()
    reports = tmp_path / "reports"
    (reports / "demo" / "plots").mkdir(parents=True)
    plt.imsave(reports / "demo" / "plots" / "headline.png", np.zeros((8, 12)))
    (reports / "demo" / "report.md").write_text("# Evaluation report\n\n![headline](plots/headline.png)\n")
    args = ["--backend", "llamacpp", "--model", str(MODEL), "--adapter", str(adapter), "--teacher", "rules",
            "--max-tokens", "160", "--max-input-chars", "500", "--reports", str(reports)]  # fmt: skip
    with chat_page(args, tmp_path / "chat.log", free_port()) as url, browser_page(1500, 1100) as page:
        page.goto(url)
        page.get_by_role("button", name="Send").click()
        page.locator("#panel-base .verdict.error").wait_for(timeout=30_000)
        assert "Type a sentence" in page.locator("#panel-student").inner_text()
        page.get_by_label("Your text").fill("x" * 501)
        page.get_by_role("button", name="Send").click()
        page.get_by_text("the limit is 500").first.wait_for(timeout=30_000)

        page.get_by_label("Your text").fill(NOKIA)
        page.get_by_role("button", name="Send").click()
        for label in ("base", "student", "teacher"):
            page.locator(f"#panel-{label} .verdict.ok, #panel-{label} .verdict.fail").wait_for(timeout=180_000)
        teacher = page.locator("#panel-teacher")
        assert teacher.locator(".label.negative").inner_text() == "negative"
        assert "Nokia" in teacher.locator("table.entities").inner_text()
        base = page.locator("#panel-base .verdict.fail")
        assert base.get_attribute("data-reason")  # the task parser's reason, e.g. no_thinking
        assert " s · " in page.locator("#panel-student .meta").inner_text()  # latency shown
        assert "Traceback" not in page.content()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "chat.png"), full_page=True)

        page.get_by_role("tab", name="Reports").click()
        page.get_by_text("Evaluation report").first.wait_for(timeout=30_000)
        plot = page.locator("img[alt='headline']")
        plot.wait_for(timeout=30_000)
        page.wait_for_function("img => img.complete && img.naturalWidth === 12", arg=plot.element_handle())
    assert not processes_mentioning(str(adapter)) and not processes_mentioning(str(tmp_path))
