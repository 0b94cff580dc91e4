"""The windowing engine: partial counts in, final and restated window results out.

Level 0 counts tumbling windows of ``size_ms`` from partial counts. Each rollup level (1h, 1d)
is built from the results of the level below, so a restated minute restates its hour and day.
A window is final once the watermark reaches its end; until the watermark reaches
end + allowed lateness it may still change, and every change is emitted again with a higher
revision. After that it is forgotten and anything for it is too late.
No clock reads: wall-clock time is passed in and only feeds the WatermarkTracker's idleness.

Levels: the base size plus the rollup sizes, ascending; each rollup is built from the largest
smaller level whose size divides it (``forumstats.windows.level_plan``).

Alongside the counts the engine keeps, on the same watermark (all additive, optional to use):

- ``engine.rolling``: ``forumstats.rolling.RollingTotals`` over the last 5 minutes, hour and
  24 hours, fed with every base window as it becomes final or is restated, moved to the
  watermark by ``advance``. Query with ``engine.rolling_totals(period_ms)`` and
  ``engine.trending(k)`` (top-K threads per forum over the last hour, exact counts).
- ``engine.distinct``: ``forumstats.distinct.DistinctTracker`` (HLL distinct users per
  (window, forum, thread) and (window, forum), same finality, lateness and rollups). Feed it
  with ``engine.add_users(users)`` (from ``windows.preaggregate_with_users``); ``advance``
  drives it too, and ``engine.drain_distinct()`` returns the ``DistinctResult``s emitted
  since the last call (``engine.distinct_partials()`` for early results).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .distinct import DEFAULT_LG_K, DistinctResult, DistinctTracker
from .rolling import DEFAULT_COARSE_MS, RollingSnapshot, RollingTotals
from .settings import WindowSettings
from .trending import TrendingSnapshot, trending
from .watermarks import WatermarkTracker
from .windows import PartialKey, UserKey, level_plan

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

    def add_many(self, start: int, delta: Mapping[CountKey, int]) -> None:
        """``add`` for every key of ``delta`` (one window lookup, local lookups: hot path)."""
        window = self.windows.get(start)
        if window is None:
            window = self.windows[start] = _Window()
        counts, changed = window.counts, window.changed
        counts_get, changed_get = counts.get, changed.get
        for key, n in delta.items():
            counts[key] = counts_get(key, 0) + n
            changed[key] = changed_get(key, 0) + n

    def state_size(self) -> int:
        return sum(len(w.counts) for w in self.windows.values())


class WindowEngine:
    """Counts, rollups, rolling totals and distinct users of event-time windows.

    ``rolling=False`` switches the rolling totals off (nothing is kept for them);
    ``lg_k`` is the HLL precision of the distinct-user sketches.
    """

    def __init__(self, settings: WindowSettings, *, rolling: bool = True,
                 lg_k: int = DEFAULT_LG_K, idle_by_silence: bool = True) -> None:
        self.settings = settings
        self.size_ms = settings.size_ms
        self.lateness = settings.allowed_lateness_ms
        sizes, sources = level_plan(settings.size_ms, settings.rollup_sizes_ms)
        self.levels = [_Level(s) for s in sizes]
        # _dependents[i]: the levels built from level i's emissions
        self._dependents: list[list[_Level]] = [[] for _ in sizes]
        for index, source in enumerate(sources):
            if source is not None:
                self._dependents[source].append(self.levels[index])
        self.watermarks = WatermarkTracker(settings.out_of_orderness_ms, settings.idle_timeout_ms,
                                           idle_by_silence=idle_by_silence)
        self.too_late_count = 0
        self.rolling: RollingTotals | None = None
        if rolling:
            coarse = max(self.size_ms, DEFAULT_COARSE_MS // self.size_ms * self.size_ms)
            self.rolling = RollingTotals(self.size_ms, coarse,
                                         allowed_lateness_ms=self.lateness)
        self.distinct = DistinctTracker.from_settings(settings, lg_k)
        self._distinct_out: list[DistinctResult] = []

    # -- input ---------------------------------------------------------------------------
    def add_partial(self, partial: Mapping[PartialKey, int]) -> dict[PartialKey, int]:
        """Add partial counts; returns the part that was too late (and so was not counted)."""
        windows = self.levels[0].windows
        too_late: dict[PartialKey, int] = {}
        cutoff = self.late_cutoff()
        last_start = None
        counts: dict[CountKey, int] = {}
        changed: dict[CountKey, int] = {}
        for (start, forum, thread, kind), n in partial.items():
            if start != last_start:  # partial keys mostly come grouped by window
                if start <= cutoff:
                    too_late[(start, forum, thread, kind)] = n
                    self.too_late_count += n
                    continue
                window = windows.get(start)
                if window is None:
                    window = windows[start] = _Window()
                counts, changed = window.counts, window.changed
                last_start = start
            key = (forum, thread, kind)
            counts[key] = counts.get(key, 0) + n
            changed[key] = changed.get(key, 0) + n
        return too_late

    def add_users(self, users: Mapping[UserKey, Iterable[str]]) -> dict[UserKey, list[str]]:
        """Add distinct users per (window start, forum, thread), as returned by
        ``windows.preaggregate_with_users``; returns the too-late part (same cutoff as
        ``add_partial``, so users of a too-late event are never counted either)."""
        return self.distinct.add_users(users, self.late_cutoff())

    def restore(self, start_ms: int, counts: Mapping[CountKey, int], revision: int) -> None:
        """Seed a base window from what was written before a restart: final at ``revision``
        with ``counts``; later additions restate it with the next revision."""
        self.levels[0].windows[start_ms] = _Window(dict(counts), revision, {})

    def late_cutoff(self) -> int:
        """Level-0 windows starting at or before this are closed for good (too late)."""
        return self.watermarks.current - self.lateness - self.size_ms

    # -- output --------------------------------------------------------------------------
    def advance(self, now_ms: int, restate: bool = True) -> list[WindowResult]:
        """Move the watermark to ``now_ms``; return windows that became final or changed
        after being final (restatements), lowest level first, oldest first. With
        ``restate=False`` changes to final windows are kept for a later call (one restatement
        then carries them all) unless the window is about to be forgotten."""
        watermark = self.watermarks.watermark(now_ms)
        results: list[WindowResult] = []
        rolling = self.rolling
        for index, level in enumerate(self.levels):
            parents = self._dependents[index]
            for start in sorted(level.windows):
                end = start + level.size_ms
                if end > watermark:
                    break
                window = level.windows[start]
                if (window.revision and not restate
                        and end + self.lateness > watermark):
                    continue
                if window.changed or window.revision == 0:
                    window.revision += 1
                    results.append(WindowResult(level.size_ms, start, window.revision, True,
                                                dict(window.counts)))
                    for parent in parents:
                        parent.add_many(start - start % parent.size_ms, window.changed)
                    if index == 0 and rolling is not None:
                        rolling.add(start, window.changed, owned=True)  # replaced just below
                    window.changed = {}
                if end + self.lateness <= watermark:
                    del level.windows[start]
        if rolling is not None:
            rolling.advance(watermark)
        self._distinct_out.extend(self.distinct.advance(watermark, restate))
        return results

    def drain_distinct(self) -> list[DistinctResult]:
        """Distinct-user windows that became final or were restated by the ``advance`` calls
        since the last drain (lowest level first, oldest first within one advance)."""
        out, self._distinct_out = self._distinct_out, []
        return out

    def distinct_partials(self) -> list[DistinctResult]:
        """Early distinct-user results of every window not yet final."""
        return self.distinct.partials()

    def rolling_totals(self, period_ms: int) -> RollingSnapshot:
        """Totals over the last ``period_ms`` (300_000, 3_600_000 or 86_400_000) of final
        windows at the watermark; see ``forumstats.rolling`` for exactly what is covered."""
        if self.rolling is None:
            raise ValueError("rolling totals are off for this engine (rolling=False)")
        return self.rolling.totals(period_ms)

    def trending(self, k: int | None = None, types: Iterable[str] | None = None
                 ) -> TrendingSnapshot:
        """Top-K threads per forum over the last hour, exact counts (K from settings.top_k)."""
        if self.rolling is None:
            raise ValueError("trending needs rolling totals, which are off (rolling=False)")
        return trending(self.rolling, self.settings.top_k if k is None else k,
                        types=None if types is None else tuple(types))

    def partials(self) -> list[WindowResult]:
        """Early results: every window not yet final, with its counts so far. A rollup's
        partial includes what its lower-level windows hold but have not yet handed up."""
        watermark = self.watermarks.current
        results: list[WindowResult] = []
        carries: dict[int, dict[int, dict[CountKey, int]]] = {}
        for index, level in enumerate(self.levels):
            carry = carries.get(index, {})
            for start in sorted(set(level.windows) | set(carry)):
                window = level.windows.get(start) or _Window()
                incoming = carry.get(start, {})
                if start + level.size_ms > watermark:
                    results.append(WindowResult(level.size_ms, start, window.revision, False,
                                                _merged(window.counts, incoming)))
                for parent in self._dependents[index]:
                    target = carries.setdefault(self.levels.index(parent), {})
                    bucket = target.setdefault(start - start % parent.size_ms, {})
                    for source in (window.changed, incoming):
                        for key, n in source.items():
                            bucket[key] = bucket.get(key, 0) + n
        return results

    # -- introspection -------------------------------------------------------------------
    def state_size(self) -> int:
        """Number of (window, key) counters and sketches held, rolling totals included:
        bounded by open windows x active keys (see ``state_breakdown``)."""
        return sum(self.state_breakdown().values())

    def state_breakdown(self) -> dict[str, int]:
        """State size per part: window counters, rolling-total counters, HLL sketches."""
        return {
            "windows": sum(level.state_size() for level in self.levels),
            "rolling": 0 if self.rolling is None else self.rolling.state_size(),
            "distinct": self.distinct.state_size(),
        }

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
