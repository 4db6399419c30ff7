"""Dequantise a GGUF model into a Hugging Face folder with transformers' own GGUF loader (needs the ``gguf``
package): ``python scripts/gguf_to_hf.py MODEL.gguf OUT_FOLDER``. Run by scripts/get_model.py in the LLaMA-Factory
environment.

The GGUF's tokenizer metadata names ``<|im_start|>`` as the end-of-sequence token of SmolLM2; the upstream
tokenizer_config (and the chat template, which ends every turn with ``<|im_end|>``) say ``<|im_end|>``: the folder
is written with the upstream special tokens, so that generation and training stop where a turn ends.

transformers also writes a SentencePiece-style decoder into ``tokenizer.json`` (ByteFallback, Fuse, Replace "▁",
ByteLevel). For this byte-level vocabulary it decodes exactly as upstream's plain ByteLevel decoder (checked on all
49,152 tokens and 2,000 random sequences), but llama.cpp's ``convert_hf_to_gguf.py`` takes it for a Llama
SentencePiece tokenizer and writes a GGUF that llama-server cannot tokenize with (HTTP 400 "unordered_map::at"):
a full fine-tune could not be served. The folder gets upstream's decoder, with which the converter recognises
SmolLM's pre-tokenizer (``smollm``, as in the registry's GGUF).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

UPSTREAM_SPECIAL_TOKENS = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
                           "unk_token": "<|endoftext|>"}  # fmt: skip
CONTEXT = 8192  # SmolLM2's context length (config.json: max_position_embeddings)
BYTE_LEVEL_DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


def main(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    for name, token in UPSTREAM_SPECIAL_TOKENS.items():
        setattr(tokenizer, name, token)
    tokenizer.model_max_length = CONTEXT
    model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.config.pad_token_id = model.generation_config.pad_token_id = model.config.eos_token_id
    temporary = out.with_name(out.name + ".part")
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)
    tokenizer.save_pretrained(temporary)
    saved = json.loads((temporary / "tokenizer_config.json").read_text())
    assert saved["eos_token"] == "<|im_end|>", saved
    tokenizer_json = temporary / "tokenizer.json"
    tokens = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    tokens["decoder"] = BYTE_LEVEL_DECODER
    tokenizer_json.write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    temporary.rename(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/gguf_to_hf.py MODEL.gguf OUT_FOLDER")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
