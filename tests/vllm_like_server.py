"""A scripted stand-in for `vllm serve` on 127.0.0.1, for what vLLM (CUDA only) cannot show here: a local Hugging
Face model answers `/v1/models`, `/tokenize` and `/v1/completions` with `echo` + `logprobs` in vLLM's response
format (read from vLLM's `completion/serving.py` and `completion/protocol.py`): one `top_logprobs` entry per token,
None for the first prompt token, each entry holding the token itself first and then the top K, named
`token_id:<n>` under `return_tokens_as_token_ids`. The numbers come from the model itself, computed here
independently of data_gen's scorers.

Faults are switched at run time (POST /configure): token names as text (a server ignoring
return_tokens_as_token_ids), a smaller --max-logprobs, a --max-model-len that some conversations exceed.
GET /stats counts the completion requests.

    python -m tests.vllm_like_server --model DIR --port 8000
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from tests.http_stub import JSONHandler, LoopbackServer


class State:
    def __init__(self, model_dir: str, name: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.name = name
        self.lock = threading.Lock()
        self.options = {"names_as_text": False, "max_logprobs": 20, "max_model_len": 32768}
        self.completions = 0

    def tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        if "messages" in body:
            ids = self.tokenizer.apply_chat_template(
                body["messages"], add_generation_prompt=body.get("add_generation_prompt", True), return_dict=True
            )["input_ids"]
        else:
            ids = self.tokenizer(body["prompt"], add_special_tokens=body.get("add_special_tokens", True))["input_ids"]
        return {"count": len(ids), "max_model_len": self.options["max_model_len"], "tokens": list(ids)}

    def complete(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        import torch

        self.completions += 1
        prompt = body["prompt"]
        ids = list(prompt) if isinstance(prompt, list) else self.tokenizer(prompt)["input_ids"]
        k = body.get("logprobs")
        if k is not None and k > self.options["max_logprobs"]:
            return 400, error(f"Requested sample logprobs of {k}, which is greater than max allowed: "
                              f"{self.options['max_logprobs']}")  # fmt: skip
        if len(ids) + 1 > self.options["max_model_len"]:
            return 400, error(f"This model's maximum context length is {self.options['max_model_len']} tokens. "
                              f"However, you requested {len(ids) + 1} tokens.")  # fmt: skip
        with self.lock, torch.no_grad():
            logprobs = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), dim=-1)
        generated = int(logprobs[-1].argmax())
        every = [*ids, generated]
        shown = range(len(every)) if body.get("echo") else range(len(ids), len(every))
        tokens, token_logprobs, top_logprobs = [], [], []
        for i in shown:
            tokens.append(self.token_name(every[i], body))
            if i == 0:
                token_logprobs.append(None)
                top_logprobs.append(None)
                continue
            dist = logprobs[i - 1]
            entry = {self.token_name(every[i], body): float(dist[every[i]])}  # the token itself first
            if k:
                values, top = dist.topk(k)
                for value, token in zip(values.tolist(), top.tolist(), strict=True):
                    entry.setdefault(self.token_name(token, body), value)
            token_logprobs.append(float(dist[every[i]]))
            top_logprobs.append(entry)
        text = self.tokenizer.decode(every if body.get("echo") else [generated])
        choice = {"index": 0, "text": text, "finish_reason": "length", "stop_reason": None,
                  "logprobs": {"text_offset": list(range(len(tokens))), "token_logprobs": token_logprobs,
                               "tokens": tokens, "top_logprobs": top_logprobs} if k is not None else None}  # fmt: skip
        usage = {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1}
        return 200, {"id": "cmpl-1", "object": "text_completion", "model": self.name, "choices": [choice],
                     "usage": usage}  # fmt: skip

    def token_name(self, token: int, body: dict[str, Any]) -> str:
        if body.get("return_tokens_as_token_ids") and not self.options["names_as_text"]:
            return f"token_id:{token}"
        return self.tokenizer.decode([token])


def error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}


def serve(state: State, port: int) -> None:
    class Handler(JSONHandler):
        def do_GET(self) -> None:
            if self.path == "/v1/models":
                self.send_json(200, {"object": "list", "data": [{"id": state.name, "object": "model"}]})
            elif self.path == "/stats":
                self.send_json(200, {"completions": state.completions})
            else:
                self.send_json(404, error("Not Found"))

        def do_POST(self) -> None:
            body = self.read_json()
            if body.get("model") not in (None, state.name) and self.path != "/configure":
                self.send_json(404, error(f"The model `{body['model']}` does not exist."))  # as vLLM answers
            elif self.path == "/tokenize":
                self.send_json(200, state.tokenize(body))
            elif self.path == "/v1/completions":
                self.send_json(*state.complete(body))
            elif self.path == "/configure":
                state.options.update(body)
                self.send_json(200, state.options)
            else:
                self.send_json(404, error("Not Found"))

    LoopbackServer(port, Handler).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a Hugging Face model folder")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="teacher")
    args = parser.parse_args()
    serve(State(args.model, args.served_model_name), args.port)


if __name__ == "__main__":
    main()
