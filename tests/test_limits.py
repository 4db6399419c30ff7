"""Flow control in isolation: rolling rate windows, AIMD concurrency, budget reservations, the governor."""

from __future__ import annotations

import asyncio
import time

import pytest

from data_gen.budget import Budget, BudgetExhausted
from data_gen.chat import Usage
from data_gen.fake_server import max_in_window
from data_gen.limits import AdaptiveConcurrency, Governor, RateWindow
from data_gen.pricing import Price


@pytest.mark.parametrize("pace", [False, True])
def test_rate_window_never_exceeds_its_limit_in_any_rolling_window(pace: bool) -> None:
    async def run() -> list[float]:
        window = RateWindow(limit=5, period=0.5, margin=0.0, pace=pace)
        times: list[float] = []

        async def one() -> None:
            await window.acquire(1)
            times.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(17)))
        return times

    start = time.monotonic()
    times = asyncio.run(run())
    assert max_in_window(times, 0.5) <= 5  # the guarantee
    assert time.monotonic() - start >= 1.5  # 17 requests at 5 per 0.5 s need at least three more windows
    assert max_in_window(times, 0.5) >= 4  # and it is used fully, not timidly
    gaps = [b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False)]
    assert (min(gaps) >= 0.09) == pace  # paced: one every 0.1 s; unpaced: bursts


def test_the_margin_keeps_jittered_arrivals_inside_the_limit() -> None:
    async def run() -> list[float]:
        window = RateWindow(limit=4, period=0.4, margin=0.1)
        arrivals = []
        for i in range(12):
            await window.acquire(1)
            arrivals.append(time.monotonic() + (0.05 if i % 4 == 0 else 0.0))  # some arrive 50 ms late
        return arrivals

    assert max_in_window(asyncio.run(run()), 0.4) <= 4


def test_rate_window_counts_amounts_and_corrections() -> None:
    async def run() -> float:
        window = RateWindow(limit=1000, period=0.4, margin=0.0)
        first = await window.acquire(900)  # an estimate ...
        window.adjust(first, 100)  # ... corrected by the usage the server reported
        start = time.monotonic()
        await window.acquire(800)  # fits now, without waiting
        await window.acquire(5000)  # larger than the whole limit: clamped, waits for an empty window
        return time.monotonic() - start

    waited = asyncio.run(run())
    assert 0.3 <= waited < 1.5


async def complete(limit: AdaptiveConcurrency, n: int, congested: bool = False, latency: float = 0.1) -> None:
    for _ in range(n):
        await limit.acquire()
        await limit.release(congested=congested, latency=None if congested else latency)


def test_adaptive_concurrency_halves_on_a_congested_window_and_creeps_back() -> None:
    async def run() -> list[float]:
        limit = AdaptiveConcurrency(maximum=16)
        seen = []
        await complete(limit, 16, congested=True)  # a window of 16 completions, all 429 / 5xx
        seen.append(limit.limit)
        await complete(limit, 8, congested=True)  # the next window is 8 completions long
        seen.append(limit.limit)
        await complete(limit, 8 + 9 + 10)  # three good windows: +1 each
        seen.append(limit.limit)
        return seen

    assert asyncio.run(run()) == [8, 4, 7]


def test_sporadic_429s_do_not_drag_the_limit_down_but_many_do() -> None:
    import random

    async def run(share: float) -> AdaptiveConcurrency:
        rng = random.Random(7)
        limit = AdaptiveConcurrency(maximum=64)
        for _ in range(3000):
            await limit.acquire()
            bad = rng.random() < share
            await limit.release(congested=bad, latency=None if bad else 0.1)
        return limit

    assert asyncio.run(run(0.05)).limit >= 60  # one in twenty: retried after Retry-After, no reason to back off
    overloaded = asyncio.run(run(0.5))  # half of everything refused: the server is overloaded
    assert overloaded.limit <= 4 and overloaded.decreases >= 4


def test_adaptive_concurrency_backs_off_when_latency_climbs() -> None:
    async def run() -> AdaptiveConcurrency:
        limit = AdaptiveConcurrency(maximum=32)
        await complete(limit, 40, latency=0.1)
        await complete(limit, 40, latency=0.3)  # a little slower (3x): noise, or a busy client; no back-off
        assert limit.decreases == 0
        await complete(limit, 120, latency=1.0)  # the server queues requests: ten times slower
        return limit

    limit = asyncio.run(run())
    assert limit.decreases >= 1 and limit.limit < 32


