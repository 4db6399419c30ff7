#!/bin/sh
# Qwen2.5-7B-Instruct, finsight, QLoRA 4-bit with LLaMA-Factory: sh scripts/train_qwen.sh [--smoke] [key=value ...]
set -eu
exec sh "$(dirname "$0")/train.sh" llamafactory recipes/llamafactory/qwen2.5-7b-instruct_finsight_qlora.yaml "$@"
