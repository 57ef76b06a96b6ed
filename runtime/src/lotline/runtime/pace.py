"""Long loops in memory that share the event loop with the batches of a consumer.

A materializer round walks thousands of documents, list items and fingerprints in Python.
On a busy core that is a few hundred milliseconds, and any batch that arrives meanwhile
waits the whole time (a 0.3-0.6 s tail at every round in the latency bench). So a loop
gives the event loop a turn once it has run for `PACE_SLICE_S` since its last one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# Longest a loop runs between two turns. A batch takes a dozen turns before its unit of
# work starts (its fetch, its decoding, its checks), and each may wait one slice: with a
# turn every 1,000 steps (10-30 ms of a round's Python) the batches of a round's first
# second took 300-400 ms at p99.
PACE_SLICE_S = 0.002


class Pace:
    """Gives the event loop to other tasks once a long loop has run `slice_s`, then awaits
    `between` (if given): a background writer waiting for the batch in progress.

    A bare turn is not enough on a busy core: a batch needs a dozen turns (its reads, its
    insert, its publish, its offsets), and with one turn per 15 ms of a round's Python it
    took 300-500 ms, every round (`WriteAheadLog._give_way` lets the batch finish first).
    """

    def __init__(
        self,
        slice_s: float = PACE_SLICE_S,
        between: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._slice_s = slice_s
        self._between = between
        self._clock = clock
        self._since = clock()

    async def step(self) -> None:
        """One step of the loop: a turn if the slice is spent."""
        if self._clock() - self._since >= self._slice_s:
            await self.turn()

    async def turn(self) -> None:
        """A turn now (before a step that may itself be long)."""
        await asyncio.sleep(0)
        if self._between is not None:
            await self._between()
        self._since = self._clock()
