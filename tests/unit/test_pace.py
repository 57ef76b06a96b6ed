"""A long loop in memory gives other tasks a turn once it has run a slice of time, then
lets a background writer wait for the batch in progress (lotline.runtime.pace)."""

from __future__ import annotations

import asyncio

from lotline.runtime.pace import Pace


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_other_tasks_run_once_a_loop_has_run_its_slice() -> None:
    clock = Clock()
    turns: list[int] = []
    done = asyncio.Event()
    taken = 0

    async def other() -> None:
        while not done.is_set():
            turns.append(taken)
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await asyncio.sleep(0)  # the other task's first turn, before the loop
    turns.clear()
    step_s = 1 / 1024  # about a millisecond, exact in binary
    pace = Pace(slice_s=4 * step_s, clock=clock)
    while taken < 100:
        taken += 1
        clock.now += step_s
        await pace.step()
    done.set()
    await task
    # A turn after every fourth step (the slice), and none in between.
    assert sorted(set(turns)) == list(range(4, 101, 4))


async def test_between_is_awaited_at_each_turn_and_the_slice_starts_after_it() -> None:
    clock = Clock()
    waits: list[float] = []

    async def between() -> None:
        waits.append(clock.now)
        clock.now += 1.0  # the writer waited a second for a batch

    pace = Pace(slice_s=0.002, between=between, clock=clock)
    clock.now = 0.001
    await pace.step()
    assert waits == []  # half the slice
    clock.now = 0.002
    await pace.step()
    assert waits == [0.002]
    clock.now += 0.001
    await pace.step()
    assert waits == [0.002]  # the wait for the batch is not the loop's time
    await pace.turn()
    assert waits == [0.002, 1.003]  # a turn when asked, spent or not
