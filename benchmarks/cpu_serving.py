"""CPU serving for evaluation: llama.cpp's server against Hugging Face ``generate`` (``llamafactory-cli api``), on
the same prompts, through the same ``eval.run``: wall time, and whether greedy answers are the same.

    python -m benchmarks.cpu_serving --data datasets/finsight --adapter reports/demo/student [--limit 8]

Three runs of ``python -m eval.run --reference gold`` on the first ``--limit`` test rows, base and student each:
``llamafactory`` (the fp32 Hugging Face folder), ``llamacpp`` (the registry's Q4_1 GGUF, as the demo serves it) and
``llamacpp`` with an f32 GGUF converted from the same folder (the fp32 weights are the exact dequantisation of the
Q4_1 file, so a difference between the last two is llama.cpp's quantised arithmetic, and between the first and
the last only the engines' float order). Prints one JSON object: seconds per run, their ratios, and per model how
many answers are identical to the Hugging Face path and how long the common prefix is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct"


def unquantised(out: Path, adapter: Path) -> tuple[Path, Path]:
    """The base as a plain Hugging Face folder (links to the same files, without get_model's stamp, so the llamacpp
    backend converts it to an f32 GGUF instead of serving the Q4_1 original) and the adapter pointed at it."""
    model = out / "SmolLM2-135M-Instruct-f32"
    model.mkdir()
    for path in MODEL.iterdir():
        if not path.name.startswith("."):
            (model / path.name).symlink_to(path)
    copy = out / "adapter"
    shutil.copytree(adapter, copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(model)}))
    return model, copy


def evaluate(name: str, backend: str, model: Path, adapter: Path, args: argparse.Namespace, out: Path) -> dict:
    report = out / name
    command = [sys.executable, "-m", "eval.run", "--config", "eval/configs/finsight.yaml", "--data", str(args.data),
               "--reference", "gold", "--backend", backend, "--model", str(model), "--adapter", str(adapter),
               "--limit", str(args.limit), "--max-tokens", str(args.max_tokens), "--concurrency", "4",
               "--out", str(report), "--no-cache", "--no-progress", "--bootstrap", "100"]  # fmt: skip
    if backend == "llamafactory":
        command += ["--template", "smollm2"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"cpu_serving: {name} failed: {done.stderr.strip().splitlines()[-1]}")
    seconds = json.loads((report / "results.json").read_text())["seconds"]
    answers: dict[str, dict[str, str]] = {}
    for line in (report / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        answers.setdefault(row["model"], {})[row["id"]] = row["raw"]
    return {"seconds": seconds, "answers": answers}


def prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def same_as(reference: dict[str, dict[str, str]], other: dict[str, dict[str, str]]) -> dict[str, object]:
    compared = {}
    for model, rows in reference.items():
        pairs = [(rows[i], other[model][i]) for i in rows]
        compared[model] = {
            "identical": sum(a == b for a, b in pairs),
            "of": len(pairs),
            "common_prefix_chars": [prefix(a, b) for a, b in pairs],
            "answer_chars": [len(a) for a, _ in pairs],
        }
    return compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a data_gen output folder of the finsight task")
    parser.add_argument("--adapter", type=Path, required=True, help="a LoRA adapter trained on SmolLM2-135M-Instruct")
    parser.add_argument("--limit", type=int, default=8, help="test rows (default 8)")
    parser.add_argument("--max-tokens", type=int, default=384)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        hf = evaluate("llamafactory", "llamafactory", MODEL, args.adapter, args, out)
        q4 = evaluate("llamacpp_q4_1", "llamacpp", MODEL, args.adapter, args, out)
        f32 = evaluate("llamacpp_f32", "llamacpp", *unquantised(out, args.adapter), args, out)
    result = {
        "rows": args.limit,
        "seconds": {"llamafactory": hf["seconds"], "llamacpp_q4_1": q4["seconds"], "llamacpp_f32": f32["seconds"]},
        "llamacpp_q4_1_over_llamafactory": round(q4["seconds"] / hf["seconds"], 3),  # type: ignore[operator]
        "llamacpp_f32_over_llamafactory": round(f32["seconds"] / hf["seconds"], 3),  # type: ignore[operator]
        "same_as_llamafactory": {"llamacpp_q4_1": same_as(hf["answers"], q4["answers"]),  # type: ignore[arg-type]
                                 "llamacpp_f32": same_as(hf["answers"], f32["answers"])},  # type: ignore[arg-type]
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
