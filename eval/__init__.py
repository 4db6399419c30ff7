"""eval: serve models (vLLM, llama.cpp, LLaMA-Factory or any OpenAI-compatible endpoint), generate, score and
report with intervals (``python -m eval.run``)."""
