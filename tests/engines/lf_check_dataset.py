"""Run inside the LLaMA-Factory environment: load datasets the way `llamafactory-cli train` does and report.

    .venvs/llamafactory/bin/python tests/engines/lf_check_dataset.py MODEL_DIR DATASET_DIR NAME [NAME ...]

Prints one JSON object: for each dataset name, the rows LLaMA-Factory's converter produced, how many it kept
as valid (a row it skips comes out with an empty prompt or response), the converted first row, and the number
of tokenized training examples.
"""

import json
import sys
import tempfile


def main() -> None:
    model_dir, dataset_dir, *names = sys.argv[1:]
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.data.loader import _get_merged_dataset, get_dataset
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    report = {}
    for name in names:
        with tempfile.TemporaryDirectory() as out:
            args = {
                "model_name_or_path": model_dir,
                "stage": "sft",
                "do_train": True,
                "finetuning_type": "lora",
                "dataset": name,
                "dataset_dir": dataset_dir,
                "template": "qwen",
                "cutoff_len": 8192,
                "output_dir": out,
                "overwrite_cache": True,
                "report_to": "none",
                "use_cpu": True,
            }
            model_args, data_args, training_args, _, _ = get_train_args(args)
            converted = _get_merged_dataset([name], model_args, data_args, training_args, "sft")
            valid = sum(1 for row in converted if len(row["_prompt"]) % 2 == 1 and len(row["_response"]) == 1)
            tokenizer_module = load_tokenizer(model_args)
            template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
            module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
            first = converted[0]
            report[name] = {
                "converted_rows": len(converted),
                "valid_rows": valid,
                "tokenized_rows": len(module["train_dataset"]),
                "first": {"system": first["_system"], "prompt": first["_prompt"], "response": first["_response"]},
            }
    print("LF_REPORT " + json.dumps(report))


if __name__ == "__main__":
    main()
