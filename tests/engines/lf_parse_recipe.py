"""Run inside the LLaMA-Factory environment: parse configs with LLaMA-Factory's own argument parser, strictly.

    .venvs/llamafactory/bin/python tests/engines/lf_parse_recipe.py {train|export|api} CONFIG.yaml [...]

Prints ``LF_PARSED <path>`` per config; exits non-zero with LLaMA-Factory's own error (an unknown key is one).
Nothing is loaded: no model, no data.
"""

import sys

import yaml


def main() -> None:
    kind, *paths = sys.argv[1:]
    from llamafactory.hparams import get_infer_args, get_train_args

    for path in paths:
        with open(path, encoding="utf-8") as handle:
            args = yaml.safe_load(handle)
        if kind == "train":
            get_train_args(args)
        else:  # export and api use the inference parser, which refuses training keys
            get_infer_args(args)
        print(f"LF_PARSED {path}", flush=True)


if __name__ == "__main__":
    main()
