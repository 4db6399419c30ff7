"""python -m eval.table: one markdown table across runs, a row per run and model, values with their intervals."""

from __future__ import annotations

import json
from pathlib import Path

from eval.run import main as evaluate
from eval.table import main

from .conftest import SAMPLES


def test_a_table_across_runs(tmp_path: Path, capsys) -> None:
    for run, limit in (("small", "20"), ("large", "60")):
        data = ["--data", str(SAMPLES / "news.csv"), "--text-column", "text", "--label-column", "label"]
        assert evaluate([*data, "--teacher", "rules", "--limit", limit, "--out", str(tmp_path / run / "report")]) == 0
    capsys.readouterr()
    paths = [str(tmp_path / run / "report" / "results.json") for run in ("small", "large")]
    assert main([*paths, "--metrics", "sentiment.accuracy,format.parsed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| run | model | rows | sentiment.accuracy | format.parsed |"
    accuracy = json.loads(Path(paths[1]).read_text())["intervals"]["teacher"]["sentiment.accuracy"]
    assert lines[3] == (
        f"| large | teacher | 60 | {accuracy['value']:.3f} [{accuracy['low']:.3f}, {accuracy['high']:.3f}] "
        "| 1.000 [1.000, 1.000] |"
    )
    assert lines[2].startswith("| small | teacher | 20 | ")
    assert main([str(tmp_path / "nowhere.json")]) == 2
