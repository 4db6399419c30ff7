"""Client cost of logit-distillation scoring through a served teacher (`--kd-teacher http://.../v1`): can
`python -m data_gen.distill` keep up with a GPU that answers vLLM echo requests, top-K log-probabilities at every
position of every conversation?

    python -m benchmarks.kd_scoring          # 300 replies, K = 20, 500 ms per answer, C = 4, 16, 64, median of 3

A stand-in server in its own process answers `/tokenize` with the student's tokenizer and `/v1/completions` in
vLLM's echo format after a fixed latency (the GPU's time): K + 1 entries named `token_id:<n>` per position, as
vLLM sends when the prompt token is outside the top K. The client is the real CLI (rules teacher for the replies,
the cache and every file written). For each concurrency C: replies scored per second over the scoring pass, the
ceiling C / latency, their ratio, the client's CPU time per reply and the rate one core sustains at that cost,
the bytes of one answer and of one example's rows in kd_<split>.jsonl.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.distill_throughput import run_client, write_rows
from eval.backends import free_port
from tests.http_stub import JSONHandler, LoopbackServer

ROOT = Path(__file__).resolve().parents[1]


def serve(port: int, tokenizer_path: str, latency: float, top_k: int) -> None:
    """The stand-in: echo answers built from one pre-serialised entry, so the server costs little CPU."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    entry = json.dumps({f"token_id:{100 + i}": round(-0.05 - 0.37 * i, 5) for i in range(top_k + 1)})
    stats = {"completions": 0, "bytes": 0, "tokens": 0}
    lock = threading.Lock()

    class Handler(JSONHandler):
        def do_GET(self) -> None:
            if self.path == "/stats":
                self.send_json(200, stats)
            else:
                self.send_json(200, {"object": "list", "data": [{"id": "teacher", "object": "model"}]})

        def do_POST(self) -> None:
            body = self.read_json()
            if self.path == "/tokenize":
                ids = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=False, return_dict=True)
                self.send_json(200, {"count": len(ids["input_ids"]), "tokens": ids["input_ids"]})
                return
            time.sleep(latency)
            ids = body["prompt"]
            tokens = json.dumps([f"token_id:{t}" for t in [*ids, 100]])
            top = "[null," + ",".join([entry] * len(ids)) + "]"
            logprobs = f'{{"text_offset":[],"token_logprobs":[],"tokens":{tokens},"top_logprobs":{top}}}'
            usage = json.dumps({"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1})
            choice = f'{{"index":0,"text":"","finish_reason":"length","logprobs":{logprobs}}}'
            payload = f'{{"object":"text_completion","model":"teacher","choices":[{choice}],"usage":{usage}}}'.encode()
            with lock:
                stats["completions"] += 1
                stats["bytes"] += len(payload)
                stats["tokens"] += len(ids)
            self.send_json(200, payload)

    server = LoopbackServer(port, Handler)
    print("ready", flush=True)
    server.serve_forever()


def run(args: argparse.Namespace, concurrency: int, tokenizer: Path, work: Path) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.kd_scoring", "--serve", str(port), "--tokenizer",
                               str(tokenizer), "--latency", str(args.latency), "--top-k", str(args.top_k)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    try:
        server.stdout.readline()
        out = Path(tempfile.mkdtemp(prefix=f"out-{concurrency}-", dir=work))  # a fresh cache each run
        client = [sys.executable, "-m", "data_gen.distill", "--task", "finsight", "--input", str(work / "rows.jsonl"),
                  "--id-column", "id", "--no-dedup", "--no-progress", "--formats", "sharegpt",
                  "--kd-teacher", f"http://127.0.0.1:{port}/v1", "--kd-top-k", str(args.top_k),
                  "--student-tokenizer", str(tokenizer), "--concurrency", str(concurrency),
                  "--out", str(out)]  # fmt: skip
        _, wall, usage = run_client(client, env=None)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as response:
            stats = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=10)
    manifest = json.loads((out / "manifest.json").read_text())
    scored = manifest["kd"]["scored"]
    timings = manifest["timings"]
    rate = scored / timings["score_s"]
    ceiling = concurrency / args.latency
    cpu_ms = 1000 * timings["score_cpu_s"] / scored
    kd_bytes = sum(p.stat().st_size for p in out.glob("kd_*.jsonl"))
    return {
        "concurrency": concurrency,
        "replies": scored,
        "score_s": timings["score_s"],
        "replies_per_s": round(rate, 2),
        "ceiling_per_s": round(ceiling, 2),
        "ratio": round(rate / ceiling, 3),
        "client_cpu_ms_per_reply": round(cpu_ms, 2),
        "one_core_replies_per_s": round(1000 / cpu_ms, 1),
        "tokens_per_conversation": round(stats["tokens"] / stats["completions"]),
        "answer_kb": round(stats["bytes"] / stats["completions"] / 1024, 1),
        "kd_kb_per_example": round(kd_bytes / scored / 1024, 1),
        "client_peak_rss_mb": round(usage["max_rss_mb"], 1),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300, help="replies to score")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the server takes per answer (the GPU)")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help="runs per concurrency; the median is reported")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.tokenizer, args.latency, args.top_k)
        return
    with tempfile.TemporaryDirectory(prefix="kd-bench-") as tmp:
        work = Path(tmp)
        tokenizer = work / "student"  # the tiny twin's tokenizer (no model hub here): about 3,000 tokens a reply
        subprocess.run([sys.executable, "scripts/build_tiny_model.py", "--arch", "qwen2", "--out", str(tokenizer)],
                       cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        write_rows(work / "rows.jsonl", args.rows)
        results = []
        for c in args.concurrency:  # the median run (by replies/s) of --repeats
            runs = sorted((run(args, c, tokenizer, work) for _ in range(args.repeats)), key=lambda r: r["ratio"])
            results.append({**runs[len(runs) // 2], "ratios": [r["ratio"] for r in runs]})
    report = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores", "latency_s": args.latency,
              "top_k": args.top_k, "runs": results}  # fmt: skip
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
