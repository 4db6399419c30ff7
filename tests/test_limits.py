"""Flow control in isolation: rolling rate windows, AIMD concurrency, budget reservations, the governor."""

from __future__ import annotations

import asyncio
import time

import pytest

from data_gen.client.budget import ANSWERED, FAILED, UNANSWERED, Budget, BudgetExhausted, Reservation, Spent
from data_gen.client.limits import AdaptiveConcurrency, Governor, RateWindow
from data_gen.client.pricing import Price
from data_gen.client.types import Usage
from tests.fake_server import max_in_window


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


class Ledger:
    """The two calls Budget makes on cache.ResponseCache, kept in a list."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def reserve_call(self, key: str, usage: Usage, cost: float) -> int:
        self.rows.append({"key": key, "state": "reserved", "usage": usage, "cost": cost})
        return len(self.rows) - 1

    def settle_call(self, call: int, state: str, usage: Usage, cost: float, estimated: bool) -> None:
        self.rows[call].update(state=state, usage=usage, cost=cost, estimated=estimated)


def test_budget_reserves_the_worst_case_waits_for_settlement_and_counts_what_was_used() -> None:
    price = Price(input=1.0, output=2.0)  # USD per million tokens: a worst case of 1,000 + 1,000 is $0.003

    async def run() -> tuple[Budget, Ledger]:
        ledger = Ledger()
        budget = Budget(max_cost=0.01, price=price, ledger=ledger)

        async def send(key: str) -> Reservation:  # what the governor does for every attempt
            reservation = await budget.reserve(1000, 1000)
            budget.sending(reservation, key)
            return reservation

        first = await send("a")
        second = asyncio.ensure_future(send("b"))
        await asyncio.sleep(0.01)
        assert not second.done()  # nothing answered yet: a capped run sends one request at a time
        assert ledger.rows[0]["state"] == "reserved"  # on record before it is sent
        budget.settle(first, ANSWERED, Usage(900, 100))  # $0.0011
        b = await second
        c = await send("c")  # 0.0011 + 0.003 + 0.003 = $0.0071 fits
        fourth = asyncio.ensure_future(send("d"))  # + 0.003 would pass $0.01: it waits
        await asyncio.sleep(0.01)
        assert not fourth.done()
        budget.settle(b, FAILED)  # an error answer: nothing to pay
        d = await fourth
        budget.settle(c, UNANSWERED)  # sent, no answer: counted at its worst case
        budget.settle(d, ANSWERED, Usage(1000, 1000), estimated=True)
        with pytest.raises(BudgetExhausted, match=r"\$0\.0071 of --max-cost \$0\.0100 is spent, \$0\.0000 reserved"):
            await send("e")  # nothing in flight and its worst case does not fit: stop
        return budget, ledger

    budget, ledger = asyncio.run(run())
    assert [r["state"] for r in ledger.rows] == ["answered", "failed", "unanswered", "answered"]
    assert [r["cost"] for r in ledger.rows] == pytest.approx([0.0011, 0.0, 0.003, 0.003])
    assert ledger.rows[2]["estimated"] and ledger.rows[3]["estimated"] and not ledger.rows[0]["estimated"]
    assert budget.calls == 4 and budget.spent_cost == pytest.approx(0.0071) and budget.reserved_cost == 0
    assert budget.in_flight == 0


def test_a_later_run_starts_from_what_the_ledger_holds() -> None:
    async def run() -> None:
        budget = Budget(max_cost=0.01, price=Price(1.0, 2.0), spent=Spent(cost=0.008))
        with pytest.raises(BudgetExhausted):
            await budget.reserve(1000, 1000)  # $0.008 + $0.003 > $0.01

    asyncio.run(run())


def test_reservations_learn_when_the_server_counts_more_than_the_client() -> None:
    async def run() -> Budget:
        budget = Budget(max_tokens=100_000)
        first = await budget.reserve(1000, 500)
        budget.settle(first, ANSWERED, Usage(2000, 800))  # twice the prompt estimate, more than max_tokens
        return budget

    budget = asyncio.run(run())
    assert budget.prompt_ratio == pytest.approx(2.2) and budget.completion_ratio == pytest.approx(1.76)
    assert budget.worst_case(1000, 500) == Usage(2200, 880)  # the next one reserves what such an answer takes


def test_token_budget() -> None:
    async def run() -> None:
        budget = Budget(max_tokens=5000, spent=Spent(tokens=1000))
        first = await budget.reserve(1000, 2000)
        budget.settle(first, ANSWERED, Usage(1000, 2000))
        with pytest.raises(BudgetExhausted, match="--max-tokens 5,000"):
            await budget.reserve(1000, 1000)

    asyncio.run(run())


def test_an_uncapped_budget_never_waits_and_still_records_every_call() -> None:
    async def run() -> Ledger:
        ledger = Ledger()
        budget = Budget(ledger=ledger)
        held = [await budget.reserve(10_000, 10_000) for _ in range(50)]  # no cap: no waiting, no caution
        for reservation in held:
            budget.sending(reservation)
            budget.settle(reservation, ANSWERED, Usage(10, 10))
        return ledger

    assert [r["state"] for r in asyncio.run(run()).rows] == ["answered"] * 50


def test_governor_releases_everything_when_an_attempt_fails() -> None:
    class Overloaded(Exception):
        status_code = 503

    async def run() -> tuple[Governor, Budget]:
        budget = Budget(max_tokens=10_000)
        governor = Governor(AdaptiveConcurrency(2, min_window=2), rpm=100, tpm=50_000, budget=budget)
        with pytest.raises(Overloaded):
            async with governor.slot(1000, 500, "k") as slot:
                slot.failed()  # an error answer (the client marks HTTP errors so): nothing billed
                raise Overloaded
        async with governor.slot(1000, 500, "k") as slot:
            slot.done(Usage(900, 100), 0.05)
        with pytest.raises(TimeoutError):
            async with governor.slot(1000, 500, "k"):
                raise TimeoutError  # sent, never answered: it may be billed, so its worst case counts
        return governor, budget

    governor, budget = asyncio.run(run())
    assert governor.concurrency.in_flight == 0 and governor.concurrency.decreases == 1  # the 503 counted
    assert budget.reserved_tokens == 0 and budget.spent_tokens == 1000 + 1500 and budget.calls == 3
    assert governor.tpm is not None and governor.tpm._used == 1000  # estimates replaced by the usage (or 0)
