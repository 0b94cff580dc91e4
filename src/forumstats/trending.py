"""Trending threads: the top K threads of every forum over the last hour, with exact counts.

Computed from the exact running totals that ``forumstats.rolling.RollingTotals`` keeps per
(forum, thread, type), so there is no approximation at all: every reported count is the exact
number of accepted events of that thread in the covered range, and the ranking is exact too
(no frequent-items sketch is involved, hence no error bound to state). The cost is one pass
over the threads active in the period, O(n log K), and memory is what the rolling totals
already hold (buckets x active keys, independent of the event count).

Ranking: count descending, then thread id ascending, so ties are broken deterministically and
two runs over the same events publish identical rankings. ``types`` restricts what is counted
(for example only ``comment``); by default all event types count.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from .rolling import CountKey, RollingTotals

DEFAULT_PERIOD_MS = 3_600_000
DEFAULT_K = 20


class TrendingThread(NamedTuple):
    forum: str
    thread: str
    count: int  # exact number of events (of the selected types) in the covered range
    rank: int  # 1 = most active in its forum


@dataclass(frozen=True)
class TrendingSnapshot:
    """Top threads per forum over ``[start_ms, end_ms)`` (None before any data)."""

    period_ms: int
    start_ms: int | None
    end_ms: int | None
    k: int
    types: tuple[str, ...] | None  # None = all types
    forums: Mapping[str, tuple[TrendingThread, ...]]  # forums sorted by name

    def rows(self) -> list[TrendingThread]:
        """Every reported thread, by forum then rank: ready for a table or a Parquet file."""
        return [row for forum in self.forums for row in self.forums[forum]]


def top_threads(counts: Mapping[CountKey, int], k: int = DEFAULT_K,
                types: Collection[str] | None = None) -> dict[str, tuple[TrendingThread, ...]]:
    """Top ``k`` threads per forum from exact per-(forum, thread, type) counts."""
    if k <= 0:
        raise ValueError(f"top-K needs k >= 1, got {k}")
    wanted = None if types is None else frozenset(types)
    per_thread: dict[tuple[str, str], int] = {}
    for (forum, thread, kind), n in counts.items():
        if wanted is None or kind in wanted:
            key = (forum, thread)
            per_thread[key] = per_thread.get(key, 0) + n
    by_forum: dict[str, list[tuple[str, int]]] = {}
    for (forum, thread), n in per_thread.items():
        if n > 0:
            by_forum.setdefault(forum, []).append((thread, n))
    out: dict[str, tuple[TrendingThread, ...]] = {}
    for forum in sorted(by_forum):
        best = heapq.nsmallest(k, by_forum[forum], key=_rank_key)
        out[forum] = tuple(TrendingThread(forum, thread, n, rank)
                           for rank, (thread, n) in enumerate(best, start=1))
    return out


def trending(rolling: RollingTotals, k: int = DEFAULT_K, period_ms: int = DEFAULT_PERIOD_MS,
             types: Collection[str] | None = None) -> TrendingSnapshot:
    """Top ``k`` threads per forum over the rolling period (default: the last hour)."""
    start, end = rolling.covered(period_ms)
    forums = top_threads(rolling.thread_counts(period_ms), k, types)
    return TrendingSnapshot(period_ms, start, end, k,
                            None if types is None else tuple(sorted(types)), forums)


class TrendingCache:
    """Recomputes the ranking only when the rolling totals changed since the last call."""

    def __init__(self, rolling: RollingTotals, k: int = DEFAULT_K,
                 period_ms: int = DEFAULT_PERIOD_MS,
                 types: Collection[str] | None = None) -> None:
        self.rolling = rolling
        self.k = k
        self.period_ms = period_ms
        self.types = types
        self._version: int | None = None
        self._last: TrendingSnapshot | None = None

    def get(self) -> TrendingSnapshot:
        if self._last is None or self._version != self.rolling.version:
            self._last = trending(self.rolling, self.k, self.period_ms, self.types)
            self._version = self.rolling.version
        return self._last


def _rank_key(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])
