"""The windowing engine: partial counts in, final and restated window results out.

Level 0 counts tumbling windows of ``size_ms`` from partial counts. Each rollup level (1h, 1d)
is built from the results of the level below, so a restated minute restates its hour and day.
A window is final once the watermark reaches its end; until the watermark reaches
end + allowed lateness it may still change, and every change is emitted again with a higher
revision. After that it is forgotten and anything for it is too late.
No clock reads: wall-clock time is passed in and only feeds the WatermarkTracker's idleness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .settings import WindowSettings
from .watermarks import NEG_INF, WatermarkTracker
from .windows import PartialKey

# A count key inside one window: (forum, thread, type).
CountKey = tuple[str, str, str]


@dataclass(frozen=True)
class WindowResult:
    """The complete counts of one window, final or (for early results) partial."""

    size_ms: int
    start_ms: int
    revision: int
    final: bool
    counts: Mapping[CountKey, int]

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.size_ms


@dataclass
class _Window:
    counts: dict[CountKey, int] = field(default_factory=dict)
    revision: int = 0  # revisions emitted so far; 0 = never emitted
    changed: dict[CountKey, int] = field(default_factory=dict)  # delta not yet emitted


class _Level:
    def __init__(self, size_ms: int) -> None:
        self.size_ms = size_ms
        self.windows: dict[int, _Window] = {}

    def add(self, start: int, key: CountKey, n: int) -> None:
        window = self.windows.get(start)
        if window is None:
            window = self.windows[start] = _Window()
        window.counts[key] = window.counts.get(key, 0) + n
        window.changed[key] = window.changed.get(key, 0) + n

    def state_size(self) -> int:
        return sum(len(w.counts) for w in self.windows.values())


class WindowEngine:
    def __init__(self, settings: WindowSettings) -> None:
        self.settings = settings
        self.size_ms = settings.size_ms
        self.lateness = settings.allowed_lateness_ms
        self.levels = [_Level(settings.size_ms)] + [_Level(s) for s in settings.rollup_sizes_ms]
        self.watermarks = WatermarkTracker(settings.out_of_orderness_ms, settings.idle_timeout_ms)
        self.too_late_count = 0

    # -- input ---------------------------------------------------------------------------
    def add_partial(self, partial: Mapping[PartialKey, int]) -> dict[PartialKey, int]:
        """Add partial counts; returns the part that was too late (and so was not counted)."""
        level = self.levels[0]
        too_late: dict[PartialKey, int] = {}
        cutoff = self.late_cutoff()
        for (start, forum, thread, kind), n in partial.items():
            if start <= cutoff:
                too_late[(start, forum, thread, kind)] = n
                self.too_late_count += n
            else:
                level.add(start, (forum, thread, kind), n)
        return too_late

    def late_cutoff(self) -> int:
        """Level-0 windows starting at or before this are closed for good (too late)."""
        return self.watermarks.current - self.lateness - self.size_ms

    # -- output --------------------------------------------------------------------------
    def advance(self, now_ms: int) -> list[WindowResult]:
        """Move the watermark to ``now_ms``; return windows that became final or changed
        after being final (restatements), lowest level first, oldest first."""
        watermark = self.watermarks.watermark(now_ms)
        results: list[WindowResult] = []
        for index, level in enumerate(self.levels):
            parent = self.levels[index + 1] if index + 1 < len(self.levels) else None
            for start in sorted(level.windows):
                end = start + level.size_ms
                if end > watermark:
                    break
                window = level.windows[start]
                if window.changed or window.revision == 0:
                    window.revision += 1
                    results.append(WindowResult(level.size_ms, start, window.revision, True,
                                                dict(window.counts)))
                    if parent is not None:
                        parent_start = start - start % parent.size_ms
                        for key, n in window.changed.items():
                            parent.add(parent_start, key, n)
                    window.changed = {}
                if end + self.lateness <= watermark:
                    del level.windows[start]
        return results

    def partials(self) -> list[WindowResult]:
        """Early results: every window not yet final, with its counts so far. A rollup's
        partial includes what its lower-level windows hold but have not yet handed up."""
        watermark = self.watermarks.current
        results: list[WindowResult] = []
        carry: dict[int, dict[CountKey, int]] = {}
        for index, level in enumerate(self.levels):
            parent = self.levels[index + 1] if index + 1 < len(self.levels) else None
            next_carry: dict[int, dict[CountKey, int]] = {}
            for start in sorted(set(level.windows) | set(carry)):
                window = level.windows.get(start) or _Window()
                incoming = carry.get(start, {})
                if start + level.size_ms > watermark:
                    results.append(WindowResult(level.size_ms, start, window.revision, False,
                                                _merged(window.counts, incoming)))
                if parent is not None:
                    bucket = next_carry.setdefault(start - start % parent.size_ms, {})
                    for source in (window.changed, incoming):
                        for key, n in source.items():
                            bucket[key] = bucket.get(key, 0) + n
            carry = next_carry
        return results

    # -- introspection -------------------------------------------------------------------
    def state_size(self) -> int:
        """Number of (window, key) counters held: bounded by open windows x active keys."""
        return sum(level.state_size() for level in self.levels)

    def open_window_count(self) -> int:
        return sum(len(level.windows) for level in self.levels)

    @property
    def watermark(self) -> int:
        return self.watermarks.current


def _merged(a: Mapping[CountKey, int], b: Mapping[CountKey, int]) -> dict[CountKey, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return out


def split_too_late(events: Iterable, engine: WindowEngine) -> tuple[list, list]:
    """Split events into (on time, too late) by the engine's current watermark."""
    if engine.watermark == NEG_INF:
        return list(events), []
    size = engine.size_ms
    cutoff = engine.late_cutoff()
    on_time, late = [], []
    for ev in events:
        ts = ev.ts_ms
        (late if ts - ts % size <= cutoff else on_time).append(ev)
    return on_time, late