def test_fixed_concurrency_never_moves() -> None:
    async def run() -> float:
        limit = AdaptiveConcurrency(maximum=4, adaptive=False)
        await limit.acquire()
        await limit.release(congested=True)
        return limit.limit

    assert asyncio.run(run()) == 4


def test_in_flight_requests_never_exceed_the_limit() -> None:
    async def run() -> int:
        limit = AdaptiveConcurrency(maximum=3, adaptive=False)
        peak = current = 0

        async def one() -> None:
            nonlocal peak, current
            await limit.acquire()
            current += 1
            peak = max(peak, current)
            await asyncio.sleep(0.01)
            current -= 1
            await limit.release(congested=False)

        await asyncio.gather(*(one() for _ in range(20)))
        return peak

    assert asyncio.run(run()) == 3


def test_waiters_get_slots_in_order_and_a_cancelled_waiter_loses_no_slot() -> None:
    async def run() -> tuple[list[int], int]:
        limit = AdaptiveConcurrency(maximum=2, adaptive=False)
        order: list[int] = []

        async def one(i: int) -> None:
            await limit.acquire()
            order.append(i)
            await asyncio.sleep(0.01)
            await limit.release(congested=False)

        await limit.acquire()
        await limit.acquire()  # both slots taken: everything below waits
        doomed = asyncio.ensure_future(limit.acquire())
        tasks = [asyncio.ensure_future(one(i)) for i in range(6)]
        await asyncio.sleep(0.01)
        doomed.cancel()  # a row cancelled while waiting must not keep a slot
        await limit.release(congested=False)
        await limit.release(congested=False)
        await asyncio.gather(*tasks)
        return order, limit.in_flight

    order, in_flight = asyncio.run(run())
    assert order == list(range(6)) and in_flight == 0


def test_budget_reserves_the_worst_case_and_counts_what_was_used() -> None:
    price = Price(input=1.0, output=2.0)  # USD per million tokens
    recorded = []
    budget = Budget(max_cost=0.01, max_tokens=None, price=price, record=lambda k, u, c: recorded.append((k, c)))
    first = budget.reserve(1000, 1000)  # worst case $0.003
    second = budget.reserve(1000, 1000)
    third = budget.reserve(1000, 1000)
    with pytest.raises(BudgetExhausted, match="--max-cost"):
        budget.reserve(1000, 1000)  # $0.012 reserved in all would pass $0.01
    budget.settle(first, Usage(1000, 100), "a")
    budget.settle(second, None, "b")  # a failed attempt: counted as a call, costs nothing
    budget.settle(third, Usage(1000, 1000), "c")
    assert budget.calls == 3 and [k for k, _ in recorded] == ["a", "b", "c"]
    assert budget.spent_cost == pytest.approx((1000 + 200 + 1000 + 2000) / 1e6)
    assert budget.reserved_cost == pytest.approx(0.0)
    resumed = Budget(max_cost=0.01, max_tokens=None, price=price, spent_cost=budget.spent_cost)
    resumed.reserve(1000, 1000)  # a later run starts from what was spent
    with pytest.raises(BudgetExhausted):
        resumed.reserve(1000, 1000)


def test_token_budget() -> None:
    budget = Budget(max_cost=None, max_tokens=5000, price=None, spent_tokens=1000)
    budget.reserve(1000, 2000)
    with pytest.raises(BudgetExhausted, match="--max-tokens 5,000"):
        budget.reserve(1000, 1000)


def test_governor_releases_everything_when_an_attempt_fails() -> None:
    class Overloaded(Exception):
        status_code = 503

    async def run() -> tuple[Governor, Budget]:
        budget = Budget(max_cost=None, max_tokens=10_000, price=None)
        governor = Governor(AdaptiveConcurrency(2, min_window=2), rpm=100, tpm=50_000, budget=budget)
        with pytest.raises(Overloaded):
            async with governor.slot(1000, 500, "k"):
                raise Overloaded
        async with governor.slot(1000, 500, "k") as slot:
            slot.done(Usage(900, 100), 0.05)
        return governor, budget

    governor, budget = asyncio.run(run())
    assert governor.concurrency.in_flight == 0 and governor.concurrency.decreases == 1  # the 503 counted
    assert budget.reserved_tokens == 0 and budget.spent_tokens == 1000 and budget.calls == 2
    assert governor.tpm is not None and governor.tpm._used == 1000  # the estimate was replaced by the usage
