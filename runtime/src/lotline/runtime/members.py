"""Which names a key may hold, answered without a lookup per name: a receipt of 100,000
serials learns which of them are registered already by reading its SKU's fingerprints, then
looks up only the few that match.

Each key (a SKU) has a list of 32-bit fingerprints of the names it holds (a serial), kept
in insert-only pages (`lotline.runtime.pages`) and appended to through the write-ahead log
with the documents they stand for: one item per batch and key, the batch's fingerprints as
one value. So the list never lags the documents, a replay appends nothing twice that
matters (a fingerprint listed twice is still one), and the cost is one page insert per key
and materializer round, never an update.

A fingerprint stands for many names (2^32 values), so an answer is a superset: `maybe`
returns every name the key holds, and a few it does not (about one in 430 for a key of ten
million names). The caller looks those up by _id and settles them; a name not returned is
certainly not held. That holds as long as every document of a key is added here in the
batch that creates it: a log written before this index existed is indexed once by
`backfill`.

The owner keeps each key's fingerprints it read (or added) in memory, as a few sorted runs
(merged like a binary counter, so adding n fingerprints costs O(n log n) in all and a
lookup a few bisections), in a cache dropped on rebalance or a failed batch
(`lotline.runtime.owned`), least recently used out first beyond `max_held` fingerprints
(four bytes each).
"""

from __future__ import annotations

import zlib
from array import array
from bisect import bisect_left
from collections.abc import AsyncIterable, Iterable, MutableMapping

from lotline.runtime.pages import PagedLists
from lotline.runtime.wal import WriteAheadLog

# Fingerprints held in memory, in all keys (four bytes each).
MAX_HELD = 20_000_000
_TYPECODE = "I"  # unsigned 32-bit on every platform CPython supports
assert array(_TYPECODE).itemsize == 4


def fingerprint(name: str) -> int:
    """CRC-32 of the name: a sixth of a microsecond (a receipt computes 100,000). Its
    matches are as rare as a random 32-bit hash's for names like serials, and none at all
    between names that differ within four consecutive bytes (sequential serials); a
    crafted match costs a lookup, never a wrong answer."""
    return zlib.crc32(name.encode())


def _packed(fingerprints: Iterable[int]) -> bytes:
    return array(_TYPECODE, sorted(set(fingerprints))).tobytes()


class _Runs:
    """One key's fingerprints as sorted runs, each at least twice the next one's size."""

    def __init__(self) -> None:
        self.runs: list[array[int]] = []
        self.size = 0

    def add(self, run: array[int]) -> None:
        self.runs.append(run)
        self.size += len(run)
        while len(self.runs) > 1 and len(self.runs[-1]) * 2 >= len(self.runs[-2]):
            last, before = self.runs.pop(), self.runs.pop()
            # Two sorted runs side by side: the sort merges them in one pass.
            self.runs.append(array(_TYPECODE, sorted(before + last)))

    def __contains__(self, value: int) -> bool:
        for run in self.runs:
            at = bisect_left(run, value)
            if at < len(run) and run[at] == value:
                return True
        return False


class Fingerprints:
    """Per key, the fingerprints of the names it holds (see the module docstring)."""

    def __init__(
        self,
        lists: PagedLists,
        wal: WriteAheadLog,
        held: MutableMapping[str, _Runs] | None = None,
        max_held: int = MAX_HELD,
    ) -> None:
        self.lists = lists
        self._wal = wal
        wal.register(lists)
        # Pass an owned cache: memory is exact only while this instance owns the keys.
        self._held: MutableMapping[str, _Runs] = {} if held is None else held
        self._max_held = max_held

    async def maybe(self, key: str, names: Iterable[str]) -> set[str]:
        """The names among `names` that `key` may hold: all those it holds, and a few more."""
        runs = await self._runs(key)
        if not runs.size:
            return set()
        return {name for name in names if fingerprint(name) in runs}

    def add(self, key: str, names: Iterable[str]) -> None:
        """Names `key` now holds, made durable with the batch (stage the documents too)."""
        packed = _packed(fingerprint(name) for name in names)
        if not packed:
            return
        self._wal.append(key, self.lists, {key: [{"f": packed}]})
        runs = self._held.get(key)
        if runs is not None:
            runs.add(array(_TYPECODE, packed))

    async def _runs(self, key: str) -> _Runs:
        runs = self._held.pop(key, None)
        if runs is None:
            runs = _Runs()
            for item in await self._wal.read_list(self.lists, key):
                runs.add(array(_TYPECODE, bytes(item["f"])))
        self._held[key] = runs  # most recently used last
        total = sum(held.size for held in self._held.values())
        while total > self._max_held and len(self._held) > 1:
            oldest = next(iter(self._held))
            total -= self._held.pop(oldest).size
        return runs

    async def backfill(self, names: AsyncIterable[tuple[str, str]]) -> int:
        """Index `(key, name)` pairs directly (not through the log): a collection written
        before this index existed, read once. Returns how many."""

        async def items() -> AsyncIterable[tuple[str, dict[str, bytes]]]:
            batch: dict[str, list[int]] = {}
            held = 0
            async for key, name in names:
                batch.setdefault(key, []).append(fingerprint(name))
                held += 1
                if held >= 100_000:
                    for k, values in batch.items():
                        yield k, {"f": _packed(values)}
                    batch, held = {}, 0
            for k, values in batch.items():
                yield k, {"f": _packed(values)}

        count = 0
        async for key, item in items():
            await self.lists.append({key: [item]})
            count += len(item["f"]) // 4
        self._held.clear()
        return count
