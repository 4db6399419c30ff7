"""Flow control for teacher requests: rolling-window rate limits, adaptive concurrency, and the governor that
every HTTP attempt passes through (concurrency slot, requests/minute, tokens/minute, budget).

A rolling window is exact: at most ``limit`` units in ANY ``period`` (a leaky bucket can admit twice its rate in
a window that starts with a full bucket). Adaptive concurrency is AIMD: one more request in flight after each
window of completions, half as many after a window with many 429 / 5xx / timeouts or with latency far above its
baseline.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from data_gen.client.budget import ANSWERED, FAILED, UNANSWERED, Budget, Reservation
from data_gen.client.types import Usage


@dataclass
class _Entry:
    at: float
    amount: float


class RateWindow:
    """At most ``limit`` units (requests or tokens) in any rolling ``period`` seconds.

    The window enforced is ``margin`` seconds longer than ``period``, so that the few milliseconds between taking
    a unit here and the request reaching the server cannot put two units into the server's window that are just
    outside ours. With ``pace``, units are also spread evenly (one every period / limit seconds) instead of
    being sent in one burst at the start of every window.
    """

    def __init__(
        self,
        limit: float,
        period: float = 60.0,
        margin: float = 1.0,
        pace: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit <= 0:
            raise ValueError("a rate limit must be positive")
        self.limit = float(limit)
        self.period = period + margin
        self.interval = period / self.limit if pace else 0.0
        self.clock = clock
        self._entries: deque[_Entry] = deque()
        self._used = 0.0
        self._next = float("-inf")  # the earliest time the next unit may go, when pacing
        self._lock = asyncio.Lock()

    def _expire(self, now: float) -> None:
        while self._entries and self._entries[0].at <= now - self.period:
            self._used -= self._entries.popleft().amount

    async def acquire(self, amount: float = 1.0) -> _Entry:
        """Wait until ``amount`` fits in the window, then take it. An amount larger than the whole limit is
        clamped to the limit (it could never fit) and so waits for an empty window."""
        amount = min(float(amount), self.limit)
        async with self._lock:  # FIFO: waiters are served in order
            while True:
                now = self.clock()
                self._expire(now)
                if now < self._next:
                    await asyncio.sleep(self._next - now)
                    continue
                if self._used + amount <= self.limit + 1e-9:
                    entry = _Entry(now, amount)
                    self._entries.append(entry)
                    self._used += amount
                    self._next = now + amount * self.interval
                    return entry
                # the earliest moment enough old entries leave the window
                freed, wait_until = 0.0, now
                for old in self._entries:
                    freed += old.amount
                    wait_until = old.at + self.period
                    if self._used - freed + amount <= self.limit + 1e-9:
                        break
                await asyncio.sleep(max(0.001, wait_until - now))

    def adjust(self, entry: _Entry, actual: float) -> None:
        """Replace an estimate with what was really used (tokens the server reported)."""
        if entry in self._entries:
            self._used += actual - entry.amount
        entry.amount = actual


class AdaptiveConcurrency:
    """How many requests may be in flight: additive increase, multiplicative decrease (AIMD), decided once per
    window of completions (one round of the requests in flight, at least ``min_window``).

    A window in which at least ``congested_share`` of the completions were 429 / 5xx / timeouts, or in which
    latency had climbed ``latency_factor`` times above its baseline, halves the limit; any other window adds one.
    Deciding per window, on a share, is what makes it robust: a provider that now and then answers 429 (retried
    after its ``Retry-After``) does not drag the limit down, one that rejects a fifth of what we send does.
    """

    def __init__(
        self,
        maximum: int,
        adaptive: bool = True,
        minimum: int = 1,
        latency_factor: float = 4.0,
        congested_share: float = 0.2,
        min_window: int = 8,
    ) -> None:
        self.maximum = maximum
        self.minimum = min(minimum, maximum)
        self.adaptive = adaptive
        self.latency_factor = latency_factor
        self.congested_share = congested_share
        self.min_window = min_window
        self.limit = float(maximum)
        self.in_flight = 0
        self.decreases = 0
        self._waiters: deque[asyncio.Future[None]] = deque()  # FIFO; one is woken per free slot
        self._latency: float | None = None  # EWMA of latency per unit of work
        self._baseline: float | None = None
        self._samples = 0
        self._window = [0, 0]  # completions, congested completions

    def _free(self) -> int:
        return max(self.minimum, int(self.limit)) - self.in_flight

    async def acquire(self) -> None:
        if self._free() > 0 and not self._waiters:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the slot is taken for us by _wake
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # woken and cancelled at once: give the slot on
                self._wake()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _wake(self) -> None:
        while self._waiters and self._free() > 0:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def _slow(self, latency: float) -> bool:
        """Feed a success's latency; True when the average has climbed far above the baseline."""
        self._samples += 1
        # a slow average: one slow answer is noise, a queue building up in the server is not
        self._latency = latency if self._latency is None else 0.95 * self._latency + 0.05 * latency
        if self._samples < 20:
            return False
        self._baseline = self._latency if self._baseline is None else min(self._baseline, self._latency)
        return self._latency > self.latency_factor * self._baseline

    def _observe(self, congested: bool, latency: float | None) -> None:
        if latency is not None and not congested:
            congested = self._slow(latency)
        self._window[0] += 1
        self._window[1] += congested
        completions, bad = self._window
        if completions < max(self.min_window, int(self.limit)):
            return
        if bad >= self.congested_share * completions:
            self.limit = max(float(self.minimum), self.limit / 2)
            self.decreases += 1
        else:
            self.limit = min(float(self.maximum), self.limit + 1)
        self._window = [0, 0]

    async def release(self, congested: bool, latency: float | None = None) -> None:
        """``congested``: a 429, a 5xx or a timeout. ``latency``: seconds per unit of work of a success."""
        if self.adaptive:
            self._observe(congested, latency)
        self.in_flight -= 1
        self._wake()


