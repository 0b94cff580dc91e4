"""Hourly and daily rollups rebuilt from the written files of the level below.

Built from what is durably written (not from memory), so a crash of any task cannot lose or
double a rollup: a rollup object is always the sum of the finer objects of its bucket. A small
checkpoint object per bucket (``_state/rollups-partNNNN.json``) remembers up to where rollups are
complete, so a restarted sink catches up with every period the watermark passed meanwhile.

Any rollup sizes WindowSettings accepts work, built as the engine builds them
(``windows.level_plan``): each from the largest smaller level whose size divides it, so
(15m, 1h) builds 1h from 15m files and (1h, 90m) builds 90m from the base windows; a rollup
sums exactly the finer files whose windows start inside its period.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from . import keys
from .distinct import merge_sketches, summarize
from .engine import WindowResult
from .parquet import META_PREFIX
from .sink import WindowSink, get_all
from .stores import Store, StoreNotFound
from .windows import level_plan

HOUR_MS = 3_600_000  # object keys are partitioned by the hour of the window start
REVISION_META = f"{META_PREFIX}revision".encode()
COUNT_DATASETS = ("thread_counts", "forum_counts")  # what WindowSink.write_windows writes
USER_DATASETS = ("thread_users", "forum_users")  # what WindowSink.write_users writes


class StoreRollups:
    def __init__(self, store: Store, part: int, base_ms: int, sizes_ms: tuple[int, ...]) -> None:
        self.store = store
        self.part = part
        sizes, sources = level_plan(base_ms, sizes_ms)
        self.levels = sizes
        # rollup size -> the size it is built from, ascending (a source before its rollups)
        self._source = {size: sizes[src] for size, src in zip(sizes, sources, strict=True)
                        if src is not None}
        self.sink = WindowSink(store, part)
        self._state_key = keys.state_key("rollups", part)
        self._through = self._load()  # per rollup size: periods ending at or before are built
        self._latest_start: int | None = None  # latest base window written by this process
        # hour prefix -> (hour, this bucket's keys under it): listed once, then kept up to
        # date by note_written (a bucket has one writer, its sink task), so a rebuild lists
        # nothing; hours no rollup can need any more are dropped (see advance)
        self._listed: dict[str, tuple[int, set[str]]] = {}

    def on_written(self, size_ms: int, start_ms: int) -> list[tuple[int, int]]:
        """A window of ``size_ms`` was (re)written: return the (size, start) of the periods
        above it that were already built and so must be rebuilt (``rebuild`` each)."""
        if size_ms == self.levels[0]:
            self._latest_start = max(self._latest_start or start_ms, start_ms)
        stale = []
        for upper, lower in self._source.items():
            if lower != size_ms:
                continue
            period = start_ms - start_ms % upper
            if period + upper <= self._through.get(upper, -1):
                stale.append((upper, period))
        return stale

    def note_written(self, size_ms: int, start_ms: int, datasets: tuple[str, ...]) -> None:
        """This bucket's objects of ``datasets`` for one window were written."""
        for dataset in datasets:
            listed = self._listed.get(keys.window_prefix(dataset, size_ms, start_ms))
            if listed is not None:
                listed[1].add(keys.window_key(dataset, size_ms, start_ms, self.part))

    def rebuild(self, size_ms: int, start_ms: int) -> list[tuple[int, int]]:
        """Rebuild one period from the files below it; returns the periods above it that must
        be rebuilt in turn."""
        self._build(size_ms, start_ms)
        return self.on_written(size_ms, start_ms)

    def advance(self, watermark: int) -> None:
        """Build every period of every rollup level that the watermark completed."""
        if self._latest_start is None:  # nothing written by this process yet: ask the store
            self._latest_start = self._last_written()
        last = self._latest_start
        if last is None:
            return  # no data in this bucket at all: nothing to build, nothing to record
        changed = False
        for upper, lower in self._source.items():
            through = self._through.get(upper)
            target = watermark - watermark % upper  # periods ending at or before are complete
            if through is None:  # no checkpoint: start at the earliest lower object
                through = self._first_written(lower, upper)
                if through is None:
                    continue  # nothing of the level below yet: nothing to build or record
            # Periods after the latest written data are empty: an end-of-input watermark
            # (+infinity) must not walk through them, and the checkpoint must not claim them
            # built either (``min``): a restart, or a new run into the same output after an
            # end of input, may still write minutes there, and those periods must then be
            # built when complete (not skipped, and not built early by ``on_written``).
            period = through
            while period + upper <= target and period <= last:
                self._build(upper, period)
                period += upper
            # never below ``through``: a watermark from before the data (-infinity while no
            # input has spoken) must not move the checkpoint back to the year -146 million
            done = max(through, min(target, period))
            if self._through.get(upper) != done:
                self._through[upper] = done
                changed = True
        self._forget_listings(watermark)
        if changed:
            self.store.put(self._state_key, orjson.dumps(
                {str(k): v for k, v in self._through.items()}), "application/json")

    def _forget_listings(self, watermark: int) -> None:
        """Drop listings older than the largest rollup before the watermark: a rebuild that
        still needs one (a restatement that late) lists it again."""
        horizon = watermark - max(self.levels) - HOUR_MS
        for prefix in [p for p, (hour, _keys) in self._listed.items() if hour < horizon]:
            del self._listed[prefix]

    def _build(self, size_ms: int, start_ms: int) -> None:
        lower = self._source[size_ms]
        tables, revision = [], 0
        for data in get_all(self.store, self._part_keys("thread_counts", lower, start_ms,
                                                         size_ms)):
            table, file_revision = _read(data, ["forum", "thread", "type", "count"])
            tables.append(table)
            revision += file_revision
        if not tables:
            return
        # Summed in Python: Table.group_by loads pyarrow.dataset and pandas (~50 MB resident)
        table = pa.concat_tables(tables)
        counts: dict[tuple[str, str, str], int] = {}
        for key, n in zip(zip(table["forum"].to_pylist(), table["thread"].to_pylist(),
                              table["type"].to_pylist(), strict=True),
                          table["count"].to_pylist(), strict=True):
            counts[key] = counts.get(key, 0) + n
        self.sink.write_windows([WindowResult(size_ms, start_ms, revision, True, counts)])
        self.note_written(size_ms, start_ms, COUNT_DATASETS)
        self._build_users(size_ms, start_ms, lower)

    def _build_users(self, size_ms: int, start_ms: int, lower: int) -> None:
        """Distinct users of the period: the union of the finer windows' sketches per key."""
        merged: dict[str, dict] = {}
        revision = 0
        for dataset, key_columns in (("thread_users", ["forum", "thread"]),
                                     ("forum_users", ["forum"])):
            tables = []
            for data in get_all(self.store, self._part_keys(dataset, lower, start_ms, size_ms)):
                table, file_revision = _read(data, [*key_columns, "users_sketch"])
                tables.append(table)
                revision += file_revision
            groups: dict[tuple, list[bytes]] = {}
            if tables:
                table = pa.concat_tables(tables)
                keys_ = zip(*(table[c].to_pylist() for c in key_columns), strict=True)
                for key, sketch in zip(keys_, table["users_sketch"].to_pylist(), strict=True):
                    groups.setdefault(key, []).append(sketch)
            merged[dataset] = groups
        if not merged["thread_users"]:
            return

        def rows(groups: dict[tuple, list[bytes]]) -> list:
            out = []
            for key, sketches in groups.items():
                d = summarize(merge_sketches(sketches))
                out.append((key[0], key[1] if len(key) > 1 else None, d.estimate,
                            d.lower_bound, d.upper_bound, d.sketch))
            return out

        self.sink.write_users(size_ms, start_ms, revision, rows(merged["thread_users"]),
                              rows(merged["forum_users"]))
        self.note_written(size_ms, start_ms, USER_DATASETS)

    def _part_keys(self, dataset: str, lower: int, start_ms: int, size_ms: int) -> list[str]:
        """This bucket's ``lower`` objects of the windows starting in the period."""
        suffix = f"-part{self.part:04d}.parquet"
        end = start_ms + size_ms
        # one listing per hour prefix the period touches, or per lower window when those are
        # whole hours (a period is aligned to its own size, so to ``lower`` too)
        step = lower if lower % HOUR_MS == 0 else HOUR_MS
        found = []
        for moment in range(start_ms - start_ms % step, end, step):
            prefix = keys.window_prefix(dataset, lower, moment)
            if prefix not in self._listed:
                self._listed[prefix] = (moment - moment % HOUR_MS, {
                    k for k in self.store.list(prefix) if k.endswith(suffix)})
            found += sorted(k for k in self._listed[prefix][1]
                            if start_ms <= _start_from_key(k) < end)
        return found

    def _first_written(self, lower: int, upper: int) -> int | None:
        """Without a checkpoint, start at the earliest period holding a finer object."""
        prefix = keys.dataset_prefix("thread_counts", lower)
        suffix = f"-part{self.part:04d}.parquet"
        for key in self.store.list(prefix):
            if key.endswith(suffix):
                start = _start_from_key(key)
                return start - start % upper
        return None

    def _last_written(self) -> int | None:
        """Start of the latest base window of this bucket in the store (None: none at all)."""
        prefix = keys.dataset_prefix("thread_counts", self.levels[0])
        suffix = f"-part{self.part:04d}.parquet"
        found = [k for k in self.store.list(prefix) if k.endswith(suffix)]
        return max(map(_start_from_key, found)) if found else None

    def _load(self) -> dict[int, int]:
        try:
            return {int(k): v for k, v in orjson.loads(self.store.get(self._state_key)).items()}
        except StoreNotFound:
            return {}


def _read(data: bytes, columns: list[str]) -> tuple[pa.Table, int]:
    """One finer file: its columns and its revision (one parse of the footer)."""
    parquet = pq.ParquetFile(pa.BufferReader(data))
    meta = parquet.schema_arrow.metadata or {}
    revision = orjson.loads(meta.get(REVISION_META, b"1"))
    return parquet.read(columns=columns), int(revision)


def _start_from_key(key: str) -> int:
    from datetime import datetime, timezone

    stamp = key.rsplit("/", 1)[-1].split("-")[2]  # thread_counts-1m-20260101T1305Z-part0000
    moment = datetime.strptime(stamp, "%Y%m%dT%H%MZ").replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)
