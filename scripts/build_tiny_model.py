"""Build a tiny, randomly initialised chat model on disk, offline, in about a second.

The model is real (a Hugging Face Qwen2, Llama or GPT-2 architecture with a trained byte-level BPE tokenizer and
the chat template of the model it stands in for: ChatML for Qwen2.5, Zephyr for TinyLlama-Chat, none for GPT-2)
but small enough for CPU tests: engines can train it, serve it and generate from it.
It has never seen data, so it writes noise; tests rely on exactly that. With ``--fit`` it is then trained briefly
on a few distilled conversations, so its next-token distributions are peaked: a stand-in teacher for logit
distillation that shares the plain twin's tokenizer (the same arguments build the same tokenizer and initial weights).

    python scripts/build_tiny_model.py --arch qwen2 --out .cache/tiny-qwen2
    python scripts/build_tiny_model.py --arch qwen2 --out .cache/teacher --fit datasets/finsight/sharegpt_train.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
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
# TinyLlama-1.1B-Chat-v1.0's template (Zephyr style), for the Llama twin
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + eos_token }}"
    "{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    "{% endfor %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA_SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
CORPUS = """
Operating profit rose to EUR 13.1 mn from EUR 8.7 mn. Net sales decreased by 5 percent.
The company expects demand to weaken; guidance was cut. Shares of $AAPL gained 2% after earnings beat estimates.
<thinking> The text reports higher profit, so sentiment is positive. </thinking>
{"entities": [{"name": "NVIDIA", "sentiment": "positive"}], "sentiment": "positive", "risk_level": "Low"}
{"entities": [], "sentiment": "neutral", "risk_level": "Medium"} {"answer": "A bond is a loan to an issuer."}
What is EBITDA? Earnings before interest, taxes, depreciation and amortization measure operating performance.
negative neutral positive High Medium Low risk sentiment entities name
"""


TOKENS = {  # arch -> (special tokens, eos, bos, pad, chat template): each twin's own conventions
    "qwen2": (SPECIAL_TOKENS, "<|im_end|>", None, "<|endoftext|>", CHATML_TEMPLATE),
    "llama": (LLAMA_SPECIAL_TOKENS, "</s>", "<s>", "<unk>", ZEPHYR_TEMPLATE),
    "gpt2": (["<|endoftext|>"], "<|endoftext|>", "<|endoftext|>", "<|endoftext|>", None),
}
MAX_POSITIONS = 8192  # as long as any recipe's cutoff_len, so that smoke runs never change it


def corpus_texts(path: Path) -> list[str]:
    """The text of a corpus file: a JSONL file gives every string in its records (e.g. a ShareGPT training file)."""
    if path.suffix != ".jsonl":
        return [path.read_text(encoding="utf-8")]
    found: list[str] = []

    def collect(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            collect(json.loads(line))
    return found


def build_tokenizer(vocab_size: int, arch: str, corpus: list[Path] | None = None):
    """Train a byte-level BPE tokenizer on a few KB of finance text (and the ``corpus`` files, e.g. the training
    data, so that a student's vocabulary fits its task) and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials, eos, bos, pad, template = TOKENS[arch]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    texts = [CORPUS] * 20 + [text for path in corpus or [] for text in corpus_texts(path)]
    tok.train_from_iterator(texts, trainer=trainer)
    extra = [t for t in specials if t not in (eos, bos, pad)]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos,
        pad_token=pad,
        bos_token=bos,
        additional_special_tokens=extra,
        chat_template=template,
        model_max_length=MAX_POSITIONS,
    )


def build_model(arch: str, tokenizer, hidden: int, layers: int):
    """A randomly initialised causal LM of the requested architecture."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    ids = {
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    if arch == "gpt2":
        config = GPT2Config(
            vocab_size=len(tokenizer), n_embd=hidden, n_layer=layers, n_head=4, n_positions=MAX_POSITIONS, **ids
        )
        return GPT2LMHeadModel(config)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        **ids,
    )
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common))
    return LlamaForCausalLM(LlamaConfig(**common))


ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def fit(model, tokenizer, path: Path, examples: int, steps: int) -> float:
    """Train on the first ``examples`` ShareGPT conversations of ``path`` (every token, full batch); final loss."""
    import torch

    conversations = []
    for line in path.read_text(encoding="utf-8").splitlines()[:examples]:
        turns = json.loads(line)["conversations"]
        conversations.append([{"role": ROLES[t["from"]], "content": t["value"]} for t in turns])
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="qwen2", choices=sorted(TOKENS), help="model architecture")
    parser.add_argument("--out", required=True, type=Path, help="directory to write the model into")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument(
        "--corpus", type=Path, action="append", default=[], help="also train the tokenizer on this text file"
    )
    parser.add_argument("--fit", type=Path, help="then train the model on the conversations of this ShareGPT JSONL")
    parser.add_argument("--fit-examples", type=int, default=2, help="conversations to train on (the first N)")
    parser.add_argument("--fit-steps", type=int, default=20, help="full-batch optimizer steps")
    args = parser.parse_args()

    marker = args.out / "tiny_model.json"
    spec = {
        "arch": args.arch,
        "hidden": args.hidden_size,
        "layers": args.layers,
        "vocab": args.vocab_size,
        "positions": MAX_POSITIONS,
    }
    if args.corpus:  # the same files with the same content give the same tokenizer
        spec["corpus"] = hashlib.sha256(b"".join(path.read_bytes() for path in args.corpus)).hexdigest()
    if args.fit:
        spec["fit"] = [hashlib.sha256(args.fit.read_bytes()).hexdigest(), args.fit_examples, args.fit_steps]
    if marker.exists() and json.loads(marker.read_text()) == spec:
        print(f"tiny model already built: {args.out}")
        return
    tokenizer = build_tokenizer(args.vocab_size, args.arch, args.corpus)
    model = build_model(args.arch, tokenizer, args.hidden_size, args.layers)
    if args.fit:
        loss = fit(model, tokenizer, args.fit, args.fit_examples, args.fit_steps)
        print(f"fitted on {args.fit_examples} conversations of {args.fit}, {args.fit_steps} steps: loss {loss:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    model.generation_config.do_sample = False
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    marker.write_text(json.dumps(spec))
    print(f"tiny {args.arch} model ({sum(p.numel() for p in model.parameters()):,} parameters) written to {args.out}")


if __name__ == "__main__":
    main()
