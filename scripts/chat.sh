#!/bin/sh
# The task's chat page (python -m eval.chat): base, student and teacher answer the same text side by side.
#   sh scripts/chat.sh                 after `make demo`: SmolLM2-135M-Instruct, the demo's student and the rules
#                                      teacher, served by llama.cpp, on http://127.0.0.1:7860
#   sh scripts/chat.sh --task qa       more eval.chat options after those defaults (python -m eval.chat --help)
#   sh scripts/chat.sh --backend endpoint --endpoint http://127.0.0.1:8000/v1 --model NAME [--adapter NAME]
#                                      [--student-endpoint URL: the student's own server]
#                                      running servers instead: with --model or --endpoint, no defaults are added
# Knobs (environment): MODEL (.cache/models/SmolLM2-135M-Instruct), ADAPTER (reports/demo/student; none: no student).
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup_env.sh core >&2
MODEL="${MODEL:-.cache/models/SmolLM2-135M-Instruct}"
ADAPTER="${ADAPTER:-reports/demo/student}"
case " $* " in
  *" --model "*|*" --endpoint "*|*" --model="*|*" --endpoint="*) ;;
  *)
    [ -d "$MODEL" ] || { echo "error: $MODEL not found: run make demo (or make model) first, or pass --model" >&2; exit 2; }
    if [ "$ADAPTER" != none ] && [ ! -d "$ADAPTER" ]; then
      echo "note: no student at $ADAPTER (make demo trains one): showing the base and the teacher" >&2
      ADAPTER=none
    fi
    student=""; [ "$ADAPTER" = none ] || student="--adapter $ADAPTER"
    # shellcheck disable=SC2086
    set -- --backend llamacpp --model "$MODEL" $student --teacher rules --reports reports "$@"
    ;;
esac
exec .venv/bin/python -m eval.chat "$@"
