"""In-process pipeline: source -> validation -> windows -> Parquet, with progress and summary.

This adapter owns the clock: it reads wall-clock time and passes it into the pure core.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .deadletters import DeadLetter
from .engine import WindowEngine
from .events import Event, parse_event
from .settings import Settings
from .sink import WindowSink
from .sources import Batch
from .stores import Store
from .windows import preaggregate

DEAD_LETTER_FLUSH = 10_000


@dataclass
class RunStats:
    records: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    windows_written: int = 0
    restatements: int = 0
    watermark_ms: int | None = None
    elapsed_s: float = 0.0


class Pipeline:
    """One input, one engine, one sink: the embedded default of ``forumstats run``."""

    def __init__(self, settings: Settings, store: Store, source_name: str,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.settings = settings
        self.engine = WindowEngine(settings.windows)
        self.sink = WindowSink(store)
        self.source_name = source_name
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.stats = RunStats()
        self._dead: list[DeadLetter] = []

    def process(self, batch: Batch) -> None:
        now = self.clock_ms()
        on_time = self._drop_too_late(self._validate(batch, now), now)
        partial, max_ts = preaggregate(on_time, self.settings.windows.size_ms)
        self.engine.add_partial(partial)
        self.stats.accepted += len(on_time)
        self.engine.watermarks.observe(self.source_name, max_ts, now)
        self._emit(now)

    def finish(self) -> RunStats:
        """End of a bounded input: close every window and write everything."""
        self.engine.watermarks.end(self.source_name)
        self._emit(self.clock_ms())
        self._flush_dead_letters()
        return self.stats

    def _validate(self, batch: Batch, now: int) -> list[tuple[Event, bytes, int]]:
        contract = self.settings.contract
        accepted = []
        for raw, pos in batch:
            result = parse_event(raw, contract)
            if type(result) is Event:
                accepted.append((result, raw, pos))
            else:
                self._reject(result.reason, result.detail, raw, pos, now)
        self.stats.records += len(batch)
        return accepted

    def _drop_too_late(self, events: list[tuple[Event, bytes, int]], now: int) -> list[Event]:
        """Events whose window is past its allowed lateness go to the dead letters."""
        cutoff = self.engine.late_cutoff()
        size = self.settings.windows.size_ms
        on_time = []
        for ev, raw, pos in events:
            if ev.ts_ms - ev.ts_ms % size <= cutoff:
                self._reject("too_late", f"window of ts {ev.ts_ms} closed for good (watermark "
                             f"{self.engine.watermark})", raw, pos, now)
            else:
                on_time.append(ev)
        return on_time

    def _reject(self, reason: str, detail: str, raw: bytes, pos: int, now: int) -> None:
        self.stats.rejected[reason] += 1
        self._dead.append(DeadLetter(reason, detail, raw, self.source_name, None, None, pos, now))
        if len(self._dead) >= DEAD_LETTER_FLUSH:
            self._flush_dead_letters()

    def _emit(self, now: int) -> None:
        results = self.engine.advance(now)
        if results:
            self.sink.write_windows(results)
        self.stats.windows_written = self.sink.stats.windows_written
        self.stats.restatements = self.sink.stats.restatements
        self.stats.watermark_ms = self.engine.watermark

    def _flush_dead_letters(self) -> None:
        self.sink.write_dead_letters(self._dead)
        self._dead = []


def run_pipeline(pipeline: Pipeline, batches: Iterable[Batch],
                 on_progress: Callable[[RunStats], None] | None = None) -> RunStats:
    started = time.monotonic()
    for batch in batches:
        pipeline.process(batch)
        pipeline.stats.elapsed_s = time.monotonic() - started
        if on_progress:
            on_progress(pipeline.stats)
    stats = pipeline.finish()
    stats.elapsed_s = time.monotonic() - started
    return stats
