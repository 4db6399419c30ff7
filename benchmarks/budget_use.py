"""How much of a spending cap a run uses before it stops, and that it never passes it.

    python -m benchmarks.budget_use                    # C = 4 and 64; honest, over-counting and usage-less servers
    python -m benchmarks.budget_use --concurrency 64 --servers honest --cap 20

A local OpenAI-compatible server (``python -m tests.fake_server``, its own process, fixed latency) answers every
request validly and reports usage as a server would: ~4 characters a token (``honest``), twice that many tokens
(``double``: a tokenizer that counts non-Latin text or hidden reasoning tokens), or no usage at all (``none``: the
client counts). The client is the real CLI with ``--max-cost``; prices are 100 USD per million tokens in and out,
so one answer costs about $0.13 and the first worst case the client reserves is about $0.27. For each run: what the
ledger says was spent, its share of the cap (goal: at least 0.8, never over 1), the calls made, and the rows
accepted before the stop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.distill_throughput import write_rows
from eval.backends import free_port

SERVERS = {"honest": [], "double": ["--usage-scale", "2"], "none": ["--no-usage"]}
ROOT = Path(__file__).resolve().parents[1]
PRICE = 100.0


def one_run(
    work: Path, concurrency: int, server_kind: str, cap: float, latency: float, rows: Path, client_root: Path
) -> dict:
    port = free_port()
    bill = work / f"bill-{server_kind}-{concurrency}-{client_root.name}.json"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_server", "--port", str(port), "--latency", str(latency),
         "--times", str(bill), *SERVERS[server_kind]],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    server.stdout.readline()  # "fake OpenAI-compatible server on ..."
    out = work / f"out-{server_kind}-{concurrency}-{client_root.name}"
    prices = work / "prices.yaml"
    prices.write_text(f"models:\n  priced: {{input: {PRICE}, output: {PRICE}}}\n")
    client = [
        sys.executable, "-m", "data_gen.distill", "--input", str(rows), "--id-column", "id", "--teacher", "openai",
        "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "priced", "--api-key-env", "", "--prices",
        str(prices), "--max-cost", str(cap), "--concurrency", str(concurrency), "--no-adaptive-concurrency",
        "--no-dedup", "--no-progress", "--formats", "sharegpt", "--out", str(out), "--timeout", "30",
    ]  # fmt: skip
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(client_root)}
        done = subprocess.run(client, capture_output=True, text=True, env=env, cwd=client_root)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    if done.returncode not in (0, 4):
        raise SystemExit(f"client failed ({done.returncode}): {done.stderr[-2000:]}")
    db = sqlite3.connect(out / "cache.sqlite")
    columns = {row[1] for row in db.execute("PRAGMA table_info(calls)")}
    estimated_sum = "SUM(estimated)" if "estimated" in columns else "0"  # clients before the ledger knew estimates
    counted, calls, estimated = db.execute(f"SELECT SUM(cost), COUNT(*), {estimated_sum} FROM calls").fetchone()
    db.close()
    billed = json.loads(bill.read_text())["billed_tokens"] * PRICE / 1e6  # what the provider charges
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "client": client_root.name,
        "server": server_kind,
        "concurrency": concurrency,
        "cap_usd": cap,
        "billed_usd": round(billed, 4),
        "billed_share_of_cap": round(billed / cap, 3),
        "over_cap": billed > cap + 1e-9,
        "ledger_usd": round(counted or 0.0, 4),
        "ledger_share_of_cap": round((counted or 0.0) / cap, 3),
        "stopped_by_cap": done.returncode == 4,
        "http_calls": calls,
        "estimated_calls": estimated,
        "accepted": manifest["counts"]["accepted"],
        "ask_s": manifest["timings"].get("ask_s"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 64])
    parser.add_argument("--servers", nargs="+", choices=sorted(SERVERS), default=["honest", "double", "none"])
    parser.add_argument("--cap", type=float, default=30.0, help="USD (about 230 honest answers)")
    parser.add_argument("--rows", type=int, default=800, help="more than the cap can pay for")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--client-root", type=Path, nargs="+", default=[ROOT],
        help="checkouts whose data_gen runs as the client (e.g. an older commit, for a before / after in one run)",
    )  # fmt: skip
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="budget-use-") as scratch:
        work = Path(scratch)
        rows = work / "rows.jsonl"
        write_rows(rows, args.rows)
        for root in args.client_root:
            for kind in args.servers:
                for concurrency in args.concurrency:
                    result = one_run(work, concurrency, kind, args.cap, args.latency, rows, root.resolve())
                    results.append(result)
                    print(json.dumps(result), flush=True)
    header = ["client", "server usage", "C", "billed (share of cap)", "over the cap?", "ledger (share of cap)",
              "calls (estimated)", "rows accepted"]  # fmt: skip
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in results:
        cells = [r["client"], r["server"], r["concurrency"], f"${r['billed_usd']:.2f} ({r['billed_share_of_cap']:.3f})",
                 "**yes**" if r["over_cap"] else "no", f"${r['ledger_usd']:.2f} ({r['ledger_share_of_cap']:.3f})",
                 f"{r['http_calls']} ({r['estimated_calls']})", r["accepted"]]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