@dataclass
class Slot:
    """One HTTP attempt's permission; ``done`` records how it went, ``failed`` an error answer or no connection."""

    prompt_estimate: int
    completion_limit: int
    usage: Usage | None = None
    estimated: bool = False  # the usage is the client's count: the server reported none
    state: str = UNANSWERED
    sent: bool = False
    congested: bool = False
    latency: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def done(self, usage: Usage, latency: float, estimated: bool = False) -> None:
        self.usage, self.estimated, self.state = usage, estimated, ANSWERED
        work = usage.completion_tokens + 1
        self.latency = latency / work if usage.completion_tokens else latency

    def failed(self) -> None:
        """The server answered with an error, or the connection was never made: nothing to pay."""
        self.state = FAILED


class Governor:
    """Every attempt passes here: the budget first (its worst case recorded in the ledger before it is sent; under
    a cap it waits or stops rather than send what it cannot afford), then a concurrency slot, then the
    requests/minute and tokens/minute windows."""

    def __init__(
        self,
        concurrency: AdaptiveConcurrency,
        rpm: float | None = None,
        tpm: float | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.rpm = RateWindow(rpm, pace=True) if rpm else None  # requests spread evenly over the minute
        self.tpm = RateWindow(tpm) if tpm else None  # token estimates are too rough to pace by
        self.budget = budget

    @asynccontextmanager
    async def slot(self, prompt_estimate: int, completion_limit: int, key: str = "") -> AsyncIterator[Slot]:
        reservation: Reservation | None = None
        if self.budget is not None:
            reservation = await self.budget.reserve(prompt_estimate, completion_limit)  # or BudgetExhausted
        slot = Slot(prompt_estimate, completion_limit)
        token_entry = None
        try:
            await self.concurrency.acquire()
            try:
                if self.rpm is not None:
                    await self.rpm.acquire(1)
                if self.tpm is not None:
                    token_entry = await self.tpm.acquire(prompt_estimate + completion_limit)
                if reservation is not None and self.budget is not None:
                    self.budget.sending(reservation, key)  # on record before it leaves
                slot.sent = True  # from here on the request may reach the server
                yield slot
            except BaseException as exc:
                slot.congested = _congested(exc)
                raise
            finally:
                await self.concurrency.release(slot.congested, slot.latency)
        finally:
            if token_entry is not None and self.tpm is not None:
                self.tpm.adjust(token_entry, slot.usage.total_tokens if slot.usage else 0)
            if reservation is not None and self.budget is not None:
                if slot.sent:
                    self.budget.settle(reservation, slot.state, slot.usage, slot.estimated)
                else:
                    self.budget.release(reservation)


def _congested(exc: BaseException) -> bool:
    """429, 5xx, timeouts and dropped connections say the server is overloaded."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        return status == 429 or status >= 500
    name = type(exc).__name__
    return name in ("APITimeoutError", "APIConnectionError", "TimeoutError", "BadResponseError")


async def run_bounded(
    items: Iterable[Any], worker: Callable[[Any], Awaitable[Any]], limit: int, on_done: Callable[[Any], None]
) -> None:
    """Run ``worker`` over ``items`` with at most ``limit`` in flight; memory stays bounded by ``limit``."""
    iterator = iter(items)
    pending: set[asyncio.Task[Any]] = set()

    def fill() -> None:
        while len(pending) < limit:
            item = next(iterator, None)
            if item is None:
                return
            pending.add(asyncio.ensure_future(worker(item)))

    fill()
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                pending.discard(finished)
                on_done(finished.result())
            fill()
    finally:
        for task in pending:
            task.cancel()
