#!/bin/sh
# Logit-level distillation with Axolotl's KD trainer: sh scripts/train_kd.sh [RECIPE] [--smoke] [key=value ...]
#   RECIPE defaults to recipes/axolotl/qwen2.5-7b-instruct_finsight_kd.yaml; its data is written by
#   python -m data_gen.distill ... --kd-teacher TEACHER_FOLDER --kd-top-k 20 (README, "Hard-label or logit
#   distillation"). The log shows loss, kd_loss (soft term) and ce_loss (hard term).
set -eu
RECIPE="${1:-recipes/axolotl/qwen2.5-7b-instruct_finsight_kd.yaml}"; [ "$#" -ge 1 ] && shift
exec sh "$(dirname "$0")/train.sh" axolotl "$RECIPE" "$@"
