"""A spending cap that is a contract: every attempt reserves its worst case before it is sent, so the cap is never
exceeded, retries and re-asks included. Spend is cumulative over the output directory's store, so a run stopped by
the cap resumes under a higher cap without paying twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from data_gen.chat import Usage
from data_gen.pricing import Price


class BudgetExhausted(RuntimeError):
    """The next request could exceed the cap; nothing was sent."""


@dataclass
class Reservation:
    tokens: int
    cost: float


class Budget:
    """Caps on total tokens and on dollars (either may be None); ``spent_*`` start from earlier runs."""

    def __init__(
        self,
        max_cost: float | None,
        max_tokens: int | None,
        price: Price | None,
        spent_cost: float = 0.0,
        spent_tokens: int = 0,
        record: Callable[[str, Usage | None, float], None] | None = None,
    ) -> None:
        self.max_cost = max_cost
        self.max_tokens = max_tokens
        self.price = price
        self.spent_cost = spent_cost
        self.spent_tokens = spent_tokens
        self.reserved_cost = 0.0
        self.reserved_tokens = 0
        self.calls = 0
        self.record = record
        self.stopped: str | None = None  # why the budget refused, once it has

    def reserve(self, prompt_tokens: int, completion_tokens: int) -> Reservation:
        """Hold the worst case of one attempt, or raise BudgetExhausted without sending anything."""
        tokens = prompt_tokens + completion_tokens
        cost = self.price.cost(Usage(prompt_tokens, completion_tokens)) if self.price else 0.0
        if self.max_tokens is not None and self.spent_tokens + self.reserved_tokens + tokens > self.max_tokens:
            self.stopped = (
                f"the next request could take up to {tokens:,} tokens and {self.spent_tokens:,} of --max-tokens "
                f"{self.max_tokens:,} are spent"
            )
            raise BudgetExhausted(self.stopped)
        if self.max_cost is not None and self.spent_cost + self.reserved_cost + cost > self.max_cost + 1e-12:
            self.stopped = (
                f"the next request could cost up to ${cost:.4f} and ${self.spent_cost:.4f} of --max-cost "
                f"${self.max_cost:.4f} is spent"
            )
            raise BudgetExhausted(self.stopped)
        self.reserved_tokens += tokens
        self.reserved_cost += cost
        return Reservation(tokens, cost)

    def settle(self, reservation: Reservation, usage: Usage | None, key: str = "") -> None:
        """Release the reservation and count what the attempt really used (nothing when it failed)."""
        self.reserved_tokens -= reservation.tokens
        self.reserved_cost -= reservation.cost
        cost = self.price.cost(usage) if (self.price and usage) else 0.0
        self.spent_tokens += usage.total_tokens if usage else 0
        self.spent_cost += cost
        self.calls += 1
        if self.record is not None:
            self.record(key, usage, cost)
