"""Token prices (USD per million tokens) from a YAML table, and the cost of a usage record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from data_gen.client.types import Usage
from data_gen.errors import ConfigError


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None
    batch_discount: float = 0.5  # share of the price that batch files are billed at

    def batch(self) -> Price:
        """The price of requests sent as batch files."""
        cached = self.cached_input * self.batch_discount if self.cached_input is not None else None
        return Price(self.input * self.batch_discount, self.output * self.batch_discount, cached, 1.0)

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_prompt_tokens, usage.prompt_tokens)
        cached_rate = self.cached_input if self.cached_input is not None else self.input
        return (
            (usage.prompt_tokens - cached) * self.input + cached * cached_rate + usage.completion_tokens * self.output
        ) / 1e6


FREE = Price(0.0, 0.0, 0.0)


def load_price(path: str | Path, model: str | None, teacher: str) -> Price | None:
    """The price of ``model``; the rules teacher and a local model cost no money (their time is measured);
    an unknown model has no price (None)."""
    if teacher in ("rules", "local"):
        return FREE
    table_path = Path(path)
    if not table_path.is_file():
        raise ConfigError(f"price table not found: {table_path} (pass --prices FILE)")
    table = yaml.safe_load(table_path.read_text(encoding="utf-8")) or {}
    entry = table.get("models", {}).get(model or "")
    if entry is None:
        return None
    try:
        return Price(
            float(entry["input"]),
            float(entry["output"]),
            float(entry["cached_input"]) if entry.get("cached_input") is not None else None,
            float(entry.get("batch_discount", table.get("batch_discount", 0.5))),
        )
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{table_path}: model {model!r} needs numeric input and output prices") from None
