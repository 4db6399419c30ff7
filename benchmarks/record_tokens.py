"""Tokens per training record, and how many of them are the system prompt, with a model's own tokenizer and chat
template: what a student trains on, and what it is asked with later.

    python -m benchmarks.record_tokens --tokenizer .cache/models/SmolLM2-135M-Instruct DIR [DIR ...]

Each DIR is a data_gen output folder; its ``sharegpt_*.jsonl`` records are rendered with the tokenizer's chat
template (transformers, ``sh scripts/setup_env.sh local``) and counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def records(folder: Path) -> list[list[dict[str, str]]]:
    roles = {"system": "system", "human": "user", "gpt": "assistant"}
    found = []
    for path in sorted(folder.glob("sharegpt_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            turns = json.loads(line)["conversations"]
            found.append([{"role": roles[t["from"]], "content": t["value"]} for t in turns])
    return found


def count(tokenizer: object, messages: list[dict[str, str]]) -> int:
    rendered = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)  # type: ignore[attr-defined]
    return len(rendered["input_ids"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--tokenizer", required=True, help="a Hugging Face model or tokenizer folder")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    print("| data | records | tokens per record: mean | median | p95 | max | system prompt share of the tokens |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.folders:
        lengths, system = [], []
        for messages in records(folder):
            lengths.append(count(tokenizer, messages))
            system.append(count(tokenizer, messages[:1]))
        ordered = sorted(lengths)
        share = sum(system) / sum(lengths)
        print(f"| {folder} | {len(lengths):,} | {statistics.fmean(lengths):,.0f} | {statistics.median(lengths):,.0f} | "
              f"{ordered[int(0.95 * (len(ordered) - 1))]:,} | {ordered[-1]:,} | {share:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
