#!/bin/sh
# Create one isolated, pinned Python environment. Reruns are no-ops while the pins are unchanged.
#   sh scripts/setup_env.sh core           -> .venv                 (data_gen, eval, tests; no training engine)
#   sh scripts/setup_env.sh local          -> .venv + torch / transformers as Axolotl's (--teacher local, --kd-teacher)
#   sh scripts/setup_env.sh llamafactory   -> .venvs/llamafactory   (LLaMA-Factory and its own torch)
#   sh scripts/setup_env.sh axolotl        -> .venvs/axolotl        (Axolotl and its own torch)
#   sh scripts/setup_env.sh vllm           -> .venvs/vllm           (vLLM serving; needs a CUDA GPU to run)
#   sh scripts/setup_env.sh llamacpp       -> .venvs/llamacpp       (llama.cpp's server, built from the pinned source)
#   sh scripts/setup_env.sh curator        -> .venvs/curator        (the peer of benchmarks.peer_throughput)
# The engines cannot share one environment (their pins conflict), so each gets its own.
set -eu
cd "$(dirname "$0")/.."

ENV_NAME="${1:-core}"
PYTHON="${PYTHON:-python3}"
UV_VERSION="0.13.9"

# llama.cpp is a C++ build, not a Python environment (scripts/get_llamacpp.py: pinned sdist, cmake, a no-op when done)
[ "$ENV_NAME" = "llamacpp" ] && exec "$PYTHON" scripts/get_llamacpp.py

case "$ENV_NAME" in
  core)         DIR=".venv";                PINS="pyproject.toml"; EXTRAS="dev,chat" ;;
  local)        DIR=".venv";                PINS="pyproject.toml"; EXTRAS="dev,chat,local" ;;
  llamafactory) DIR=".venvs/llamafactory";  PINS="requirements/llamafactory.txt" ;;
  axolotl)      DIR=".venvs/axolotl";       PINS="requirements/axolotl.txt" ;;
  vllm)         DIR=".venvs/vllm";          PINS="requirements/vllm.txt" ;;
  curator)      DIR=".venvs/curator";       PINS="requirements/curator.txt" ;;
  *) echo "setup_env.sh: unknown environment '$ENV_NAME' (choose: core, local, llamafactory, axolotl, vllm, llamacpp, curator)" >&2; exit 2 ;;
esac
[ -f "$PINS" ] || { echo "setup_env.sh: pin file $PINS is missing" >&2; exit 2; }

STAMP="$DIR/.fin-distill-pins"  # "<cksum of the pins> <extras installed>"
PINSUM="$(cat "$PINS" | cksum)"
WANT="$PINSUM ${EXTRAS:-}"
# up to date: the same pins, and every extra wanted already installed (core's dev,chat are inside local's
# dev,chat,local, so `make test` followed by `make demo` installs nothing twice)
up_to_date() {
  [ -f "$STAMP" ] && [ -x "$DIR/bin/python" ] || return 1
  have="$(cat "$STAMP")"
  case "$have" in "$PINSUM "*) ;; *) return 1 ;; esac
  for extra in $(echo "${EXTRAS:-}" | tr ',' ' '); do
    case ",${have#"$PINSUM "}," in *",$extra,"*) ;; *) return 1 ;; esac
  done
}
if up_to_date; then
  echo "environment '$ENV_NAME' is up to date ($DIR)"
  exit 0
fi

# uv installs in seconds what pip takes minutes for; bring our own pinned copy if there is none.
if command -v uv >/dev/null 2>&1; then
  UV="uv"
else
  mkdir -p .venvs
  # one installer at a time: two setups started together (make -j, two shells) must not both write this copy
  flock .venvs/.tools.lock sh -c '
    [ -x .venvs/tools/bin/uv ] && exit 0
    echo "installing uv $1 into .venvs/tools"
    "$2" -m venv .venvs/tools
    .venvs/tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$1"' sh "$UV_VERSION" "$PYTHON"
  UV=".venvs/tools/bin/uv"
fi

echo "creating environment '$ENV_NAME' in $DIR from $PINS"
[ -x "$DIR/bin/python" ] || "$UV" venv --quiet --python "$PYTHON" "$DIR"
# Python here may run with PYTHONDONTWRITEBYTECODE=1: compile once now, or every start recompiles everything.
if [ -n "${EXTRAS:-}" ]; then
  "$UV" pip install --quiet --compile-bytecode --python "$DIR/bin/python" -e ".[$EXTRAS]"
else
  "$UV" pip install --quiet --compile-bytecode --python "$DIR/bin/python" -r "$PINS"
fi
echo "$WANT" > "$STAMP"
echo "environment '$ENV_NAME' ready: $DIR"
