"""Turns a micro-batch of raw records into per-bucket partial counts and dead letters.

This is what the spout does with each batch, so that one tuple per key bucket carries many
events. Buckets are chosen by forum (a stable CRC32, not Python's salted ``hash``), so every
(window, forum) row of ``forum_counts`` comes from exactly one bucket and so one file.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from .deadletters import DeadLetter
from .events import Event, parse_event
from .settings import EventContract

# A partial count row as it travels in a tuple: [window_start, forum, thread, type, n].
Row = list


def bucket_of(forum: str, buckets: int) -> int:
    return zlib.crc32(forum.encode("utf-8", "surrogatepass")) % buckets


@dataclass
class PreparedBatch:
    rows_by_bucket: dict[int, list[Row]] = field(default_factory=dict)
    # per bucket: [window_start, forum, thread, [user ids]] for events that name a user
    users_by_bucket: dict[int, list[list]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    accepted: int = 0
    max_ts: int | None = None


def prepare_batch(records: Iterable[tuple[int, bytes]], *, contract: EventContract,
                  size_ms: int, buckets: int, source: str, topic: str | None,
                  partition: int | None, received_ms: int) -> PreparedBatch:
    """Validate ``(offset, raw)`` records; count accepted ones per bucket, window and key."""
    counts: dict[tuple[int, str, str, str], int] = {}
    users: dict[tuple[int, str, str], set[str]] = {}
    get = counts.get
    out = PreparedBatch()
    max_ts = None
    for offset, raw in records:
        ev = parse_event(raw, contract)
        if type(ev) is not Event:
            out.dead.append(DeadLetter(ev.reason, ev.detail, raw, source, topic, partition,
                                       offset, received_ms))
            continue
        ts = ev.ts_ms
        start = ts - ts % size_ms
        key = (start, ev.forum, ev.thread, ev.type)
        counts[key] = get(key, 0) + 1
        if ev.user is not None:
            users.setdefault((start, ev.forum, ev.thread), set()).add(ev.user)
        if max_ts is None or ts > max_ts:
            max_ts = ts
    out.max_ts = max_ts
    bucket_cache: dict[str, int] = {}
    for (start, forum, thread, kind), n in counts.items():
        bucket = bucket_cache.get(forum)
        if bucket is None:
            bucket = bucket_cache[forum] = bucket_of(forum, buckets)
        out.rows_by_bucket.setdefault(bucket, []).append([start, forum, thread, kind, n])
        out.accepted += n
    for (start, forum, thread), names in users.items():
        out.users_by_bucket.setdefault(bucket_cache[forum], []).append(
            [start, forum, thread, sorted(names)])
    return out
