"""Distil chain-of-thought + JSON training data from a teacher into validated ShareGPT / Alpaca files.

    python -m data_gen.distill --input news.csv --text-column text --task finsight \\
        --teacher openai --base-url https://api.deepseek.com/v1 --model deepseek-chat \\
        --api-key-env DEEPSEEK_API_KEY --out datasets/finsight
    python -m data_gen.distill --input questions.jsonl --task qa --teacher rules --out datasets/finqa
    python -m data_gen.distill --config data_gen/configs/finsight.yaml     # flags override the file
"""

from __future__ import annotations

import asyncio
import logging
import sys

from data_gen.errors import EXIT_BUDGET, run_cli
from data_gen.options import build_parser, load_config
from data_gen.redact import RedactingFilter, redact
from data_gen.run.config import DistillConfig, validate
from data_gen.run.pipeline import BudgetStop, distill
from data_gen.run.report import summary_lines
from data_gen.run.workers import ShardFailed, run_workers

EPILOG = """
Every input row ends accepted or rejected with a reason (rejects.jsonl); manifest.json has the counts, token
usage, cost and versions. Teacher responses are stored in <out>/cache.sqlite before they are used: rerunning the
same command, or changing only the output formats or splits, sends no request again. Use --dry-run first to see
how many requests, tokens and dollars a run needs.

The default teacher, `rules`, is an offline rule-based baseline (no key, no network, no GPU); plug in a real
teacher with --teacher openai --base-url URL --model NAME --api-key-env VAR.

Long runs: --rpm / --tpm cap the request and token rates (never exceeded in any rolling minute); adaptive
concurrency backs off on 429 / 5xx / rising latency; --max-cost USD and --max-tokens N cap everything this
output directory has spent (every call is in its ledger, capped or not): near the cap fewer requests are in
flight, and the run stops cleanly before a request that could exceed it (rerun with a higher cap to resume);
--batch-write / --batch-ingest go through the OpenAI Batch API or `vllm run-batch` at batch prices. Each output
directory also gets README.md, a dataset card.

--out is a new or empty folder, or an earlier output of the same task and input, which the run resumes; any other
folder is refused (--overwrite replaces a data_gen output of another job; files data_gen did not write are never
touched). Keys are masked ([REDACTED]) in every error text, log line and file.

More than one process: --workers N runs N shards of the job here (each in <out>/shards/K-of-N, resumable) and
merges them into --out. On N machines (or a Slurm array: --shard slurm), run the same command with --shard K/N
and its own --out on each, then `python -m data_gen.merge --out DIR SHARD_DIR...`. Every shard checks every row
for duplicates, so the merged dataset is the one a single process writes; --max-cost and --max-tokens are the
whole job's caps, each shard spending at most 1/N of them.

exit status: 0 done, 2 bad input or configuration, 3 teacher unreachable or refusing, 4 stopped by the budget
(outputs written, rerun with a higher cap to resume), 130 interrupted.
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(DistillConfig, __doc__ or "", EPILOG, prog="python -m data_gen.distill")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("openai").setLevel(logging.WARNING)
    logging.getLogger("data_gen").setLevel(logging.INFO)
    console = logging.getLogger().handlers[0]
    console.setLevel(logging.WARNING)  # the console gets warnings; the log file all
    console.addFilter(RedactingFilter())

    def work() -> int:
        config = load_config(args, DistillConfig, validate)
        given = list(argv if argv is not None else sys.argv[1:])
        command = ["python", "-m", "data_gen.distill", *given]
        try:
            if config.workers > 1 and not config.dry_run:
                manifest = run_workers(config, given)
            else:
                manifest = asyncio.run(distill(config, argv=command))
        except ShardFailed as failed:
            print(f"error: {redact(str(failed))}", file=sys.stderr)  # the tail of a shard's log, masked again
            return failed.code
        except BudgetStop as stop:
            for line in summary_lines(stop.manifest, config.out or ""):
                print(line)
            waiting = stop.manifest["counts"]["rejected_by_reason"].get("budget_exhausted", 0)
            print(
                f"stopped by the budget: {stop}. {waiting:,} rows not asked are rejected as budget_exhausted; to "
                "resume, rerun the same command with a higher cap (--max-cost / --max-tokens): nothing already paid "
                "for is asked again.",
                file=sys.stderr,
            )
            return EXIT_BUDGET
        lines = summary_lines(manifest, config.out or "") if "counts" in manifest else manifest.get("lines", [])
        for line in lines:  # the library returns what to say (a dry run's plan, batch files); the CLI says it
            print(line)
        return 0

    return run_cli(work, stored="stored teacher responses are kept")


if __name__ == "__main__":
    sys.exit(main())
