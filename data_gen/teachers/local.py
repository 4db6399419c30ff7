"""A Hugging Face model run in process with ``transformers`` (CPU or GPU): the teacher for same-family logit
distillation on your own hardware, and what makes that path testable with tiny local models.

``complete`` generates a reply exactly as a chat server would (the tokenizer's chat template, greedy at
temperature 0, else sampled with the request's seed). ``score`` runs the model once over a whole conversation and
returns, for every position of the last (assistant) turn, the top-k log-probabilities of the next token: what
Axolotl's KD trainer distils into the student (``data_gen.kd.rows``). Requests run one at a time in a worker thread, so
the event loop stays free.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_gen.client.types import ChatRequest, Completion, Usage
from data_gen.errors import ConfigError
from data_gen.provenance import fingerprint

MIN_LOGPROB = -50.0  # Axolotl turns a top-k log-probability below about -104 into -inf (a NaN loss): clamp


@dataclass
class Scored:
    """Top-k next-token log-probabilities for each position of the last turn (its content, end-of-turn token and
    what the template appends), and the token ids of the whole conversation."""

    input_ids: list[int]
    prompt_tokens: int  # positions before the last turn's first token
    logprobs: list[list[float]]  # one row per position from prompt_tokens to the end
    token_ids: list[list[int]]
    json: str | None = field(default=None, compare=False, repr=False)  # its JSON, made once (data_gen.kd.rows.dumps)


def clamp_rows(values: Any) -> list[list[float]]:
    """Log-probabilities (a 2-D array) as stored in KD rows: at least MIN_LOGPROB, rounded to 5 decimals by
    NumPy (which the same values always round alike; Python's ``round`` is 20 times slower per value)."""
    import numpy as np

    return np.round(np.maximum(np.asarray(values, dtype=np.float64), MIN_LOGPROB), 5).tolist()


def clamp(logprob: float) -> float:
    """One log-probability as ``clamp_rows`` stores it."""
    return clamp_rows([[logprob]])[0][0]


def conversation_ids(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], int]:
    """The token ids of a whole conversation as the student trains on it (its chat template), and how many of
    them come before the last turn's first token."""
    full = tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"]
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, return_dict=True)["input_ids"]
    if full[: len(prompt)] != prompt:
        raise ValueError("the chat template renders the prompt differently with and without the reply")
    return list(full), len(prompt)


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a tokenizer from {path}: {str(exc).splitlines()[0]}") from None


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of the vocabulary (token -> id) and the chat template: equal fingerprints tokenize alike."""
    vocab = sorted(tokenizer.get_vocab().items())
    digest = hashlib.sha256(repr(vocab).encode())
    digest.update((getattr(tokenizer, "chat_template", None) or "").encode())
    return digest.hexdigest()


class LocalTeacher:
    """``--teacher local --model PATH``: same interface as ChatClient."""

    kind = "local"
    cacheable = True  # generation costs time: store replies like any other teacher's
    reaskable = True

    def __init__(self, path: str, device: str | None = None) -> None:
        missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
        if missing:
            raise ConfigError(
                f"a local teacher needs {' and '.join(missing)} in this environment: sh scripts/setup_env.sh local"
            )
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"--teacher local: {path} is not a model folder (no config.json)")
        self.path = str(folder.resolve())
        self.device = device
        self.model = f"{folder.name}-{fingerprint(path)['sha256'][:12]}"  # its files, not its path, name it
        self.endpoint = f"local://{self.model}"
        self.tokenizer_id = self.model  # its files name its tokenizer too
        self._loaded: tuple[Any, Any] | None = None
        self._lock = asyncio.Lock()

    # ---- loading
    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            import torch
            from transformers import AutoModelForCausalLM

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
            model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(device).eval()
            self._loaded = (load_tokenizer(self.path), model)
        return self._loaded

    @property
    def tokenizer(self) -> Any:
        return self._load()[0]

    async def check(self) -> None:
        await asyncio.to_thread(self._load)

    async def close(self) -> None:
        self._loaded = None

    # ---- generation
    async def complete(self, request: ChatRequest, refresh: bool = False) -> Completion:
        async with self._lock:
            return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: ChatRequest) -> Completion:
        import torch

        tokenizer, model = self._load()
        started = time.perf_counter()
        prompt = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, return_dict=True)
        input_ids = torch.tensor([prompt["input_ids"]], device=model.device)
        params = request.params
        temperature = float(params.get("temperature") or 0.0)
        limit = request.max_tokens or 512
        options: dict[str, Any] = {"max_new_tokens": limit, "do_sample": temperature > 0}
        if temperature > 0:
            options["temperature"] = temperature
            if params.get("top_p") is not None:
                options["top_p"] = float(params["top_p"])
            torch.manual_seed(int(params.get("seed") or 0))
        eos = [t for t in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")) if t is not None]
        with torch.no_grad():
            output = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                eos_token_id=sorted(set(eos)) or None,
                pad_token_id=tokenizer.pad_token_id or (eos[0] if eos else 0),
                **options,
            )
        new = output[0, input_ids.shape[1] :].tolist()
        stopped = bool(new) and new[-1] in eos
        return Completion(
            text=tokenizer.decode(new, skip_special_tokens=True),
            finish_reason="stop" if stopped or len(new) < limit else "length",
            usage=Usage(prompt_tokens=input_ids.shape[1], completion_tokens=len(new)),
            model=self.model,
            latency_s=round(time.perf_counter() - started, 4),
        )

    # ---- scoring
    async def score(self, messages: list[dict[str, str]], top_k: int) -> Scored:
        async with self._lock:
            return await asyncio.to_thread(self._score, messages, top_k)

    def _score(self, messages: list[dict[str, str]], top_k: int) -> Scored:
        import torch

        tokenizer, model = self._load()
        full, prompt_tokens = conversation_ids(tokenizer, messages)
        with torch.no_grad():
            logits = model(torch.tensor([full], device=model.device)).logits[0, prompt_tokens:].float()
        values, ids = torch.log_softmax(logits, dim=-1).topk(top_k, dim=-1)  # row p: the token after position p
        return Scored(full, prompt_tokens, clamp_rows(values.cpu().numpy()), ids.tolist())
