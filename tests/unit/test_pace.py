"""A long loop in memory gives other tasks a turn every so many steps, then lets a
background writer wait for the batch in progress (lotline.runtime.pace)."""

from __future__ import annotations

import asyncio

from lotline.runtime.pace import Pace


async def test_other_tasks_run_between_steps_of_a_long_loop() -> None:
    turns: list[int] = []
    done = asyncio.Event()

    taken = 0

    async def other() -> None:
        while not done.is_set():
            turns.append(taken)
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    pace = Pace(every=100)
    while taken < 1000:
        taken += 1
        await pace.step()
    done.set()
    await task
    # A turn after each hundred steps, and none in between.
    assert sorted(set(turns)) == list(range(100, 1001, 100))


async def test_steps_count_by_weight_and_between_is_awaited_at_each_turn() -> None:
    waits: list[str] = []

    async def between() -> None:
        waits.append("waited")

    pace = Pace(every=1000, between=between)
    await pace.step(999)
    assert waits == []
    await pace.step(2)  # a page of items counts as its items
    assert waits == ["waited"]
    await pace.step(999)
    assert waits == ["waited"]  # counting starts again after a turn
