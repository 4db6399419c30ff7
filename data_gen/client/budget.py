"""The accountant of every request: each attempt is written to the ledger before it is sent and settled with what
the server reported when it comes back, capped or not; under ``--max-cost`` / ``--max-tokens`` it is also the cap.

Before an attempt is sent its worst case is reserved, durably: the prompt (the client's count, scaled up by the
largest ratio of reported to counted tokens seen so far) plus its completion limit (scaled up likewise when a
server reports more completion tokens than the limit allowed). A reservation that does not fit under the cap
waits for the requests in flight to settle (near the cap fewer requests are in flight); only when nothing is in
flight and the next attempt still does not fit does the run stop. Until the first answer of a run has shown how
the server counts, a capped run sends one request at a time.

What the ledger counts: the tokens a server reported; where it reported none, the client's own count, flagged
estimated; an attempt that was sent and got no answer (a timeout, a dropped connection, a kill or Ctrl-C while it
was in flight) at its reservation, since the provider may bill it; nothing for an error answer (HTTP 4xx/5xx) or
a connection that was never made.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Protocol

from data_gen.client.pricing import Price
from data_gen.client.types import Usage

log = logging.getLogger("data_gen")
MARGIN = 1.1  # on top of the largest ratio seen: the next answer may be a little larger still

# ledger states of one attempt
RESERVED = "reserved"  # sent (or about to be); left so by a run that was killed: counted at its reservation
ANSWERED = "answered"
FAILED = "failed"  # an error answer, or no connection: not billed
UNANSWERED = "unanswered"  # sent, no answer: counted at its reservation


class BudgetExhausted(RuntimeError):
    """The next request could exceed the cap and nothing is in flight; nothing was sent."""


class Ledger(Protocol):
    def reserve_call(self, key: str, usage: Usage, cost: float) -> int: ...

    def settle_call(self, call: int, state: str, usage: Usage, cost: float, estimated: bool) -> None: ...


@dataclass
class Reservation:
    usage: Usage  # the worst case held
    cost: float
    estimate: int  # the client's count of the prompt, to learn the server's ratio from
    limit: int  # the completion limit sent
    call: int | None = None  # the ledger row


@dataclass
class Spent:
    """What the ledger holds: dollars and tokens, and how many calls were counted by the client, not the server."""

    cost: float = 0.0
    tokens: int = 0
    calls: int = 0
    estimated: int = 0
    lost: int = 0  # reservations of runs that stopped while the request was in flight


class Budget:
    """Caps on total tokens and dollars (either may be None) over ``spent`` (earlier runs into the same output
    directory included); every attempt is recorded in ``ledger`` whether or not a cap is set."""

    def __init__(
        self,
        max_cost: float | None = None,
        max_tokens: int | None = None,
        price: Price | None = None,
        ledger: Ledger | None = None,
        spent: Spent | None = None,
        name: str = "the server",
        counting: str = "a conservative estimate; --tokenizer makes it exact",
    ) -> None:
        self.max_cost = max_cost
        self.max_tokens = max_tokens
        self.price = price
        self.ledger = ledger
        self.before = spent or Spent()  # what earlier runs left in the ledger
        self.spent_cost = self.before.cost
        self.spent_tokens = self.before.tokens
        self.reserved_cost = 0.0
        self.reserved_tokens = 0
        self.in_flight = 0
        self.calls = 0
        self.estimated_calls = 0
        self.prompt_ratio = 1.0  # reported / counted prompt tokens, at most, so far (with a margin)
        self.completion_ratio = 1.0  # reported completion tokens / the limit sent, at most (with a margin)
        self.observed = 0
        self.name = name
        self.counting = counting
        self.stopped: str | None = None  # why the budget refused, once it has
        self._changed = asyncio.Event()

    @property
    def capped(self) -> bool:
        return self.max_cost is not None or self.max_tokens is not None

    def _cost(self, usage: Usage) -> float:
        return self.price.cost(usage) if self.price else 0.0

    def worst_case(self, prompt_estimate: int, completion_limit: int) -> Usage:
        """What one attempt may take, given what this run's answers have shown."""

        def up(value: float) -> int:
            return math.ceil(round(value, 6))  # 500 x 1.76 is 880, not 881

        return Usage(up(prompt_estimate * self.prompt_ratio), up(completion_limit * self.completion_ratio))

    def _fits(self, usage: Usage, cost: float) -> bool:
        if self.max_tokens is not None and self.spent_tokens + self.reserved_tokens + usage.total_tokens > (
            self.max_tokens
        ):
            return False
        return self.max_cost is None or self.spent_cost + self.reserved_cost + cost <= self.max_cost + 1e-12

    async def reserve(self, prompt_estimate: int, completion_limit: int) -> Reservation:
        """Hold one attempt's worst case before it is sent. Under a cap, wait while it does not fit and requests
        are in flight; raise BudgetExhausted, sending nothing, when none are."""
        while True:
            usage = self.worst_case(prompt_estimate, completion_limit)
            cost = self._cost(usage)
            cautious = self.capped and self.observed == 0 and self.in_flight > 0
            if not self.capped or (self._fits(usage, cost) and not cautious):
                break
            if self.in_flight == 0:
                self.stopped = self._refusal(usage, cost)
                raise BudgetExhausted(self.stopped)
            await self._changed.wait()  # a request in flight settles: look again
        self.reserved_tokens += usage.total_tokens
        self.reserved_cost += cost
        self.in_flight += 1
        return Reservation(usage, cost, prompt_estimate, completion_limit)

    def sending(self, reservation: Reservation, key: str = "") -> None:
        """The attempt goes out now: its reservation is written to the ledger first (committed), so that a run
        killed while it is in flight still counts it."""
        if self.ledger is not None:
            reservation.call = self.ledger.reserve_call(key, reservation.usage, reservation.cost)

    def release(self, reservation: Reservation) -> None:
        """An attempt that was never sent (cancelled while it waited for a slot): it costs nothing, it is no call."""
        self._return(reservation, Usage(), 0.0)

    def settle(self, reservation: Reservation, state: str, usage: Usage | None = None, estimated: bool = False) -> None:
        """Replace the reservation by what the attempt cost: ``usage`` for an answer (``estimated`` when the client
        counted it), nothing for a failure, the reservation itself for an attempt that got no answer."""
        if state == ANSWERED and usage is not None:
            self.observed += 1
            if not estimated:  # the client's own count teaches nothing about how the server counts
                self._learn(reservation, usage)
            counted, cost, flagged = usage, self._cost(usage), estimated
            if estimated and self.estimated_calls == 0:
                log.warning(
                    "%s reports no token usage: tokens and cost are counted by the client (%s) and flagged "
                    "estimated in the ledger",
                    self.name,
                    self.counting,
                )
            self.estimated_calls += estimated
        elif state == FAILED:
            counted, cost, flagged = Usage(), 0.0, False
        else:  # sent and never answered: the provider may have billed it
            state, counted, cost, flagged = UNANSWERED, reservation.usage, reservation.cost, True
        self.calls += 1
        if self.ledger is not None and reservation.call is not None:
            self.ledger.settle_call(reservation.call, state, counted, cost, flagged)
        self._return(reservation, counted, cost)

    def _return(self, reservation: Reservation, counted: Usage, cost: float) -> None:
        self.reserved_tokens -= reservation.usage.total_tokens
        self.reserved_cost -= reservation.cost
        self.in_flight -= 1
        self.spent_tokens += counted.total_tokens
        self.spent_cost += cost
        self._changed.set()  # wake every waiting reservation, then start a new round
        self._changed = asyncio.Event()

    def _learn(self, reservation: Reservation, usage: Usage) -> None:
        """Scale later reservations so that an answer like this one would have fitted in its own."""
        if reservation.estimate > 0:
            self.prompt_ratio = max(self.prompt_ratio, MARGIN * usage.prompt_tokens / reservation.estimate)
        if reservation.limit > 0 and usage.completion_tokens > reservation.limit:
            self.completion_ratio = max(self.completion_ratio, MARGIN * usage.completion_tokens / reservation.limit)

    def _refusal(self, usage: Usage, cost: float) -> str:
        """Why the next attempt is not sent: what it could take, what is spent and what is reserved."""
        lost = ""
        if self.before.lost:
            lost = f"; {self.before.lost} requests in flight when an earlier run stopped count at their worst case"
        if self.max_cost is not None and not self.spent_cost + self.reserved_cost + cost <= self.max_cost + 1e-12:
            return (
                f"the next request could cost up to ${cost:.4f} ({usage.prompt_tokens:,} prompt + "
                f"{usage.completion_tokens:,} completion tokens, its worst case) and ${self.spent_cost:.4f} of "
                f"--max-cost ${self.max_cost:.4f} is spent, ${self.reserved_cost:.4f} reserved by requests in "
                f"flight{lost}"
            )
        return (
            f"the next request could take up to {usage.total_tokens:,} tokens (its worst case) and "
            f"{self.spent_tokens:,} of --max-tokens {self.max_tokens:,} are spent, {self.reserved_tokens:,} reserved "
            f"by requests in flight{lost}"
        )
