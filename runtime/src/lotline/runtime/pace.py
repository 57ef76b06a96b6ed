"""Long loops in memory that share the event loop with the batches of a consumer.

A materializer round walks thousands of documents, list items and fingerprints in Python.
On a busy core that is a few hundred milliseconds, and any batch that arrives meanwhile
waits the whole time (a 0.3-0.6 s tail at every round in the latency bench). So a loop
counts its steps and gives the event loop a turn every `PACE_STEPS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# Steps of a loop between turns: about 10-30 ms of a round's Python per turn.
PACE_STEPS = 1_000


class Pace:
    """Gives the event loop to other tasks every `every` steps of a long loop, then awaits
    `between` (if given): a background writer waiting for the batch in progress.

    A bare turn is not enough on a busy core: a batch needs a dozen turns (its reads, its
    insert, its publish, its offsets), and with one turn per 15 ms of a round's Python it
    took 300-500 ms, every round (`WriteAheadLog._give_way` lets the batch finish first).
    """

    def __init__(
        self, every: int = PACE_STEPS, between: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._every = every
        self._between = between
        self._steps = 0

    async def step(self, steps: int = 1) -> None:
        self._steps += steps
        if self._steps >= self._every:
            self._steps = 0
            await asyncio.sleep(0)
            if self._between is not None:
                await self._between()
