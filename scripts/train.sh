#!/bin/sh
# Train with a recipe: sh scripts/train.sh ENGINE RECIPE [--smoke] [key=value ...]
#   ENGINE: llamafactory | axolotl. key=value pairs override the recipe for this run; --smoke (or SMOKE=1) runs
#   the same recipe on a tiny local model on CPU for a few steps. The composed config and the log are kept in
#   saves/runs/<recipe>/.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$#" -ge 2 ] || { echo "usage: sh scripts/train.sh {llamafactory|axolotl} RECIPE [--smoke] [key=value ...]" >&2; exit 2; }
ENGINE="$1"; RECIPE="$2"; shift 2
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
need_env "$ENGINE"
compose "$RECIPE" "$(basename "$RECIPE" .yaml)" "$@"
OUT_DIR="$(config_value output_dir)"
echo "training: $RECIPE with $ENGINE; config $CONFIG"
run_logged "$RUN_DIR/train.log" "$CLI" train "$CONFIG"
echo "done: model or adapter in $OUT_DIR; loss curve $OUT_DIR/training_loss.png; log $RUN_DIR/train.log"
