"""Build a tiny, randomly initialised chat model on disk, offline, in about a second.

The model is real (a Hugging Face Qwen2 or Llama architecture with a trained byte-level BPE tokenizer and
a ChatML chat template) but small enough for CPU tests: engines can train it, serve it and generate from it.
It has never seen data, so it writes noise; tests rely on exactly that.

    python scripts/build_tiny_model.py --arch qwen2 --out .cache/tiny-qwen2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = """
Operating profit rose to EUR 13.1 mn from EUR 8.7 mn. Net sales decreased by 5 percent.
The company expects demand to weaken; guidance was cut. Shares of $AAPL gained 2% after earnings beat estimates.
<thinking> The text reports higher profit, so sentiment is positive. </thinking>
{"entities": [{"name": "NVIDIA", "sentiment": "positive"}], "sentiment": "positive", "risk_level": "Low"}
{"entities": [], "sentiment": "neutral", "risk_level": "Medium"} {"answer": "A bond is a loan to an issuer."}
What is EBITDA? Earnings before interest, taxes, depreciation and amortization measure operating performance.
negative neutral positive High Medium Low risk sentiment entities name
"""


def build_tokenizer(vocab_size: int):
    """Train a byte-level BPE tokenizer on a few KB of finance text and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([CORPUS] * 20, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML_TEMPLATE,
        model_max_length=2048,
    )


def build_model(arch: str, tokenizer, hidden: int, layers: int):
    """A randomly initialised causal LM of the requested architecture."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common))
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    raise SystemExit(f"unknown --arch {arch!r}: choose qwen2 or llama")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="qwen2", choices=["qwen2", "llama"], help="model architecture")
    parser.add_argument("--out", required=True, type=Path, help="directory to write the model into")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args()

    marker = args.out / "tiny_model.json"
    spec = {"arch": args.arch, "hidden": args.hidden_size, "layers": args.layers, "vocab": args.vocab_size}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        print(f"tiny model already built: {args.out}")
        return
    tokenizer = build_tokenizer(args.vocab_size)
    model = build_model(args.arch, tokenizer, args.hidden_size, args.layers)
    args.out.mkdir(parents=True, exist_ok=True)
    model.generation_config.do_sample = False
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    marker.write_text(json.dumps(spec))
    print(f"tiny {args.arch} model ({sum(p.numel() for p in model.parameters()):,} parameters) written to {args.out}")


if __name__ == "__main__":
    main()
