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
