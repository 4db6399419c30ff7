#!/bin/sh
# Chat with a model in the browser (LLaMA-Factory's Gradio web chat): sh scripts/chat.sh recipes/llamafactory/serve/RECIPE.yaml [--smoke]
#   GRADIO_SERVER_NAME (127.0.0.1) and GRADIO_SERVER_PORT (7860) choose where it listens.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$#" -ge 1 ] || { echo "usage: sh scripts/chat.sh SERVE_RECIPE [--smoke] [key=value ...]" >&2; exit 2; }
RECIPE="$1"; shift
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
need_env llamafactory
compose "$RECIPE" "chat-$(basename "$RECIPE" .yaml)" "$@"
export GRADIO_SERVER_NAME="${GRADIO_SERVER_NAME:-127.0.0.1}" GRADIO_SERVER_PORT="${GRADIO_SERVER_PORT:-7860}"
export GRADIO_ANALYTICS_ENABLED="${GRADIO_ANALYTICS_ENABLED:-False}"  # no usage reports
echo "web chat on http://$GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT"
exec "$CLI" webchat "$CONFIG"
