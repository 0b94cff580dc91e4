"""StoreRollups over a LocalStore in tmp_path: hourly and daily files rebuilt from the written
files of the level below, a checkpoint in ``_state/``, restatements, restarts, end of input.

Each test drives it as ParquetSinkBolt does: write a window file, ``on_written``, then
``advance`` with the watermark carried by the window's tuple, then ``rebuild`` the periods
``on_written`` named (the sink's follow-up jobs), and those they name in turn.
"""

from __future__ import annotations

import io
import random
from collections import Counter

import orjson
import pyarrow.parquet as pq
import pytest

from forumstats import keys
from forumstats.counting import END_OF_INPUT
from forumstats.engine import WindowResult
from forumstats.parquet import read_metadata
from forumstats.rollups import COUNT_DATASETS, StoreRollups
from forumstats.sink import WindowSink
from forumstats.stores import LocalStore, StoreNotFound

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
D0 = 1_767_225_600_000  # 2026-01-01T00:00Z
PART = 3


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "out")


class Bucket:
    """One sink bucket: its rollups and what was written, with the same store."""

    def __init__(self, store, part: int = PART) -> None:
        self.store = store
        self.part = part
        self.sink = WindowSink(store, part)
        self.rollups = StoreRollups(store, part, MIN, (HOUR, DAY))
        self.revisions: Counter = Counter()

    def write(self, start: int, counts: dict, watermark: int) -> None:
        self.revisions[start] += 1
        self.sink.write_windows([WindowResult(MIN, start, self.revisions[start], True, counts)])
        self.rollups.note_written(MIN, start, COUNT_DATASETS)
        stale = self.rollups.on_written(MIN, start)
        self.rollups.advance(watermark)
        rebuild_all(self.rollups, stale)


def rebuild_all(rollups: StoreRollups, stale: list[tuple[int, int]]) -> None:
    while stale:
        stale = stale[1:] + rollups.rebuild(*stale[0])


def written(rollups: StoreRollups, size: int, start: int) -> None:
    rollups.note_written(size, start, COUNT_DATASETS)
    rebuild_all(rollups, rollups.on_written(size, start))


def read(store, dataset: str, size: int, start: int, part: int = PART) -> dict | None:
    try:
        data = store.get(keys.window_key(dataset, size, start, part))
    except StoreNotFound:
        return None
    table = pq.read_table(io.BytesIO(data)).to_pylist()
    if dataset == "thread_counts":
        return {(r["forum"], r["thread"], r["type"]): r["count"] for r in table}
    return {(r["forum"], r["type"]): r["count"] for r in table}


def total(dicts) -> dict:
    out: Counter = Counter()
    for d in dicts:
        out.update(d)
    return dict(out)


def forum_level(counts: dict) -> dict:
    out: Counter = Counter()
    for (forum, _thread, kind), n in counts.items():
        out[(forum, kind)] += n
    return dict(out)


def random_counts(rnd: random.Random) -> dict:
    return {(rnd.choice("abc"), rnd.choice("123"), rnd.choice(("vote", "comment"))):
            rnd.randint(1, 9) for _ in range(rnd.randint(1, 4))}


def test_hour_file_is_the_sum_of_its_minute_files_and_day_the_sum_of_hours(store):
    rnd = random.Random(1)
    b = Bucket(store)
    minutes: dict[int, dict] = {}
    for start in range(D0 + 22 * HOUR, D0 + DAY + 2 * HOUR, 7 * MIN):  # across midnight
        minutes[start] = random_counts(rnd)
        b.write(start, minutes[start], watermark=start + MIN + 30_000)
    b.rollups.advance(D0 + DAY + 2 * HOUR + 30_000)
    hours = sorted({s - s % HOUR for s in minutes})
    for hour in hours:
        want = total(c for s, c in minutes.items() if s - s % HOUR == hour)
        assert read(store, "thread_counts", HOUR, hour) == want, hour
        assert read(store, "forum_counts", HOUR, hour) == forum_level(want)
    day0 = total(c for s, c in minutes.items() if s < D0 + DAY)
    assert read(store, "thread_counts", DAY, D0) == day0
    assert read(store, "forum_counts", DAY, D0) == forum_level(day0)
    assert read(store, "thread_counts", DAY, D0 + DAY) is None  # day 2 not complete yet
    # only this bucket's part: another part's files are not summed in
    assert read(store, "thread_counts", HOUR, hours[0], part=PART + 1) is None


def test_an_hour_is_not_built_before_the_watermark_completes_it(store):
    b = Bucket(store)
    b.write(D0, {("a", "1", "vote"): 1}, watermark=D0 + MIN)
    b.write(D0 + 59 * MIN, {("a", "1", "vote"): 2}, watermark=D0 + HOUR - 1)
    assert read(store, "thread_counts", HOUR, D0) is None
    b.rollups.advance(D0 + HOUR)
    assert read(store, "thread_counts", HOUR, D0) == {("a", "1", "vote"): 3}


