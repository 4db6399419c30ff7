"""How many tokens a text is when nobody says: for budget reservations before a request is sent, and for the
ledger when a server's answer reports no ``usage``.

With a tokenizer of the model (a ``tokenizer.json`` file, or a Hugging Face model or tokenizer folder holding one:
``--tokenizer``), the count is exact for the text (plus a few tokens per message for the chat template). Without
one, it is a conservative estimate: a token per 3 ASCII characters (English averages about 4) and a token per
non-ASCII character (Chinese, Japanese, Cyrillic and Arabic text average more than one character per token in the
tokenizers of current models), so that a budget is on the safe side for any script.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

ASCII_CHARS_PER_TOKEN = 3.0
TOKENS_PER_MESSAGE = 8  # role markers and separators a chat template adds around each message


def estimate(text: str) -> int:
    """Conservative token count of ``text`` without a tokenizer."""
    if not text:
        return 0
    ascii_chars = len(text) if text.isascii() else len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN) + (len(text) - ascii_chars)


class TokenCounter:
    """``count(text)``: exact with a tokenizer file, else ``estimate``; ``exact`` says which."""

    def __init__(self, tokenizer: str | None = None) -> None:
        self.source = tokenizer
        self._tokenizer = load(tokenizer) if tokenizer else None

    @property
    def exact(self) -> bool:
        return self._tokenizer is not None

    def count(self, text: str) -> int:
        if not text:
            return 0
        if self._tokenizer is None:
            return estimate(text)
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def messages(self, messages: list[dict[str, Any]]) -> int:
        """Tokens of a chat prompt: every message's content plus the template's markers."""
        return sum(self.count(str(m.get("content") or "")) + TOKENS_PER_MESSAGE for m in messages)


@lru_cache(maxsize=8)
def load(path: str) -> Any:
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` or a folder that holds one (no download, no transformers)."""
    from tokenizers import Tokenizer

    from data_gen.config import ConfigError

    file = Path(path)
    if file.is_dir():
        file = file / "tokenizer.json"
    if not file.is_file():
        raise ConfigError(f"--tokenizer {path}: no tokenizer.json there (give a tokenizer.json file or a model folder)")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust library raises plain exceptions for files it cannot read
        raise ConfigError(f"--tokenizer {path}: not a tokenizer file ({exc})".splitlines()[0]) from None
