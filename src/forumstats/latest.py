"""The dashboards' view (pure): what ``latest/`` holds after each flush.

Fed with final minute windows and partial (still open) minute counts per key bucket; produces
small JSON documents (per-minute series of the last hour, rolling 5m/1h/24h totals, trending
threads per forum, open windows) and the manifest that names them. Time is passed in.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from .distinct import merge_sketches, summarize
from .durations import duration_label
from .engine import WindowResult
from .rolling import RollingTotals
from .settings import Settings
from .trending import top_threads
from .watermarks import NEG_INF, POS_INF

HOUR_MS = 3_600_000
PERIODS_MS = (300_000, HOUR_MS, 24 * HOUR_MS)
TOP_THREADS_PER_PERIOD = 100
MANIFEST_VERSION = 1


MAX_ISO_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def iso(ms: int | None) -> str | None:
    """UTC ISO-8601 with milliseconds; None for no time or +/- infinity."""
    if ms is None or not 0 <= ms <= MAX_ISO_MS:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[
        :-3] + "Z"


class _Bucket:
    def __init__(self, settings: Settings) -> None:
        w = settings.windows
        self.rolling = RollingTotals(w.size_ms, periods_ms=PERIODS_MS,
                                     allowed_lateness_ms=w.allowed_lateness_ms)
        self.final_minutes: dict[int, dict[tuple[str, str], int]] = {}
        self.partial_minutes: dict[int, dict[tuple[str, str], int]] = {}
        self.forum_sketches: dict[int, dict[str, bytes]] = {}  # minute -> forum -> HLL bytes
        self.watermark = NEG_INF


class LatestView:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.size_ms = settings.windows.size_ms
        self.k = settings.windows.top_k
        self._buckets: dict[int, _Bucket] = {}

    def _bucket(self, bucket: int) -> _Bucket:
        if bucket not in self._buckets:
            self._buckets[bucket] = _Bucket(self.settings)
        return self._buckets[bucket]

    # -- input ---------------------------------------------------------------------------
    def on_window(self, bucket: int, result: WindowResult, watermark: int,
                  forum_sketches: Mapping[str, bytes] | None = None) -> None:
        """A final (or restated) base window of one bucket, with its forums' distinct-user
        sketches when events named users."""
        state = self._bucket(bucket)
        if forum_sketches:
            state.forum_sketches[result.start_ms] = dict(forum_sketches)
        state.rolling.update(result)
        forums: dict[tuple[str, str], int] = {}
        for (forum, _thread, kind), n in result.counts.items():
            forums[(forum, kind)] = forums.get((forum, kind), 0) + n
        state.final_minutes[result.start_ms] = forums
        state.partial_minutes.pop(result.start_ms, None)
        self._advance(state, watermark)

    def on_partials(self, bucket: int, watermark: int, rows: Iterable[list]) -> None:
        """Open windows of one bucket: rows ``[start, forum, type, n]`` replace the last."""
        state = self._bucket(bucket)
        state.partial_minutes = {}
        for start, forum, kind, n in rows:
            state.partial_minutes.setdefault(start, {})[(forum, kind)] = n
        self._advance(state, watermark)

    def _advance(self, state: _Bucket, watermark: int) -> None:
        state.watermark = max(state.watermark, watermark)
        horizon = self._series_end() - HOUR_MS - self.settings.windows.allowed_lateness_ms
        for start in [s for s in state.final_minutes if s < horizon]:
            del state.final_minutes[start]
        for start in [s for s in state.forum_sketches if s < horizon]:
            del state.forum_sketches[start]

    # -- output --------------------------------------------------------------------------
    @property
    def watermark(self) -> int:
        marks = [b.watermark for b in self._buckets.values()]
        return min(marks) if marks else NEG_INF

    def _series_end(self) -> int:
        ends = [s + self.size_ms for b in self._buckets.values()
                for s in (*b.final_minutes, *b.partial_minutes)]
        return max(ends) if ends else 0

    def documents(self) -> dict[str, Any]:
        """The snapshot documents, by kind."""
        self._align_rolling()
        return {"series": self._series(), "rolling": self._rolling(),
                "trending": self._trending(), "open_windows": self._open_windows(),
                "distinct_users": self._distinct_users()}

    def _distinct_users(self) -> dict:
        """Distinct users over the last hour of final windows: per forum and overall, as the
        union of the minutes' HLL sketches (a user active in many minutes counts once)."""
        end = self._series_end()
        start = end - HOUR_MS
        per_forum: dict[str, list[bytes]] = {}
        for b in self._buckets.values():
            for minute, forums in b.forum_sketches.items():
                if start <= minute < end:
                    for forum, data in forums.items():
                        per_forum.setdefault(forum, []).append(data)
        forums = {forum: summarize(merge_sketches(blobs)) for forum, blobs in per_forum.items()}
        overall = summarize(merge_sketches([d.sketch for d in forums.values()]))
        return {"period": "1h", "start": iso(start), "end": iso(end),
                "total": round(overall.estimate), "total_lower": round(overall.lower_bound),
                "total_upper": round(overall.upper_bound),
                "forums": {f: round(d.estimate) for f, d in sorted(forums.items())}}

    def _align_rolling(self) -> None:
        """Bring every bucket's rolling totals to one end: the combined watermark, or once all
        input ended, the end of the latest data of any bucket. Buckets cover disjoint forums,
        so their periods must match for sums and rankings across them to mean anything."""
        for b in self._buckets.values():
            b.rolling.advance(self.watermark)
        ends = [b.rolling.end_ms for b in self._buckets.values() if b.rolling.end_ms is not None]
        if ends:
            for b in self._buckets.values():
                b.rolling.advance(max(ends))

    def _series(self) -> dict:
        end = self._series_end()
        start = end - HOUR_MS
        rows = []
        for b in self._buckets.values():
            for final, minutes in ((True, b.final_minutes), (False, b.partial_minutes)):
                for minute, forums in minutes.items():
                    if minute >= start:
                        label = iso(minute)
                        rows += [{"minute": label, "forum": f, "type": k, "count": n,
                                  "final": final} for (f, k), n in forums.items()]
        rows.sort(key=lambda r: (r["minute"], r["forum"], r["type"]))
        return {"start": iso(start), "end": iso(end), "window": duration_label(self.size_ms),
                "rows": rows}

    def _rolling(self) -> dict:
        out = {}
        for period in PERIODS_MS:
            forums: dict[str, int] = {}
            covered = []
            for b in self._buckets.values():
                covered.append(b.rolling.covered(period))
                for (forum, _kind), n in b.rolling.forum_counts(period).items():
                    forums[forum] = forums.get(forum, 0) + n
            # Live views, not copies: at 1M threads a copy per bucket per flush is ~100 MB.
            views = [b.rolling.thread_counts(period) for b in self._buckets.values()]
            top = [row._asdict() for row in _overall_top(views, TOP_THREADS_PER_PERIOD)]
            starts = [s for s, _ in covered if s is not None]
            ends = [e for _, e in covered if e is not None]
            out[duration_label(period)] = {
                "start": iso(min(starts)) if starts else None,
                "end": iso(max(ends)) if ends else None,
                "total": sum(forums.values()), "forums": dict(sorted(forums.items())),
                "top_threads": top}
        return out

    def _trending(self) -> dict:
        counts: dict[tuple[str, str, str], int] = {}
        for b in self._buckets.values():
            counts.update(b.rolling.thread_counts(HOUR_MS))  # buckets hold disjoint forums
        ranked = top_threads(counts, self.k)
        return {"period": "1h", "k": self.k,
                "forums": {forum: [r._asdict() for r in rows] for forum, rows in ranked.items()}}

    def _open_windows(self) -> dict:
        rows = [{"window_start": iso(start), "forum": f, "type": k, "count": n, "final": False}
                for b in self._buckets.values() for start, forums in b.partial_minutes.items()
                for (f, k), n in forums.items()]
        rows.sort(key=lambda r: (r["window_start"], r["forum"], r["type"]))
        return {"rows": rows}

    def final_through(self) -> int | None:
        """Start of the window after the newest final one (windows before it are final);
        None once every input ended (all final) or before any input spoke."""
        mark = self.watermark
        if mark >= POS_INF or mark <= NEG_INF:
            return None
        return mark - mark % self.size_ms

    def manifest(self, made_ms: int, snapshot_keys: Mapping[str, str], grace_ms: int,
                 final_through_at_ms: int | None = None) -> dict:
        """``final_through_at_ms``: when (wall clock, passed in) the watermark reached
        ``final_through``, so that readers can tell how long a closed window took to appear."""
        final_through = self.final_through()
        open_starts = sorted({s for b in self._buckets.values() for s in b.partial_minutes})
        return {"version": MANIFEST_VERSION, "made_at": iso(made_ms),
                "watermark": iso(self.watermark),
                "ended": self.watermark >= POS_INF,
                "windows": {"size": duration_label(self.size_ms),
                            "final_through": iso(final_through),
                            "final_through_at": (iso(final_through_at_ms)
                                                 if final_through is not None else None),
                            "open": [iso(s) for s in open_starts]},
                "snapshots": dict(snapshot_keys),
                "snapshot_grace_seconds": grace_ms // 1000}


def _overall_top(views: Iterable[Mapping[tuple[str, str, str], int]], n: int):
    """The n busiest threads over buckets covering disjoint forums (all types summed)."""
    from .trending import TrendingThread

    per_thread: dict[tuple[str, str], int] = {}
    get = per_thread.get
    for threads in views:
        for (forum, thread, _kind), count in threads.items():
            per_thread[(forum, thread)] = get((forum, thread), 0) + count
    best = heapq.nsmallest(n, per_thread.items(), key=lambda kv: (-kv[1], kv[0]))
    return [TrendingThread(f, t, c, rank) for rank, ((f, t), c) in enumerate(best, start=1)]
