"""Event-time pacing of Kafka partitions (pure: times are passed in).

While a backlog is replayed, partitions can run far apart in event time: one partition's events
reach hour 5 while another's are still at hour 1. Everything between the slowest partition's
watermark and the fastest partition's events must then be held in open windows. The pacer
bounds that spread: a partition whose highest event time is more than ``bound_ms`` ahead of
the slowest *live* partition is paused until the others catch up.

* The event time of a partition is the highest event timestamp the caller has seen in batches
  it took from that partition (``note_event_time``); the source cannot know it, it does not
  parse records.
* A partition is live while records keep arriving from it (``note_activity``); one from which
  nothing has arrived for ``idle_timeout_ms`` (it is at its end, or quiet) no longer counts as
  the slowest, so a quiet partition does not stall the rest. A partition the pacer itself holds
  stays live: it is only quiet because it is paused.
* A partition without any event time does not count as the slowest. But while a live
  partition is *waiting* (it has records to read and has not handed out its first batch, so
  its event time is about to become known), every partition with a known event time is held:
  otherwise, at start-up, a partition whose first fetch happens to come back first could run
  arbitrarily far ahead before the others report. This lasts one fetch round; a waiting
  partition that stops receiving records stops holding the others after ``idle_timeout_ms``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable


class Pacer:
    def __init__(self, bound_ms: int | None, idle_timeout_ms: int) -> None:
        if bound_ms is not None and bound_ms <= 0:
            raise ValueError("bound_ms must be positive or None (pacing off)")
        if idle_timeout_ms <= 0:
            raise ValueError("idle_timeout_ms must be positive")
        self.bound_ms = bound_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.event_time: dict[Hashable, int] = {}
        self.last_activity: dict[Hashable, int] = {}
        self.held: set[Hashable] = set()
        self.waiting: set[Hashable] = set()

    def track(self, key: Hashable, now_ms: int) -> None:
        """A partition was assigned (or restarted): it is live from now."""
        self.last_activity.setdefault(key, now_ms)

    def forget(self, key: Hashable) -> None:
        self.event_time.pop(key, None)
        self.last_activity.pop(key, None)
        self.held.discard(key)
        self.waiting.discard(key)

    def set_waiting(self, key: Hashable, waiting: bool) -> None:
        """Whether ``key`` has records to read but no batch handed out yet."""
        if waiting and key in self.last_activity and key not in self.event_time:
            self.waiting.add(key)
        else:
            self.waiting.discard(key)

    def note_event_time(self, key: Hashable, max_ts_ms: int) -> None:
        if key in self.last_activity:
            self.event_time[key] = max(self.event_time.get(key, max_ts_ms), max_ts_ms)
            self.waiting.discard(key)

    def note_activity(self, key: Hashable, now_ms: int) -> None:
        if key in self.last_activity:
            self.last_activity[key] = max(self.last_activity[key], now_ms)

    def is_live(self, key: Hashable, now_ms: int) -> bool:
        last = self.last_activity.get(key)
        if last is None:
            return False
        return key in self.held or now_ms - last <= self.idle_timeout_ms

    def slowest(self, now_ms: int) -> int | None:
        """Event time of the slowest live partition with a known event time."""
        times = [t for k, t in self.event_time.items() if self.is_live(k, now_ms)]
        return min(times) if times else None

    def decide(self, now_ms: int) -> set[Hashable]:
        """The partitions to hold (pause) now; also remembered as ``held``."""
        if self.bound_ms is None:
            self.held = set()
            return set()
        if any(now_ms - self.last_activity[k] <= self.idle_timeout_ms for k in self.waiting):
            self.held = set(self.event_time)
            return set(self.held)
        slowest = self.slowest(now_ms)
        if slowest is None:
            self.held = set()
            return set()
        limit = slowest + self.bound_ms
        self.held = {k for k, t in self.event_time.items() if t > limit}
        return set(self.held)

    def keys(self) -> Iterable[Hashable]:
        return self.last_activity.keys()
