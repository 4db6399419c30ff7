"""Run inside the Axolotl environment: the rows of each prepared (tokenized) dataset and, per row, the text the loss
is computed on (the tokens whose label is not -100).

    .venvs/axolotl/bin/python tests/engines/ax_prepared.py PREPARED_DIR TOKENIZER_DIR
"""

import json
import sys
from pathlib import Path

from transformers import AutoTokenizer

from datasets import load_from_disk

tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
report = []
for folder in sorted(path.parent for path in Path(sys.argv[1]).rglob("dataset_info.json")):
    rows = load_from_disk(str(folder))
    trained = [
        tokenizer.decode([t for t, label in zip(r["input_ids"], r["labels"], strict=True) if label != -100])
        for r in rows
    ]
    report.append({"folder": folder.name, "rows": len(rows), "trained": trained})
print("AX_PREPARED " + json.dumps(report))
