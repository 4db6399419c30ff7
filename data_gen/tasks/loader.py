"""``load_task``: a task folder (``task.yaml``, prompt files, schema, few-shot examples) -> a checked Task. Every
mistake in a task folder is one line naming the file and key, raised before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from data_gen.errors import ConfigError
from data_gen.sources.text import CONTROL_POLICIES
from data_gen.tasks.kinds import KINDS
from data_gen.tasks.parsing import schema_error
from data_gen.tasks.task import Task

TASKS_DIR = Path(__file__).parent  # one folder per task, beside this module
TASK_KEYS = {
    "name",
    "description",
    "answer",
    "schema",
    "system_prompt",
    "student_prompt",
    "user_prompt",
    "reask_prompt",
    "examples",
    "input_column",
    "thinking",
    "keep_thinking",
    "thinking_tag",
    "label_field",
    "label_aliases",
    "conclusion_pattern",
    "refusal_pattern",
    "temperature",
    "max_completion_tokens",
    "expected_completion_tokens",
    "metrics",
    "control_characters",
}


def load_task(name_or_path: str) -> Task:
    """Load ``data_gen/tasks/<name>/task.yaml`` (or a task folder path) and check it against its schema."""
    directory = Path(name_or_path)
    if not (directory / "task.yaml").is_file():
        directory = TASKS_DIR / name_or_path
    spec_path = directory / "task.yaml"
    if not spec_path.is_file():
        known = sorted(p.name for p in TASKS_DIR.iterdir() if (p / "task.yaml").is_file())
        raise ConfigError(
            f"unknown task {name_or_path!r}; known tasks: {', '.join(known)} (or a folder with task.yaml)"
        )
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(spec) - TASK_KEYS)
    if unknown:
        raise ConfigError(f"{spec_path}: unknown key(s) {', '.join(unknown)}")

    def read(key: str, required: bool = True) -> str:
        if key not in spec:
            if required:
                raise ConfigError(f"{spec_path}: missing key {key!r}")
            return ""
        return (directory / spec[key]).read_text(encoding="utf-8").strip()

    examples = []
    if spec.get("examples"):
        for n, line in enumerate(read("examples").splitlines(), 1):
            if line.strip():
                examples.append(json.loads(line))
                examples[-1]["_line"] = n
    task = Task(
        name=spec.get("name", directory.name),
        directory=directory,
        answer_kind=spec.get("answer", "json"),
        schema=json.loads(read("schema")),
        system_template=read("system_prompt"),
        student_template=read("student_prompt", required=False),
        user_template=read("user_prompt"),
        reask_template=read("reask_prompt"),
        examples=examples,
        input_column=spec.get("input_column", "text"),
        thinking=spec.get("thinking", "optional"),
        keep_thinking=bool(spec.get("keep_thinking", True)),
        thinking_tag=spec.get("thinking_tag", "thinking"),
        label_field=spec.get("label_field"),
        label_aliases=dict(spec.get("label_aliases") or {}),
        conclusion_pattern=spec.get("conclusion_pattern"),
        refusal_pattern=spec.get("refusal_pattern"),
        temperature=float(spec.get("temperature", 0.0)),
        max_completion_tokens=int(spec.get("max_completion_tokens", 1024)),
        expected_completion_tokens=int(spec.get("expected_completion_tokens", 256)),
        description=spec.get("description", ""),
        metrics=dict(spec.get("metrics") or {}),
        control_characters=str(spec.get("control_characters", "reject")),
    )
    if task.control_characters not in CONTROL_POLICIES:
        raise ConfigError(f"{spec_path}: control_characters must be reject or keep, got {task.control_characters!r}")
    if task.answer_kind not in ("json", "text"):
        raise ConfigError(f"{spec_path}: answer must be json or text, got {task.answer_kind!r}")
    if task.thinking not in ("required", "optional", "none"):
        raise ConfigError(f"{spec_path}: thinking must be required, optional or none")
    for name, kind in task.metrics.items():
        if kind not in KINDS:
            kinds = ", ".join(KINDS)
            raise ConfigError(f"{spec_path}: metrics.{name}: unknown kind {kind!r}; use one of {kinds}")
        if name not in task.field_names:
            raise ConfigError(f"{spec_path}: metrics.{name}: the schema has no field {name!r}")
        if KINDS[kind].classes:
            task.enum(name)  # a class field needs its values in the schema
    for example in task.examples:  # the prompt's examples must obey the schema they teach
        error = schema_error(example["answer"], task.validator)
        if error:
            raise ConfigError(f"{directory / spec['examples']} line {example['_line']}: {error}")
    _ = task.system_prompt, task.student_system_prompt, task.labels  # a bad placeholder fails here, not mid-run
    return task