def test_other_parts_files_are_ignored(store):
    mine, other = Bucket(store, PART), Bucket(store, PART + 1)
    other.write(D0 + MIN, {("z", "9", "vote"): 100}, watermark=D0 + 2 * MIN)
    mine.write(D0, {("a", "1", "vote"): 1}, watermark=D0 + HOUR)
    assert read(store, "thread_counts", HOUR, D0, PART) == {("a", "1", "vote"): 1}


def test_restating_a_minute_after_its_hour_was_built_rebuilds_hour_and_day(store):
    b = Bucket(store)
    b.write(D0 + 5 * MIN, {("a", "1", "vote"): 1}, watermark=D0 + 6 * MIN)
    b.write(D0 + HOUR, {("a", "1", "vote"): 10}, watermark=D0 + DAY + MIN)  # completes day 0
    assert read(store, "thread_counts", HOUR, D0) == {("a", "1", "vote"): 1}
    assert read(store, "thread_counts", DAY, D0) == {("a", "1", "vote"): 11}
    hour_rev = read_metadata(store.get(keys.window_key("thread_counts", HOUR, D0, PART)))
    # the restatement (allowed lateness long past here, but the sink just writes what it gets)
    b.write(D0 + 5 * MIN, {("a", "1", "vote"): 4, ("b", "2", "comment"): 1},
            watermark=D0 + DAY + 2 * MIN)
    assert read(store, "thread_counts", HOUR, D0) == {("a", "1", "vote"): 4,
                                                      ("b", "2", "comment"): 1}
    assert read(store, "thread_counts", DAY, D0) == {("a", "1", "vote"): 14,
                                                     ("b", "2", "comment"): 1}
    assert read(store, "forum_counts", DAY, D0) == {("a", "vote"): 14, ("b", "comment"): 1}
    new_rev = read_metadata(store.get(keys.window_key("thread_counts", HOUR, D0, PART)))
    assert new_rev["revision"] > hour_rev["revision"]


def test_checkpoint_survives_a_restart_and_hours_passed_meanwhile_are_caught_up(store):
    b = Bucket(store)
    b.write(D0 + 10 * MIN, {("a", "1", "vote"): 1}, watermark=D0 + HOUR + MIN)
    assert read(store, "thread_counts", HOUR, D0) == {("a", "1", "vote"): 1}
    state = orjson.loads(store.get(keys.state_key("rollups", PART)))
    assert state == {str(HOUR): D0 + HOUR, str(DAY): D0}
    # the process dies; minutes of later hours get written without rollups (a crash between
    # the window write and the rollup step, hour after hour)
    sink = WindowSink(store, PART)
    for h in (1, 2, 3):
        sink.write_windows([WindowResult(MIN, D0 + h * HOUR + 7 * MIN, 1, True,
                                         {("a", "1", "vote"): 10 * h})])
    restarted = Bucket(store)
    restarted.write(D0 + 4 * HOUR + 1 * MIN, {("a", "1", "vote"): 1000},
                    watermark=D0 + 5 * HOUR)
    for h in (1, 2, 3):
        assert read(store, "thread_counts", HOUR, D0 + h * HOUR) == {("a", "1", "vote"): 10 * h}
    assert read(store, "thread_counts", HOUR, D0 + 4 * HOUR) == {("a", "1", "vote"): 1000}
    state = orjson.loads(store.get(keys.state_key("rollups", PART)))
    assert state[str(HOUR)] == D0 + 5 * HOUR


def test_restart_whose_first_write_is_an_old_window_catches_up_with_the_next_newer_one(store):
    """After a restart the first window written may be an old one (a restatement, or a replay
    after end of input) carrying a watermark far ahead. Hours between the checkpoint and that
    watermark may hold minute files of the previous process: they must not be skipped for good
    (they are built once a newer window is written)."""
    b = Bucket(store)
    b.write(D0 + 10 * MIN, {("a", "1", "vote"): 1}, watermark=D0 + HOUR + MIN)
    sink = WindowSink(store, PART)
    for h in (1, 2):
        sink.write_windows([WindowResult(MIN, D0 + h * HOUR + 7 * MIN, 1, True,
                                         {("a", "1", "vote"): 10 * h})])
    restarted = Bucket(store)
    restarted.write(D0 + 10 * MIN, {("a", "1", "vote"): 1}, watermark=D0 + 3 * HOUR)
    restarted.write(D0 + 3 * HOUR, {("a", "1", "vote"): 7}, watermark=D0 + 3 * HOUR + MIN)
    for h in (1, 2):
        assert read(store, "thread_counts", HOUR, D0 + h * HOUR) == {("a", "1", "vote"): 10 * h}
    assert read(store, "thread_counts", HOUR, D0 + 3 * HOUR) is None


