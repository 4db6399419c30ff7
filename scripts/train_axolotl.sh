#!/bin/sh
# Train an Axolotl recipe: sh scripts/train_axolotl.sh [RECIPE] [--smoke] [key=value ...]
#   RECIPE defaults to recipes/axolotl/qwen2.5-7b-instruct_finsight_qlora.yaml. Several GPUs: Axolotl launches
#   through accelerate itself; add deepspeed=recipes/deepspeed/ds_z3.json for ZeRO-3.
set -eu
RECIPE="${1:-recipes/axolotl/qwen2.5-7b-instruct_finsight_qlora.yaml}"; [ "$#" -ge 1 ] && shift
exec sh "$(dirname "$0")/train.sh" axolotl "$RECIPE" "$@"
