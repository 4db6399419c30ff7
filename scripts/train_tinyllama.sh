#!/bin/sh
# TinyLlama-1.1B-Chat, finance Q&A, LoRA q/k/v/o on 4-bit with LLaMA-Factory: sh scripts/train_tinyllama.sh [--smoke] [key=value ...]
set -eu
exec sh "$(dirname "$0")/train.sh" llamafactory recipes/llamafactory/tinyllama-1.1b-chat_qa_qlora.yaml "$@"
