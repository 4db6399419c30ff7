"""scripts/lib.sh, the launchers' shared shell functions."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT


def test_run_logged_stops_with_the_status_of_a_failing_command(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    (tmp_path / "train.log.status").write_text("0\n")  # what an earlier successful run left
    script = f'set -eu; . scripts/lib.sh; run_logged "{log}" sh -c "echo working; exit 3"; echo "done"'
    result = subprocess.run(["sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 3 and "done" not in result.stdout
    assert "failed (exit 3)" in result.stderr and log.read_text() == "working\n"
    ok = subprocess.run(["sh", "-c", f'set -eu; . scripts/lib.sh; run_logged "{log}" true; echo "done"'], cwd=ROOT,
                        capture_output=True, text=True, timeout=30)  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.endswith("done\n")


def test_free_port_is_remembered_while_free_and_replaced_when_taken(tmp_path: Path) -> None:
    """scripts/results.sh keeps its teacher's port so a rerun hits the cache keys (which name the port) again."""
    state = tmp_path / "teacher" / "port"

    def port() -> int:
        result = subprocess.run([sys.executable, "scripts/free_port.py", str(state)], cwd=ROOT, capture_output=True,
                                text=True, timeout=30, check=True)  # fmt: skip
        return int(result.stdout)

    first = port()
    assert state.read_text() == f"{first}\n" and port() == first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        second = port()
    assert second != first and state.read_text() == f"{second}\n"


def test_a_llamacpp_build_with_other_cmake_options_is_replaced(tmp_path: Path) -> None:
    """make llamacpp keeps a build only if it was made from the pinned source with today's options: an older native
    build (which crashed on AVX-512 hosts) is replaced by the cached portable one, not kept for its matching sha256."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import get_llamacpp
    finally:
        sys.path.remove(str(ROOT / "scripts"))

    def build(folder: Path, options: list[str], marker: str) -> None:
        (folder / "bin").mkdir(parents=True)
        (folder / "bin" / "llama-server").write_text(marker)
        stamp = {"sdist": get_llamacpp.SDIST, "sha256": get_llamacpp.SHA256, "cmake_options": options}
        (folder / get_llamacpp.STAMP).write_text(json.dumps(stamp))

    out, cache = tmp_path / "out", tmp_path / "cache"
    build(out, [*get_llamacpp.CMAKE_OPTIONS[:2], "-DGGML_NATIVE=ON"], "native")
    build(cache, get_llamacpp.CMAKE_OPTIONS, "portable")
    command = [sys.executable, "scripts/get_llamacpp.py", "--out", str(out), "--cache", str(cache),
               "--downloads", str(tmp_path / "downloads")]  # fmt: skip
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert (out / "bin" / "llama-server").read_text() == "portable" and "ready" in first.stdout
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "up to date" in again.stdout
