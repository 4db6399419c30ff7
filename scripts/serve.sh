#!/bin/sh
# Serve a model behind an OpenAI-compatible API: sh scripts/serve.sh recipes/llamafactory/serve/RECIPE.yaml [--smoke]
#   ENGINE=llamafactory (default): llamafactory-cli api, base model + LoRA adapter, on CPU or GPU.
#   ENGINE=vllm: vllm serve BASE --enable-lora --lora-modules NAME=ADAPTER (a CUDA GPU and .venvs/vllm).
#   HOST (127.0.0.1), PORT (8000), API_KEY (optional bearer key, read from the environment, never printed).
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$#" -ge 1 ] || { echo "usage: [ENGINE=vllm] sh scripts/serve.sh SERVE_RECIPE [--smoke] [key=value ...]" >&2; exit 2; }
RECIPE="$1"; shift
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
HOST="${HOST:-127.0.0.1}"; PORT="${PORT:-8000}"
need_env llamafactory  # composes the config (and builds a smoke model) in any case
compose "$RECIPE" "serve-$(basename "$RECIPE" .yaml)" "$@"
NAME="$(basename "$RECIPE" .yaml)"
if [ "${ENGINE:-llamafactory}" = vllm ]; then
  BASE="$(config_value model_name_or_path)"; ADAPTER="$(config_value adapter_name_or_path)"
  # the LoRA flags (rank from the adapter's own config) come from eval's vLLM backend: one implementation
  LORA_ARGS="$("$ENV/bin/python" -m eval.backends "$NAME=$ADAPTER")" || exit 2
  need_env vllm
  echo "serving $BASE with adapter $NAME=$ADAPTER on http://$HOST:$PORT/v1 (vllm)"
  # one flag or value per line: split on newlines only, so paths with spaces survive
  set -f; IFS='
'
  # shellcheck disable=SC2086
  set -- $LORA_ARGS; unset IFS; set +f
  exec "$CLI" serve "$BASE" "$@" --host "$HOST" --port "$PORT"
fi
echo "serving $RECIPE on http://$HOST:$PORT/v1 (llamafactory-cli api; model name: $NAME)"
API_HOST="$HOST" API_PORT="$PORT" API_MODEL_NAME="$NAME" exec "$CLI" api "$CONFIG"
