"""Rolling totals: exact against brute force, documented coverage, bounded memory."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forumstats.engine import WindowEngine, WindowResult
from forumstats.events import Event
from forumstats.packing import Packed
from forumstats.rolling import RollingTotals
from forumstats.settings import WindowSettings
from forumstats.watermarks import NEG_INF, POS_INF
from forumstats.windows import preaggregate

# abstract units: buckets of 10, coarse buckets of 60, periods 50 / 60 / 240, lateness 60
# (longer than the shortest period, as 5 min lateness + 1 min window is in production)
BUCKET, COARSE, LATENESS = 10, 60, 60
PERIODS = (50, 60, 240)


def small() -> RollingTotals:
    return RollingTotals(BUCKET, COARSE, PERIODS, LATENESS)


def expected_start(end: int, period: int) -> int:
    if period <= COARSE:
        return end - period
    low = end - period
    return low if low % COARSE == 0 else low - low % COARSE + COARSE


def brute(adds: list[tuple[int, dict]], start: int, end: int) -> tuple[dict, dict]:
    threads: Counter = Counter()
    forums: Counter = Counter()
    for s, delta in adds:
        if start <= s < end:
            for key, n in delta.items():
                threads[key] += n
                forums[(key[0], key[2])] += n
    return ({k: n for k, n in threads.items() if n}, {k: n for k, n in forums.items() if n})


KEYS = [(f, t, k) for f in "ab" for t in "123" for k in ("vote", "comment")]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 60))
def test_running_totals_equal_brute_force(seed: int, steps: int) -> None:
    rnd = random.Random(seed)
    rolling = small()
    adds: list[tuple[int, dict]] = []
    watermark = rnd.randint(-100, 100)
    for _ in range(steps):
        if rnd.random() < 0.6:
            # a window final at the watermark, or a restatement within lateness (never older:
            # the engine guarantees it), or (as partial feeds may) one still open
            aligned = watermark - watermark % BUCKET
            start = rnd.randrange(aligned - LATENESS, aligned + 3 * BUCKET, BUCKET)
            delta = {rnd.choice(KEYS): rnd.randint(1, 5) for _ in range(rnd.randint(1, 4))}
            rolling.add(start, delta)
            adds.append((start, delta))
        else:
            watermark += rnd.choice((0, 1, 7, BUCKET, 3 * BUCKET, COARSE, 5 * COARSE, 1000))
            rolling.advance(watermark)
        end = rolling.end_ms
        if end is None:
            continue
        assert end == watermark - watermark % BUCKET
        for period in PERIODS:
            snap = rolling.totals(period)
            assert (snap.start_ms, snap.end_ms) == (expected_start(end, period), end)
            assert (dict(snap.threads), dict(snap.forums)) == brute(adds, snap.start_ms, end)
    # memory: buckets older than the retention are gone
    if rolling.end_ms is not None:
        assert all(s >= rolling.end_ms - 60 - LATENESS - 2 * BUCKET for s in rolling._fine)
        assert all(c >= rolling.end_ms - 240 - 2 * COARSE for c in rolling._coarse)


def test_24h_covers_23_full_hours_plus_the_current_part_hour() -> None:
    hour, minute = 3_600_000, 60_000
    rolling = RollingTotals()
    base = 1_767_225_600_000  # 2026-01-01T00:00Z
    for m in range(0, 26 * 60, 30):  # an event every 30 minutes for 26 hours
        rolling.add(base + m * minute, {("f", "t", "vote"): 1})
    rolling.advance(base + 25 * hour + 30 * minute + 5_000)
    day = rolling.totals(86_400_000)
    assert day.end_ms == base + 25 * hour + 30 * minute
    assert day.start_ms == base + 2 * hour  # 23 full hours + 30 minutes
    assert day.threads == {("f", "t", "vote"): 47}
    last_hour = rolling.totals(hour)
    assert (last_hour.start_ms, last_hour.threads) == (base + 24 * hour + 30 * minute,
                                                       {("f", "t", "vote"): 2})
    rolling.advance(base + 26 * hour)  # on the hour: exactly 24 hours
    day = rolling.totals(86_400_000)
    assert (day.start_ms, day.end_ms) == (base + 2 * hour, base + 26 * hour)
    assert day.forum_totals() == {"f": 48}


def test_infinite_watermark_ends_at_the_data() -> None:
    rolling = small()
    rolling.advance(NEG_INF)
    assert rolling.end_ms is None
    assert rolling.totals(50).threads == {}
    rolling.add(100, {("f", "t", "vote"): 2})
    rolling.add(130, {("f", "u", "vote"): 1})
    rolling.advance(POS_INF)
    snap = rolling.totals(50)
    assert (snap.start_ms, snap.end_ms) == (90, 140)
    assert snap.thread_totals() == {("f", "t"): 2, ("f", "u"): 1}


def test_totals_decay_on_a_quiet_stream() -> None:
    rolling = small()
    rolling.add(0, {("f", "t", "vote"): 1})
    rolling.advance(10)
    assert rolling.totals(50).threads == {("f", "t", "vote"): 1}
    rolling.advance(60)
    assert rolling.totals(50).threads == {}
    assert rolling.totals(240).threads == {("f", "t", "vote"): 1}


def test_update_replaces_by_revision() -> None:
    rolling = small()
    key = ("f", "t", "vote")
    assert rolling.update(WindowResult(BUCKET, 0, 0, False, {key: 1}))  # partial
    assert rolling.update(WindowResult(BUCKET, 0, 1, True, {key: 3}))  # final
    assert not rolling.update(WindowResult(BUCKET, 0, 0, False, {key: 2}))  # stale partial
    rolling.advance(10)
    assert rolling.totals(50).threads == {key: 3}
    assert rolling.update(WindowResult(BUCKET, 0, 2, True, {key: 4, ("f", "u", "vote"): 1}))
    assert rolling.totals(50).threads == {key: 4, ("f", "u", "vote"): 1}
    assert not rolling.update(WindowResult(BUCKET, 0, 1, True, {key: 3}))  # older revision
    assert not rolling.update(WindowResult(COARSE, 0, 1, True, {key: 9}))  # not a base window
    assert rolling.totals(50).threads == {key: 4, ("f", "u", "vote"): 1}


def test_bad_configuration_and_queries() -> None:
    with pytest.raises(ValueError):
        RollingTotals(60_000, 90_000)
    with pytest.raises(ValueError):
        small().totals(123)
    with pytest.raises(ValueError):
        small().add(5, {("f", "t", "vote"): 1})


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32))
def test_engine_rolling_totals_equal_events_in_range(seed: int) -> None:
    rnd = random.Random(seed)
    ws = WindowSettings()
    engine = WindowEngine(ws)
    t = 1_767_225_600_000
    events = []
    for _ in range(rnd.randint(1, 120)):
        t += rnd.choice((rnd.randint(0, 20_000), rnd.randint(0, 1_800_000)))
        events.append(Event(rnd.choice(("vote", "comment")), rnd.choice("ab"),
                            rnd.choice("123"), t - rnd.randint(0, 200_000)))
    accepted = []
    for i in range(0, len(events), 5):
        batch = [e for e in events[i:i + 5] if e.ts_ms - e.ts_ms % ws.size_ms
                 > engine.late_cutoff()]
        accepted += batch
        partial, max_ts = preaggregate(batch, ws.size_ms)
        engine.add_partial(partial)
        engine.watermarks.observe("p0", max_ts, 0)
        engine.advance(0)
        for period in (300_000, 3_600_000, 86_400_000):
            snap = engine.rolling_totals(period)
            if snap.end_ms is None:
                continue
            assert snap.end_ms == engine.watermark - engine.watermark % ws.size_ms
            want = Counter((e.forum, e.thread, e.type) for e in accepted
                           if snap.start_ms <= e.ts_ms < snap.end_ms)
            assert dict(snap.threads) == dict(want)
    engine.watermarks.end("p0")
    engine.advance(0)
    snap = engine.rolling_totals(86_400_000)
    assert snap.end_ms == max(e.ts_ms for e in accepted) // 60_000 * 60_000 + 60_000
    want = Counter((e.forum, e.type) for e in accepted if snap.start_ms <= e.ts_ms)
    assert dict(snap.forums) == dict(want)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 60))
def test_packed_hourly_buckets_keep_totals_exact_even_when_added_to(seed: int, steps: int):
    """Coarse buckets older than the fine retention are packed; the 24h period still reads
    them when they leave it, and a (very late) add to one unpacks it first."""
    rnd = random.Random(seed)
    rolling = small()
    adds: list[tuple[int, dict]] = []
    watermark = 0
    for _ in range(steps):
        end = rolling.end_ms
        if end is not None and rnd.random() < 0.4:
            # anywhere within the coarse retention, packed buckets included
            start = rnd.randrange(end - 240, end + BUCKET, BUCKET)
            start -= start % BUCKET
            delta = {rnd.choice(KEYS): rnd.randint(1, 5) for _ in range(rnd.randint(1, 4))}
            rolling.add(start, delta)
            adds.append((start, delta))
        else:
            watermark += rnd.choice((BUCKET, 3 * BUCKET, COARSE, 2 * COARSE))
            rolling.advance(watermark)
            end = rolling.end_ms
            fine_keep = COARSE + LATENESS + BUCKET  # the longest fine period is COARSE
            assert all(type(bucket) is Packed for c, bucket in rolling._coarse.items()
                       if c + COARSE <= end - fine_keep)
        snap = rolling.totals(240)
        if snap.end_ms is not None:
            assert (dict(snap.threads), dict(snap.forums)) == brute(adds, snap.start_ms,
                                                                    snap.end_ms)
