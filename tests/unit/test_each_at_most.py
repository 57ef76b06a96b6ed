"""Many lookups at once, a few in flight (lotline.runtime.mongo.each_at_most): every item
is called once, never more than the limit at a time, and the event loop is never held for
all of them at once (a batch waits behind no round's reads)."""

from __future__ import annotations

import asyncio

from lotline.runtime.mongo import each_at_most


async def test_every_item_once_and_never_more_than_the_limit_in_flight() -> None:
    in_flight = most = 0
    called: list[int] = []

    async def call(item: int) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0)
        called.append(item)
        in_flight -= 1

    await each_at_most(4, range(100), call)
    assert sorted(called) == list(range(100))
    assert most == 4


async def test_the_items_wait_in_an_iterator_not_as_tasks_on_the_loop() -> None:
    """A task per item behind a semaphore put all 10,000 on the loop before the first ran:
    93 ms in which nothing else (a batch) got a turn. The workers are the only tasks."""
    most_tasks = 0

    async def call(item: int) -> None:
        nonlocal most_tasks
        most_tasks = max(most_tasks, len(asyncio.all_tasks()))
        await asyncio.sleep(0)

    before = len(asyncio.all_tasks())
    await each_at_most(32, range(10_000), call)
    assert most_tasks - before <= 32


async def test_fewer_items_than_the_limit_and_none() -> None:
    called: list[str] = []

    async def call(item: str) -> None:
        called.append(item)

    await each_at_most(32, ["a", "b"], call)
    await each_at_most(32, [], call)
    assert called == ["a", "b"]
