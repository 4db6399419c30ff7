#!/bin/sh
# Merge a LoRA adapter into its base model: sh scripts/merge.sh recipes/llamafactory/merge/RECIPE.yaml [--smoke] [key=value ...]
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$#" -ge 1 ] || { echo "usage: sh scripts/merge.sh MERGE_RECIPE [--smoke] [key=value ...]" >&2; exit 2; }
RECIPE="$1"; shift
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
need_env llamafactory
compose "$RECIPE" "merge-$(basename "$RECIPE" .yaml)" "$@"
run_logged "$RUN_DIR/merge.log" "$CLI" export "$CONFIG"
echo "done: merged model in $(config_value export_dir); serve it with: vllm serve $(config_value export_dir)"
