"""The house rules of the code: no import cycle, packages that say what they hold, modules small enough to read,
and a wheel that holds the product and nothing of the tests."""

from __future__ import annotations

import ast
import graphlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGES = ("data_gen", "eval")
MAX_LINES = 360  # "about 350": a module longer than this is doing two jobs


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that ``name`` imports, at the top, inside functions or for type checking only."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {module for module in found if module in known and module != name}


def test_no_import_cycle_even_inside_functions_or_for_type_checking() -> None:
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert graph["data_gen.run.pipeline"] >= {"data_gen.run.read", "data_gen.run.write"}  # the graph is real
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail("import cycle: " + " -> ".join(exc.args[1]))


def test_eval_uses_only_the_shared_packages_of_data_gen() -> None:
    known = modules()
    private = ("data_gen.run", "data_gen.distill", "data_gen.teachers.rules")
    for name, path in known.items():
        if name.startswith("eval"):
            reached = [m for m in imports_of(name, path, known) if m.startswith(private)]
            assert not reached, f"{name} imports distillation's internals: {reached}"


def test_every_package_says_what_it_holds_and_no_module_is_too_long() -> None:
    for path in modules().values():
        text = path.read_text(encoding="utf-8")
        if path.name == "__init__.py":
            assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(ROOT)} has no docstring"
        lines = text.count("\n")
        assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (> {MAX_LINES}): split it"


def test_the_wheel_holds_the_product_and_no_test_code(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for item in ("pyproject.toml", "README.md", *PACKAGES):
        copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy
        copy(ROOT / item, source / item)  # a copy: setuptools writes build/ and *.egg-info where it builds
    build = "import setuptools.build_meta as b, sys; print(b.build_wheel(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", build, str(tmp_path)], cwd=source, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set(zipfile.ZipFile(tmp_path / done.stdout.split()[-1]).namelist())
    assert {f"{path.relative_to(ROOT)}" for path in modules().values()} <= names
    assert {
        "data_gen/tasks/finsight/task.yaml",
        "data_gen/configs/sources/tfns.yaml",
        "eval/configs/tfns.yaml",
    } <= names
    leaked = sorted(n for n in names if n.startswith("tests/") or "fake_server" in n or "vllm_like" in n)
    assert not leaked, f"test code in the wheel: {leaked}"


def test_every_rejection_reason_the_code_raises_is_registered() -> None:
    from data_gen.reasons import REASONS, registered

    raised = {}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            # Rejected(row, reason, ...), RowRejected(reason, ...), Workspace.reject(row, id, reason, detail, ...),
            # Outcome.reject(reason, detail)
            position = {"Rejected": 1, "RowRejected": 0, "reject": 2 if len(node.args) >= 4 else 0}.get(func)
            if position is not None and len(node.args) > position and isinstance(node.args[position], ast.Constant):
                raised[node.args[position].value] = f"{name}:{node.lineno}"
    assert len(raised) >= 12  # the scan finds them
    unregistered = {code: where for code, where in raised.items() if code not in REASONS}
    assert not unregistered, f"add these to data_gen/reasons.py: {unregistered}"
    with pytest.raises(ValueError, match=r"not registered: add it to data_gen/reasons\.py"):
        registered("because")
