#!/bin/sh
# Merge a trained LoRA adapter into its base model (on CPU is enough):
#   sh scripts/merge.sh recipes/llamafactory/merge/RECIPE.yaml [--smoke] [key=value ...]   llamafactory-cli export
#   sh scripts/merge.sh recipes/axolotl/RECIPE.yaml [--smoke] [key=value ...]              axolotl merge-lora, from
#       the training recipe itself; the merged model goes to <output_dir>/merged
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$#" -ge 1 ] || { echo "usage: sh scripts/merge.sh MERGE_RECIPE|AXOLOTL_RECIPE [--smoke] [key=value ...]" >&2; exit 2; }
RECIPE="$1"; shift
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
case "$RECIPE" in
  *recipes/axolotl/*)
    need_env axolotl
    compose "$RECIPE" "merge-axolotl-$(basename "$RECIPE" .yaml)" "$@"
    ADAPTER="$(config_value output_dir)"
    [ -f "$ADAPTER/adapter_config.json" ] || { echo "error: no adapter in $ADAPTER: train $RECIPE first" >&2; exit 2; }
    run_logged "$RUN_DIR/merge.log" "$CLI" merge-lora "$CONFIG" --lora-model-dir "$ADAPTER"
    MERGED="$ADAPTER/merged" ;;
  *)
    need_env llamafactory
    compose "$RECIPE" "merge-$(basename "$RECIPE" .yaml)" "$@"
    run_logged "$RUN_DIR/merge.log" "$CLI" export "$CONFIG"
    MERGED="$(config_value export_dir)" ;;
esac
echo "done: merged model in $MERGED; serve it with: vllm serve $MERGED"
