"""Rolling totals per thread and per forum over the last 5 minutes, hour and 24 hours.

Built from window buckets, never from single events, so memory is bounded by
buckets x active keys whatever the event rate:

- fine buckets: one per base window (1 minute), kept for the longest fine period (1 hour) plus
  the allowed lateness, so a restated minute can still be corrected;
- coarse buckets: one per hour, the sum of the fine buckets inside it, kept for 24 hours + 1;
- per period, a running total of every key, moved incrementally as the end advances (buckets
  entering on the right are added, buckets leaving on the left subtracted) and corrected in
  place when a bucket inside the period is restated. A query is therefore O(keys reported).

**What a period covers.** Totals are "at a watermark" W: they cover whole windows that are
final at W, ending at ``end = W`` rounded down to the base window. A period of P covers
``[start, end)`` with ``start = end - P`` rounded *up* to the period's bucket grain: the base
window for periods up to one coarse bucket (5m and 1h are exact), the coarse bucket (1h) for
longer ones. So "24h" covers the last 23 full hours plus the current part hour, between
23h01m and 24h, and exactly 24h when ``end`` falls on an hour; never more than the period
says. Every snapshot carries its exact ``start_ms`` and ``end_ms``.

When the watermark is +infinity (every input ended), ``end`` is the end of the latest window
holding data instead: the last 5 minutes *of the data*. On a quiet stream whose watermark
moves on with wall-clock time the totals decay to zero, as a "last 5 minutes" should.

Feeding. Either ``add(start, delta)`` with count deltas (what ``WindowEngine`` does with its
minute windows as they become final or are restated), or ``update(result)`` with complete
``WindowResult``s of the base size (replace semantics by revision, for a consumer that only
sees results). Do not mix the two on one instance. Keys are the engine's
``(forum, thread, type)``; forum totals are kept per ``(forum, type)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from .packing import Packed, unpack
from .watermarks import NEG_INF, POS_INF

if TYPE_CHECKING:  # pragma: no cover
    from .engine import WindowResult

CountKey = tuple[str, str, str]  # (forum, thread, type)
ForumKey = tuple[str, str]  # (forum, type)

DEFAULT_PERIODS_MS = (300_000, 3_600_000, 86_400_000)
DEFAULT_COARSE_MS = 3_600_000


@dataclass(frozen=True)
class RollingSnapshot:
    """Totals of one period at one end: ``[start_ms, end_ms)``, both None before any data."""

    period_ms: int
    start_ms: int | None
    end_ms: int | None
    threads: Mapping[CountKey, int]
    forums: Mapping[ForumKey, int]

    def thread_totals(self) -> dict[tuple[str, str], int]:
        """All types summed per (forum, thread)."""
        out: dict[tuple[str, str], int] = {}
        for (forum, thread, _kind), n in self.threads.items():
            out[(forum, thread)] = out.get((forum, thread), 0) + n
        return out

    def forum_totals(self) -> dict[str, int]:
        """All types summed per forum."""
        out: dict[str, int] = {}
        for (forum, _kind), n in self.forums.items():
            out[forum] = out.get(forum, 0) + n
        return out


class _Period:
    __slots__ = ("period_ms", "grain_ms", "start", "threads", "forums")

    def __init__(self, period_ms: int, grain_ms: int) -> None:
        self.period_ms = period_ms
        self.grain_ms = grain_ms
        self.start: int | None = None
        self.threads: dict[CountKey, int] = {}
        self.forums: dict[ForumKey, int] = {}

    def start_for(self, end: int) -> int:
        low = end - self.period_ms
        return -(-low // self.grain_ms) * self.grain_ms  # rounded up to the grain


class RollingTotals:
    """Running totals over several trailing periods, from buckets of ``bucket_ms``."""

    def __init__(self, bucket_ms: int = 60_000, coarse_bucket_ms: int = DEFAULT_COARSE_MS,
                 periods_ms: tuple[int, ...] = DEFAULT_PERIODS_MS,
                 allowed_lateness_ms: int = 300_000) -> None:
        if bucket_ms <= 0 or coarse_bucket_ms < bucket_ms or coarse_bucket_ms % bucket_ms:
            raise ValueError(f"coarse bucket {coarse_bucket_ms} ms must be a multiple of the "
                             f"bucket {bucket_ms} ms")
        if not periods_ms or min(periods_ms) <= 0:
            raise ValueError("rolling periods must be positive")
        self.bucket_ms = bucket_ms
        self.coarse_ms = coarse_bucket_ms
        self.periods = {p: _Period(p, bucket_ms if p <= coarse_bucket_ms else coarse_bucket_ms)
                        for p in sorted(set(periods_ms))}
        fine_periods = [p for p in self.periods if p <= coarse_bucket_ms]
        coarse_periods = [p for p in self.periods if p > coarse_bucket_ms]
        self._fine_keep = (max(fine_periods + [coarse_bucket_ms]) + allowed_lateness_ms
                           + bucket_ms)
        self._coarse_keep = max(coarse_periods, default=0) + coarse_bucket_ms
        # buckets by start: per (forum, thread, type), and the same summed per (forum, type).
        # A coarse bucket older than the fine retention is Packed (forumstats.packing): a day
        # of hourly per-thread rows is held, and each bucket is read once more, when it
        # leaves the 24-hour period.
        self._fine: dict[int, dict[CountKey, int]] = {}
        self._coarse: dict[int, dict[CountKey, int] | Packed] = {}
        self._fine_forums: dict[int, dict[ForumKey, int]] = {}
        self._coarse_forums: dict[int, dict[ForumKey, int]] = {}
        self._seen: dict[int, tuple[int, bool]] = {}  # update(): (revision, final) applied
        self._end: int | None = None
        self._max_end: int | None = None
        self.version = 0  # bumped on every change of any running total

    # -- input ---------------------------------------------------------------------------
    def add(self, start_ms: int, delta: Mapping[CountKey, int], owned: bool = False) -> None:
        """Add count deltas of the base window starting at ``start_ms``. ``owned=True`` hands
        over a dict the caller will not touch again (it may become the bucket, uncopied)."""
        if not delta:
            return
        if start_ms % self.bucket_ms:
            raise ValueError(f"window start {start_ms} is not aligned to {self.bucket_ms} ms")
        cancels = min(delta.values()) < 0  # only update() sends negative deltas
        forum_delta: dict[ForumKey, int] = {}
        for (forum, _thread, kind), n in delta.items():
            forum_delta[(forum, kind)] = forum_delta.get((forum, kind), 0) + n
        coarse = start_ms - start_ms % self.coarse_ms
        if owned and start_ms not in self._fine and not cancels:
            self._fine[start_ms] = delta  # type: ignore[assignment]
        else:
            _merge(self._fine.setdefault(start_ms, {}), delta, cancels)
        _merge(self._fine_forums.setdefault(start_ms, {}), forum_delta, cancels)
        _merge(self._coarse_bucket(coarse), delta, cancels)
        _merge(self._coarse_forums.setdefault(coarse, {}), forum_delta, cancels)
        end = start_ms + self.bucket_ms
        if self._max_end is None or end > self._max_end:
            self._max_end = end
        if self._end is not None:
            for period in self.periods.values():
                if period.start <= start_ms < self._end:
                    self._apply(period, delta, forum_delta, 1, cancels)

    def update(self, result: WindowResult) -> bool:
        """Take a complete window result of the base size (final or partial): its counts
        replace whatever that bucket held. Older revisions, other window sizes and windows
        past the retention are ignored; returns whether the result was applied."""
        if result.size_ms != self.bucket_ms:
            return False
        start = result.start_ms
        order = (result.revision, result.final)
        seen = self._seen.get(start)
        if seen is not None and order <= seen:
            return False
        if self._end is not None and start + self.bucket_ms <= self._end - self._fine_keep:
            return False
        old = self._fine.get(start, {})
        delta = dict(result.counts)
        for key, n in old.items():
            delta[key] = delta.get(key, 0) - n
        self._seen[start] = order
        self.add(start, {k: n for k, n in delta.items() if n})
        return True

    def advance(self, watermark_ms: int) -> None:
        """Move the end of every period to the watermark (rounded down to the base window;
        the end of the data when the watermark is +infinity). Never moves backwards."""
        if watermark_ms <= NEG_INF:
            return
        if watermark_ms >= POS_INF:
            if self._max_end is None:
                return
            end = self._max_end
        else:
            end = watermark_ms - watermark_ms % self.bucket_ms
        old = self._end
        if old is not None and end <= old:
            return
        for period in self.periods.values():
            new_start = period.start_for(end)
            if old is None or new_start >= old:
                period.threads.clear()
                period.forums.clear()
                self._add_range(period, new_start, end)
            else:
                fine = period.grain_ms == self.bucket_ms
                store = self._fine if fine else self._coarse
                forums = self._fine_forums if fine else self._coarse_forums
                for start in _between(store, period.start, new_start):
                    self._apply(period, unpack(store[start]), forums[start], -1)
                for start in _between(self._fine, old, end):
                    self._apply(period, self._fine[start], self._fine_forums[start], 1)
            period.start = new_start
        self._end = end
        self.version += 1
        self._purge(end)

    # -- queries -------------------------------------------------------------------------
    @property
    def end_ms(self) -> int | None:
        return self._end

    def totals(self, period_ms: int) -> RollingSnapshot:
        """A copy of one period's totals at the current end."""
        period = self._period(period_ms)
        return RollingSnapshot(period_ms, period.start, self._end, dict(period.threads),
                               dict(period.forums))

    def snapshot(self) -> dict[int, RollingSnapshot]:
        """Every period's totals, keyed by period length in ms."""
        return {p: self.totals(p) for p in self.periods}

    def thread_counts(self, period_ms: int) -> Mapping[CountKey, int]:
        """Read-only live view of one period's per-(forum, thread, type) totals (no copy)."""
        return MappingProxyType(self._period(period_ms).threads)

    def forum_counts(self, period_ms: int) -> Mapping[ForumKey, int]:
        """Read-only live view of one period's per-(forum, type) totals (no copy)."""
        return MappingProxyType(self._period(period_ms).forums)

    def covered(self, period_ms: int) -> tuple[int | None, int | None]:
        """``(start_ms, end_ms)`` that one period covers right now."""
        return self._period(period_ms).start, self._end

    def state_size(self) -> int:
        """Counters held: bucket entries plus running-total entries."""
        return (sum(len(b) for b in self._fine.values())
                + sum(len(b) if type(b) is dict else b.length for b in self._coarse.values())
                + sum(len(b) for b in self._fine_forums.values())
                + sum(len(b) for b in self._coarse_forums.values())
                + sum(len(p.threads) + len(p.forums) for p in self.periods.values()))

    # -- internals -----------------------------------------------------------------------
    def _period(self, period_ms: int) -> _Period:
        try:
            return self.periods[period_ms]
        except KeyError:
            raise ValueError(f"no rolling period of {period_ms} ms; kept: "
                             f"{sorted(self.periods)}") from None

    def _add_range(self, period: _Period, start: int, end: int) -> None:
        fine_from = start
        if period.grain_ms != self.bucket_ms:
            fine_from = end - end % self.coarse_ms
            for c in _between(self._coarse, start, fine_from):
                self._apply(period, unpack(self._coarse[c]), self._coarse_forums[c], 1)
        for s in _between(self._fine, fine_from, end):
            self._apply(period, self._fine[s], self._fine_forums[s], 1)

    def _apply(self, period: _Period, delta: Mapping[CountKey, int],
               forum_delta: Mapping[ForumKey, int], sign: int, cancels: bool = False) -> None:
        """Add (sign 1) or subtract (sign -1) a bucket or delta; keys reaching 0 go away."""
        if sign > 0:
            _merge(period.threads, delta, cancels)
            _merge(period.forums, forum_delta, cancels)
        else:
            _subtract(period.threads, delta)
            _subtract(period.forums, forum_delta)
        self.version += 1

    def _purge(self, end: int) -> None:
        for start in [s for s in self._fine if s + self.bucket_ms <= end - self._fine_keep]:
            del self._fine[start]
            del self._fine_forums[start]
            self._seen.pop(start, None)
        for start in [c for c in self._coarse if c + self.coarse_ms <= end - self._coarse_keep]:
            del self._coarse[start]
            del self._coarse_forums[start]
        for start, bucket in self._coarse.items():
            if type(bucket) is dict and start + self.coarse_ms <= end - self._fine_keep:
                self._coarse[start] = Packed(bucket)

    def _coarse_bucket(self, start: int) -> dict[CountKey, int]:
        """The coarse bucket at ``start`` to add to (unpacked again if it was packed)."""
        bucket = self._coarse.get(start)
        if bucket is None:
            bucket = self._coarse[start] = {}
        elif type(bucket) is Packed:
            bucket = self._coarse[start] = bucket.unpack()
        return bucket


def _between(store: Mapping[int, object], low: int, high: int) -> list[int]:
    return [s for s in store if low <= s < high]


def _merge(target: dict, delta: Mapping, cancels: bool) -> None:
    """target += delta; with ``cancels`` (negative deltas possible) drop keys reaching 0."""
    get = target.get
    for key, n in delta.items():
        target[key] = get(key, 0) + n
    if cancels:
        for key in delta:
            if not target.get(key, 1):
                del target[key]


def _subtract(target: dict, delta: Mapping) -> None:
    get = target.get
    for key, n in delta.items():
        total = get(key, 0) - n
        if total:
            target[key] = total
        else:
            del target[key]