def test_without_checkpoint_rollups_start_at_the_earliest_written_file(store):
    sink = WindowSink(store, PART)
    for h in (30, 31):  # day 1, written before any rollup ran (no checkpoint at all)
        sink.write_windows([WindowResult(MIN, D0 + h * HOUR, 1, True, {("a", "1", "vote"): h})])
    b = Bucket(store)
    b.write(D0 + 32 * HOUR, {("a", "1", "vote"): 1}, watermark=D0 + 2 * DAY)
    assert read(store, "thread_counts", HOUR, D0 + 30 * HOUR) == {("a", "1", "vote"): 30}
    assert read(store, "thread_counts", HOUR, D0 + 31 * HOUR) == {("a", "1", "vote"): 31}
    assert read(store, "thread_counts", DAY, D0 + DAY) == {("a", "1", "vote"): 62}
    assert store.list("thread_counts/window=1h/date=2026-01-01/") == []


def bounded(rollups: StoreRollups, limit: int = 1_000) -> StoreRollups:
    """Turn an endless walk over empty periods into an error instead of a hang."""
    build = rollups._build
    calls = [0]

    def counting(size_ms, start_ms):
        calls[0] += 1
        if calls[0] > limit:
            raise AssertionError(f"more than {limit} periods built: walking to +infinity?")
        build(size_ms, start_ms)

    rollups._build = counting
    return rollups


def test_end_of_input_watermark_builds_the_last_periods_and_stops(store):
    b = Bucket(store)
    bounded(b.rollups)
    b.write(D0 + 5 * MIN, {("a", "1", "vote"): 1}, watermark=D0 + 6 * MIN)
    b.write(D0 + 30 * HOUR, {("a", "1", "vote"): 2}, watermark=END_OF_INPUT)
    assert read(store, "thread_counts", HOUR, D0) == {("a", "1", "vote"): 1}
    assert read(store, "thread_counts", HOUR, D0 + 30 * HOUR) == {("a", "1", "vote"): 2}
    assert read(store, "thread_counts", DAY, D0) == {("a", "1", "vote"): 1}
    assert read(store, "thread_counts", DAY, D0 + DAY) == {("a", "1", "vote"): 2}
    # a replay after the end: rewritten, rollups rebuilt, still no endless walk
    b.write(D0 + 5 * MIN, {("a", "1", "vote"): 1}, watermark=END_OF_INPUT)
    b.rollups.advance(END_OF_INPUT)
    assert read(store, "thread_counts", DAY, D0) == {("a", "1", "vote"): 1}


def test_end_of_input_on_a_restarted_instance_before_any_write_stops(store):
    b = Bucket(store)
    b.write(D0 + 5 * MIN, {("a", "1", "vote"): 1}, watermark=D0 + 6 * MIN)
    restarted = bounded(Bucket(store).rollups)
    restarted.advance(END_OF_INPUT)
    assert read(store, "thread_counts", HOUR, D0) == {("a", "1", "vote"): 1}
    assert read(store, "thread_counts", DAY, D0) == {("a", "1", "vote"): 1}


def test_advance_of_a_bucket_without_any_data_writes_nothing(store):
    rollups = bounded(StoreRollups(store, PART, MIN, (HOUR, DAY)))
    rollups.advance(END_OF_INPUT)
    rollups.advance(D0)
    assert store.list("") == []


def test_a_run_after_end_of_input_still_builds_hours_only_when_complete(store):
    """The checkpoint of a finished bounded run must not claim every future period complete:
    a later run into the same output (or a restart) must not write an hour file for an hour
    whose minutes are still coming."""
    first = Bucket(store)
    first.write(D0 + 5 * MIN, {("a", "1", "vote"): 1}, watermark=END_OF_INPUT)
    state = orjson.loads(store.get(keys.state_key("rollups", PART)))
    assert all(v < D0 + 2 * DAY for v in state.values()), state
    later = Bucket(store)
    later.write(D0 + 3 * HOUR, {("a", "1", "vote"): 5}, watermark=D0 + 3 * HOUR + MIN)
    assert read(store, "thread_counts", HOUR, D0 + 3 * HOUR) is None  # not complete yet
    later.write(D0 + 3 * HOUR + 59 * MIN, {("a", "1", "vote"): 6}, watermark=D0 + 4 * HOUR)
    assert read(store, "thread_counts", HOUR, D0 + 3 * HOUR) == {("a", "1", "vote"): 11}


@pytest.mark.parametrize("sizes", [(15 * MIN, HOUR), (HOUR, 90 * MIN), (DAY, HOUR),
                                   (2 * HOUR, 3 * HOUR, DAY)])
