"""Tumbling event-time windows and the pre-aggregation of events into partial counts."""

from __future__ import annotations

from collections.abc import Iterable

from .events import Event

# A partial count key: (window_start_ms, forum, thread, type).
PartialKey = tuple[int, str, str, str]


def window_start(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window holding ``ts_ms``; windows are [start, start + size)."""
    return ts_ms - ts_ms % size_ms


def preaggregate(events: Iterable[Event], size_ms: int) -> tuple[dict[PartialKey, int], int | None]:
    """Fold events into counts per (window, forum, thread, type); also return the max ts."""
    counts: dict[PartialKey, int] = {}
    get = counts.get
    max_ts = None
    for ev in events:
        ts = ev.ts_ms
        key = (ts - ts % size_ms, ev.forum, ev.thread, ev.type)
        counts[key] = get(key, 0) + 1
        if max_ts is None or ts > max_ts:
            max_ts = ts
    return counts, max_ts


# A users key: (window_start_ms, forum, thread); the forum-level key drops the thread.
UserKey = tuple[int, str, str]


def preaggregate_with_users(
    events: Iterable[Event], size_ms: int
) -> tuple[dict[PartialKey, int], dict[UserKey, set[str]], int | None]:
    """``preaggregate`` plus the distinct users per (window, forum, thread) of the batch.

    Returns ``(counts, users, max_ts)``; ``counts`` and ``max_ts`` are exactly what
    ``preaggregate`` returns. Events without a ``user`` are counted but add no user. The user
    sets are deduplicated within the batch, ready for ``WindowEngine.add_users`` (or, across a
    Storm tuple, as JSON lists). A separate function so that ``preaggregate`` keeps its speed.
    """
    counts: dict[PartialKey, int] = {}
    users: dict[UserKey, set[str]] = {}
    get = counts.get
    max_ts = None
    for ev in events:
        ts = ev.ts_ms
        start = ts - ts % size_ms
        key = (start, ev.forum, ev.thread, ev.type)
        counts[key] = get(key, 0) + 1
        if max_ts is None or ts > max_ts:
            max_ts = ts
        user = ev.user
        if user is not None:
            ukey = (start, ev.forum, ev.thread)
            bucket = users.get(ukey)
            if bucket is None:
                users[ukey] = {user}
            else:
                bucket.add(user)
    return counts, users, max_ts


def level_plan(size_ms: int, rollup_sizes_ms: Iterable[int]
               ) -> tuple[tuple[int, ...], tuple[int | None, ...]]:
    """Window sizes of all levels (level 0 first, rollups ascending, duplicates dropped) and,
    per level, the index of the level it is built from (None for level 0).

    A rollup is built from the largest smaller level whose size divides it, so (1h, 1d) builds
    1d from 1h, while (1h, 90m) builds 90m from the base windows (an hour window would straddle
    two 90-minute windows). Every rollup is a multiple of ``size_ms`` (WindowSettings checks).
    """
    sizes = [size_ms] + sorted(set(rollup_sizes_ms) - {size_ms})
    sources: list[int | None] = [None]
    for index in range(1, len(sizes)):
        sources.append(max(j for j in range(index) if sizes[index] % sizes[j] == 0))
    return tuple(sizes), tuple(sources)
