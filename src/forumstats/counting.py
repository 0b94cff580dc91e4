"""Per-bucket counting state of the WindowCountBolt, with Storm's ack bookkeeping (pure).

Each input is a batch's partial counts for one key bucket, identified by its source
(topic-partition) and offset range. Exactness rules:

* A range already folded into a window is not counted again (a replay after a failure or a
  timeout); the replayed tuple instead waits for that window's next write, so the window is
  written again (same content, same key) before the replay is acked.
* An input is acked only after every window it touched has been emitted for writing, and the
  emission is anchored to it, so the Storm tuple tree completes only when the file is written.
* Rows for a window past its allowed lateness are returned as too late, never dropped.
* After a restart, a window touched for the first time is first restored from what was
  written for it (counts, revision and the offset ranges folded in, from the file's metadata),
  so a replay of ranges already in the file is recognised and a window is never rewritten
  with less than it held.
* A window's folded ranges (and its last emitted content) are kept after the watermark passes
  its end + allowed lateness until ``retain_ms`` of wall-clock time has passed since an input
  last touched it (the bolt passes twice ``topology.message.timeout.secs``): a replay of a
  counted range (a sink write timed out, a bolt worker died) can arrive long after event time
  raced ahead, and must be recognised as a replay (the window is rewritten, same content),
  not reported too late.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from .distinct import DistinctResult
from .engine import WindowEngine, WindowResult
from .packing import Packed, unpack
from .settings import WindowSettings
from .watermarks import POS_INF

Range = tuple[int, int]
END_OF_INPUT = 2**62  # max_ts of the marker a bounded source sends when it is exhausted
# max_ts of the marker a source sends for an input that is caught up with its end and quiet:
# only then does a counting task stop waiting for it (see WatermarkTracker, idle_by_silence)
INPUT_IDLE = -(2**62)


class SourceChain:
    """The offset ranges of one source (a partition) counted since its floor, the committed
    offset the spout sends along (everything below it is written).

    The source's event time for the watermark is the highest of the *contiguous* chain of
    ranges from the floor: a batch that failed (a store read failed) or was lost with a dead
    worker leaves a gap until its replay arrives, so later batches of the same partition,
    counted meanwhile, cannot push the watermark past the windows the replay still needs.
    Ranges tile a partition (see offsets.py), so contiguity is exact.
    """

    def __init__(self) -> None:
        self.frontier: int | None = None  # the chain covers [floor, frontier)
        self._ahead: dict[int, tuple[int, int | None]] = {}  # start -> (end, max_ts)

    def add(self, floor: int, start: int, end: int, max_ts: int | None) -> int | None:
        """A counted range; returns the highest event time it (or ranges it connected) added
        to the chain, None if the chain did not grow."""
        best = self.raise_floor(floor)
        if end > self.frontier:
            self._ahead[start] = (end, max_ts)
            best = _max(best, self._absorb())
        return best

    def raise_floor(self, floor: int) -> int | None:
        if self.frontier is None or floor > self.frontier:
            self.frontier = floor
        return self._absorb()

    def reaches(self, end: int) -> bool:
        return self.frontier is not None and self.frontier >= end

    def _absorb(self) -> int | None:
        best = None
        while True:
            joinable = [s for s in self._ahead if s <= self.frontier]
            if not joinable:
                return best
            for start in joinable:
                end, max_ts = self._ahead.pop(start)
                self.frontier = max(self.frontier, end)
                best = _max(best, max_ts)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(frozen=True)
class Emission:
    result: WindowResult
    offsets: dict[str, list[Range]]
    anchors: list[str]
    watermark: int
    distinct: DistinctResult | None = None  # distinct users of the window, if any were named


@dataclass(frozen=True)
class WrittenWindow:
    """What an earlier process wrote for a window: the state to restore after a restart."""

    revision: int
    counts: dict[tuple[str, str, str], int]
    offsets: dict[str, list[Range]]
    sketches: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (forum, thread)


@dataclass
class AddOutcome:
    too_late: list[list] = field(default_factory=list)  # rows [start, forum, thread, type, n]
    ack_now: bool = False
    replayed: bool = False


class BucketCounter:
    """Level-0 windows of one key bucket; rollups are built downstream from written files."""

    def __init__(self, settings: WindowSettings,
                 load: Callable[[int], WrittenWindow | None] | None = None,
                 retain_ms: int = 0, idle_by_silence: bool = True) -> None:
        self.engine = WindowEngine(replace(settings, rollup_sizes_ms=()), rolling=False,
                                   idle_by_silence=idle_by_silence)
        self._load = load  # start_ms -> what was written for that window, if anything
        self._checked: set[int] = set()
        self.size_ms = settings.size_ms
        self.lateness = settings.allowed_lateness_ms
        self._folded: dict[int, dict[str, set[Range]]] = {}
        self._waiting: dict[int, list[str]] = {}
        self._remaining: dict[str, int] = {}
        # Last emitted content per window: kept to write a window again for a replay. Packed
        # (forumstats.packing) once the window is past its allowed lateness: from then on it
        # is rarely read but may be held for minutes of wall clock. (Not once every input
        # ended: the run is over, packing would only cost time.)
        self._emitted: dict[int, WindowResult | Packed] = {}
        self._rewrite: set[int] = set()
        self._ended: set[str] = set()  # sources that sent END_OF_INPUT
        self.retain_ms = retain_ms
        self._touched: dict[int, int] = {}  # window start -> now_ms an input last touched it
        self._distinct: dict[int, DistinctResult | Packed] = {}  # latest per window, as above
        self._chains: dict[str, SourceChain] = {}

    def _idle(self, source: str, floor: int, end: int, now_ms: int) -> None:
        """The spout says the source is idle: believe it once every batch it handed out since
        the floor has arrived; until then it is alive and holds the watermark."""
        if floor < 0:  # a marker without offsets: nothing to check
            self.engine.watermarks.mark_idle(source, now_ms)
            return
        chain = self._chains.setdefault(source, SourceChain())
        grown = chain.raise_floor(floor)
        if grown is not None:
            self.engine.watermarks.observe(source, grown, now_ms)
        if chain.reaches(end):
            self.engine.watermarks.mark_idle(source, now_ms)
        else:
            self.engine.watermarks.observe(source, None, now_ms, data=False)

    def add(self, tuple_id: str, source: str, first: int, last: int, max_ts: int | None,
            rows: Iterable[list], now_ms: int, users: Iterable[list] = (),
            span: list | tuple | None = None) -> AddOutcome:
        """``rows``: [start, forum, thread, type, n]; ``users``: [start, forum, thread, [ids]]
        (counted into HLL sketches, which a replay cannot inflate); ``span``: the batch's
        [floor, start, end] (see SourceChain; without it max_ts counts at once).
        An INPUT_IDLE marker carries floor and end of what was handed out in first/last."""
        if max_ts is not None and max_ts >= END_OF_INPUT:
            self._ended.add(source)
            self.engine.watermarks.end(source)
            return AddOutcome(ack_now=True)
        if max_ts is not None and max_ts <= INPUT_IDLE:
            if source not in self._ended:
                self._idle(source, first, last, now_ms)
            return AddOutcome(ack_now=True)
        rows = list(rows)
        if self._load is not None:
            # Restore every window this input touches before changing anything (watermark
            # included): if the store cannot be read, the caller fails the tuple and the
            # replay finds everything as it was.
            cutoff = self.engine.late_cutoff()
            for start in sorted({row[0] for row in rows}):
                if start not in self._checked and start > cutoff:
                    self._restore(start)
        if source not in self._ended:
            # A bounded source sends END once all is cut, with batches possibly still in
            # flight: a replay after END must not revive it (WatermarkTracker.observe would
            # un-end it, and it would hold the watermark back below end-of-input for good).
            if span is not None:
                floor, start, end = span
                max_ts = self._chains.setdefault(source, SourceChain()).add(floor, start, end,
                                                                            max_ts)
            self.engine.watermarks.observe(source, max_ts, now_ms, data=first >= 0)
        out = AddOutcome()
        cutoff = self.engine.late_cutoff()
        span = (first, last)
        by_window: dict[int, dict] = {}
        for start, forum, thread, kind, n in rows:
            by_window.setdefault(start, {})[(start, forum, thread, kind)] = n
        touched = 0
        new_windows: set[int] = set()
        for start, partial in by_window.items():
            folded = self._folded.get(start, {}).get(source)
            if folded is not None and span in folded:  # a replay: never count twice
                out.replayed = True
                if start in self._emitted:
                    self._rewrite.add(start)
            elif start <= cutoff:
                out.too_late.extend([*key, n] for key, n in partial.items())
                continue
            else:
                self._folded.setdefault(start, {}).setdefault(source, set()).add(span)
                self.engine.add_partial(partial)
                new_windows.add(start)
            self._waiting.setdefault(start, []).append(tuple_id)
            self._touched[start] = now_ms
            touched += 1
        named = {(start, forum, thread): names for start, forum, thread, names in users
                 if start in new_windows}
        if named:
            self.engine.add_users(named)
        if touched:
            self._remaining[tuple_id] = touched
        else:
            out.ack_now = True
        return out

    def advance(self, now_ms: int, restate: bool = True) -> tuple[list[Emission], list[str]]:
        """Windows to write now (final, restated, or re-written for a replay) and the input
        tuple ids that may be acked once those emissions are anchored to them. With
        ``restate=False`` only windows that became final are written; restatements and
        replays' re-writes wait for a call with ``restate=True`` (each whole window is
        written once however many late batches it got in between)."""
        results = self.engine.advance(now_ms, restate)
        fresh = {d.start_ms: d for d in self.engine.drain_distinct()}
        self._distinct.update(fresh)
        watermark = self.engine.watermark
        emissions = []
        for result in results:
            start = result.start_ms
            self._emitted[start] = result
            self._rewrite.discard(start)
            emissions.append(self._emission(result, watermark, unpack(self._distinct.get(start))))
        if restate:
            for start in sorted(self._rewrite):
                emissions.append(self._emission(unpack(self._emitted[start]), watermark,
                                                unpack(self._distinct.get(start))))
            self._rewrite.clear()
        acks = []
        for emission in emissions:
            for tuple_id in emission.anchors:
                self._remaining[tuple_id] -= 1
                if self._remaining[tuple_id] == 0:
                    del self._remaining[tuple_id]
                    acks.append(tuple_id)
        self._purge(watermark, now_ms)
        return emissions, acks

    def _restore(self, start: int) -> None:
        if start in self._folded:
            self._checked.add(start)
            return
        written = self._load(start)  # may raise: then not checked, the replay tries again
        self._checked.add(start)
        if written is None:
            return
        self.engine.restore(start, written.counts, written.revision)
        if written.sketches:
            self.engine.distinct.add_sketches(
                {(start, forum, thread): data for (forum, thread), data
                 in written.sketches.items()}, cutoff=start - 1)
        self._folded[start] = {src: {tuple(r) for r in spans}
                               for src, spans in written.offsets.items()}
        self._emitted[start] = WindowResult(self.size_ms, start, written.revision, True,
                                            dict(written.counts))

    def _emission(self, result: WindowResult, watermark: int,
                  distinct: DistinctResult | None) -> Emission:
        start = result.start_ms
        offsets = {src: sorted(spans) for src, spans in sorted(self._folded.get(start, {}).items())}
        return Emission(result, offsets, self._waiting.pop(start, []), watermark, distinct)

    def _purge(self, watermark: int, now_ms: int) -> None:
        if watermark >= POS_INF:
            return  # every input ended: keep what was folded, so a late replay is recognised
        for start in [s for s in self._folded if s + self.size_ms + self.lateness <= watermark
                      and now_ms - self._touched.get(s, now_ms - self.retain_ms)
                      >= self.retain_ms and s not in self._waiting]:
            self._folded.pop(start, None)
            self._emitted.pop(start, None)
            self._touched.pop(start, None)
            self._distinct.pop(start, None)
        self._checked = {s for s in self._checked if s + self.size_ms + self.lateness > watermark}
        for retained in (self._emitted, self._distinct):
            for start, value in retained.items():
                if type(value) is not Packed and start + self.size_ms + self.lateness <= watermark:
                    retained[start] = Packed(value)

    def held_tuples(self) -> int:
        return len(self._remaining)
