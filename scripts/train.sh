#!/bin/sh
# Train with a recipe: sh scripts/train.sh ENGINE RECIPE [--smoke] [key=value ...]
#   ENGINE: llamafactory | axolotl. key=value pairs override the recipe for this run; --smoke (or SMOKE=1) runs
#   the same recipe on a tiny local model on CPU for a few steps. The composed config and the log are kept in
#   saves/runs/<recipe>/.
# Several GPUs / nodes (LLaMA-Factory): FORCE_TORCHRUN=1 [NNODES=2 NODE_RANK=0 MASTER_ADDR=... MASTER_PORT=...]
#   sh scripts/train.sh llamafactory RECIPE deepspeed=recipes/deepspeed/ds_z3.json   (ds_z2.json for ZeRO-2)
#   FSDP + QLoRA: LAUNCHER=accelerate ACCELERATE_CONFIG=recipes/accelerate/fsdp_qlora.yaml sh scripts/train.sh ...
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$#" -ge 2 ] || { echo "usage: sh scripts/train.sh {llamafactory|axolotl} RECIPE [--smoke] [key=value ...]" >&2; exit 2; }
ENGINE="$1"; RECIPE="$2"; shift 2
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
need_env "$ENGINE"
compose "$RECIPE" "$ENGINE-$(basename "$RECIPE" .yaml)" "$@"
OUT_DIR="$(config_value output_dir)"
echo "training: $RECIPE with $ENGINE; config $CONFIG"
if [ "${LAUNCHER:-}" = accelerate ]; then
  [ "$ENGINE" = llamafactory ] || { echo "error: LAUNCHER=accelerate is for llamafactory recipes" >&2; exit 2; }
  [ -f "${ACCELERATE_CONFIG:-}" ] || { echo "error: ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-} is not a file" >&2; exit 2; }
  run_logged "$RUN_DIR/train.log" "$ENV/bin/accelerate" launch --config_file "$ACCELERATE_CONFIG" \
    -m llamafactory.launcher "$CONFIG"
else
  run_logged "$RUN_DIR/train.log" "$CLI" train "$CONFIG"
fi
CURVE=""; [ "$ENGINE" = llamafactory ] && CURVE="; loss curve $OUT_DIR/training_loss.png"
echo "done: model or adapter in $OUT_DIR$CURVE; log $RUN_DIR/train.log"
