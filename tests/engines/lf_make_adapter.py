"""Write a LoRA adapter for a local model with PEFT (random, non-zero weights, so that it changes the answers).

    python tests/engines/lf_make_adapter.py MODEL_DIR OUT_DIR [--rank 8]

Runs in the LLaMA-Factory environment (torch, transformers, peft); the adapter is what training would save.
"""

from __future__ import annotations

import argparse

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    config = LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero (a no-op adapter); a trained one is not
                param.normal_(0, 0.5)
    peft_model.save_pretrained(args.out)


if __name__ == "__main__":
    main()
