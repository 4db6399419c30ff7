"""Build llama.cpp's OpenAI-compatible server, the CPU engine that eval.run serves GGUF models with, from source.

    python3 scripts/get_llamacpp.py            # make llamacpp: .venvs/llamacpp/bin/llama-server and converters

The source is the pinned sdist of ``llama-cpp-python`` on the package registry, which vendors llama.cpp; it is
fetched from the registry's simple index (``PIP_INDEX_URL``, default PyPI), checked against its sha256, and built
with the machine's cmake and C++ compiler for any x86-64 CPU with AVX2 (not ``GGML_NATIVE``: a native build
segfaulted on AVX-512 hosts right after the thread pool starts), only the ``llama-server`` target: about 8 minutes
on 2 cores. The build is kept in ``$XDG_CACHE_HOME/fin-distill`` (default ``~/.cache/fin-distill``), as pip
and uv keep theirs, so another checkout on this machine copies it in seconds. llama.cpp's own converters
(``convert_lora_to_gguf.py`` turns a PEFT LoRA adapter into the GGUF adapter the server loads) are copied next to
it, from the same source. A second run is a no-op; every failure is one line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from pinned import Failure, sha256  # scripts/pinned.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
PACKAGE, VERSION = "llama-cpp-python", "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
VENDORED = f"llama_cpp_python-{VERSION}/vendor/llama.cpp"
CONVERTERS = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")
CMAKE_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
    # portable: the same binary on every AVX2 machine (a native build crashed with SIGSEGV on AVX-512 hosts)
    "-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # nothing is downloaded while building
    "-DLLAMA_OPENSSL=OFF",  # it serves 127.0.0.1
]  # fmt: skip
STAMP = ".fin-distill-llamacpp.json"


def fetch(downloads: Path) -> Path:
    """The pinned sdist, from the registry's simple index (PEP 691 JSON), checked against its sha256."""
    path = downloads / SDIST
    if path.is_file() and sha256(path) == SHA256:
        return path
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    request = urllib.request.Request(f"{index}/{PACKAGE}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            files = json.load(response)["files"]
        url = next(f["url"] for f in files if f["filename"] == SDIST)
        downloads.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        with urllib.request.urlopen(url, timeout=300) as response, partial.open("wb") as target:
            shutil.copyfileobj(response, target)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise Failure(f"cannot fetch {SDIST} from {index} ({exc}); put the file into {downloads}") from None
    if sha256(partial) != SHA256:
        partial.unlink()
        raise Failure(f"{SDIST} from {index} does not have the pinned sha256 {SHA256[:16]}...")
    partial.replace(path)
    return path


def build(sdist: Path, cache: Path) -> None:
    """Extract llama.cpp from the sdist, build llama-server, keep it and the converters in ``cache``."""
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise Failure(f"{tool} not found: building llama.cpp needs cmake and a C++ compiler (apt-get install "
                          "cmake g++)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="llamacpp-") as scratch:
        work = Path(scratch)
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(VENDORED + "/")]
            archive.extractall(work, members=members, filter="data")
        source, build_dir = work / VENDORED, work / "build"
        jobs = str(os.cpu_count() or 2)
        print(f"building llama.cpp's server from {SDIST} with {jobs} jobs (about 8 minutes on 2 cores)", flush=True)
        started = time.perf_counter()
        for step in (["cmake", "-S", str(source), "-B", str(build_dir), *CMAKE_OPTIONS],
                     ["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", jobs]):  # fmt: skip
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
                raise Failure(f"building llama.cpp failed at `{' '.join(step[:3])}`: {' | '.join(last)}")
        staged = cache.with_name(cache.name + ".part")
        shutil.rmtree(staged, ignore_errors=True)
        (staged / "bin").mkdir(parents=True)
        shutil.copy2(build_dir / "bin" / "llama-server", staged / "bin" / "llama-server")
        for name in CONVERTERS:
            item = source / name
            target = staged / "share" / "llama.cpp" / name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(item, target)
        seconds = round(time.perf_counter() - started)
        stamp = {"sdist": SDIST, "sha256": SHA256, "cmake_options": CMAKE_OPTIONS, "build_s": seconds}
        (staged / STAMP).write_text(json.dumps(stamp) + "\n")
        shutil.rmtree(cache, ignore_errors=True)
        staged.rename(cache)
        print(f"built in {seconds} s", flush=True)


def stamped(folder: Path) -> bool:
    """Whether ``folder`` holds a build of the pinned source with today's options (an older build is rebuilt)."""
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return False
    same = stamp.get("sha256") == SHA256 and stamp.get("cmake_options") == CMAKE_OPTIONS
    return same and (folder / "bin" / "llama-server").is_file()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / ".venvs" / "llamacpp", help="where the server goes")
    parser.add_argument("--downloads", type=Path, default=ROOT / ".cache" / "downloads")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--cache", type=Path, default=base / "fin-distill" / f"llama.cpp-{VERSION}",
                        help="where the build is kept for other checkouts on this machine")  # fmt: skip
    args = parser.parse_args()
    try:
        if stamped(args.out):
            print(f"llama.cpp server is up to date ({args.out / 'bin' / 'llama-server'})")
            return 0
        if not stamped(args.cache):
            build(fetch(args.downloads), args.cache)
        shutil.rmtree(args.out, ignore_errors=True)
        shutil.copytree(args.cache, args.out)
    except Failure as exc:
        print(f"get_llamacpp: {exc}", file=sys.stderr)
        return 2
    print(f"llama.cpp server ready: {args.out / 'bin' / 'llama-server'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