def test_any_rollup_sizes_the_settings_accept_are_sums_of_base_windows(store, sizes):
    """Rollups as WindowSettings accepts them (any multiples of the window, in any order), as
    the engine builds them (``windows.level_plan``): every rollup file is the sum of the base
    windows inside its period, whatever level it is built from."""
    rnd = random.Random(7)
    sink = WindowSink(store, PART)
    rollups = bounded(StoreRollups(store, PART, MIN, sizes))
    minutes: dict[int, dict] = {}
    for start in range(D0 + 20 * HOUR, D0 + DAY + 7 * HOUR, 13 * MIN):
        minutes[start] = random_counts(rnd)
        sink.write_windows([WindowResult(MIN, start, 1, True, minutes[start])])
        written(rollups, MIN, start)
        rollups.advance(start + MIN)
    rollups.advance(D0 + 3 * DAY)

    def check():
        for size in sizes:
            for period in sorted({s - s % size for s in minutes}):
                want = total(c for s, c in minutes.items() if period <= s < period + size)
                assert read(store, "thread_counts", size, period) == want, (size, period)
                assert read(store, "forum_counts", size, period) == forum_level(want)

    check()
    restated = sorted(minutes)[len(minutes) // 2]  # every level above it is complete
    minutes[restated] = {("z", "9", "vote"): 1000}
    sink.write_windows([WindowResult(MIN, restated, 2, True, minutes[restated])])
    written(rollups, MIN, restated)
    check()


def test_a_watermark_from_before_any_data_records_nothing_and_builds_later(store):
    """A window restated from stored state can reach the sink while the counting task's
    watermark is still -infinity (no input has said anything yet). The checkpoint must not move
    to a period long before the data, or the next real watermark walks from there."""
    from forumstats.watermarks import NEG_INF

    b = Bucket(store)
    bounded(b.rollups)
    b.write(D0 + 5 * MIN, {("a", "1", "vote"): 1}, watermark=NEG_INF)
    assert read(store, "thread_counts", HOUR, D0) is None
    b.write(D0 + 70 * MIN, {("a", "1", "vote"): 2}, watermark=D0 + 2 * HOUR)
    assert read(store, "thread_counts", HOUR, D0) == {("a", "1", "vote"): 1}
    assert read(store, "thread_counts", HOUR, D0 + HOUR) == {("a", "1", "vote"): 2}
    restarted = bounded(Bucket(store).rollups)
    restarted.advance(NEG_INF)
    restarted.advance(D0 + 3 * HOUR)
    assert read(store, "thread_counts", HOUR, D0 + HOUR) == {("a", "1", "vote"): 2}


class CountingLists:
    """The store, counting LIST calls."""

    def __init__(self, inner) -> None:
        self.inner, self.lists = inner, 0

    def list(self, prefix: str):
        self.lists += 1
        return self.inner.list(prefix)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_rebuilds_list_each_hour_once_and_see_windows_written_after_that(store):
    counting = CountingLists(store)
    b = Bucket(counting)
    b.write(D0 + 5 * MIN, {("a", "1", "vote"): 1}, watermark=D0 + 2 * HOUR)  # builds hour 0
    after_build = counting.lists
    b.write(D0 + 9 * MIN, {("a", "1", "vote"): 2}, watermark=D0 + 2 * HOUR)  # late: rebuild
    b.write(D0 + 5 * MIN, {("a", "1", "vote"): 4}, watermark=D0 + 2 * HOUR)  # restated
    assert counting.lists == after_build  # the rebuilds listed nothing
    assert read(store, "thread_counts", HOUR, D0) == {("a", "1", "vote"): 6}
    restarted = StoreRollups(store, PART, MIN, (HOUR, DAY))  # a new process lists afresh
    written(restarted, MIN, D0 + 5 * MIN)
    assert read(store, "thread_counts", HOUR, D0) == {("a", "1", "vote"): 6}


def test_listings_older_than_a_day_before_the_watermark_are_dropped_and_relisted(store):
    counting = CountingLists(store)
    b = Bucket(counting)
    b.write(D0 + 5 * MIN, {("a", "1", "vote"): 1}, watermark=D0 + 2 * HOUR)
    cached = counting.lists
    written(b.rollups, MIN, D0 + 5 * MIN)  # hour 0's listing is still held: no LIST
    assert counting.lists == cached
    b.write(D0 + 3 * DAY, {("a", "1", "vote"): 1}, watermark=D0 + 3 * DAY + 2 * HOUR)
    before = counting.lists
    written(b.rollups, MIN, D0 + 5 * MIN)  # a (very late) restatement of hour 0: listed again
    assert counting.lists > before
    assert read(store, "thread_counts", HOUR, D0) == {("a", "1", "vote"): 1}
