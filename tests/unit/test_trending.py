"""Trending threads: exact top-K per forum over the last hour, deterministic ties."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forumstats.engine import WindowEngine
from forumstats.events import Event
from forumstats.rolling import RollingTotals
from forumstats.settings import WindowSettings
from forumstats.trending import TrendingCache, TrendingThread, top_threads, trending
from forumstats.windows import preaggregate

HOUR, MINUTE = 3_600_000, 60_000
T = 1_767_225_600_000  # 2026-01-01T00:00Z


def test_ranking_ties_and_k() -> None:
    counts = {("f", "b", "vote"): 3, ("f", "a", "vote"): 3, ("f", "c", "vote"): 5,
              ("f", "d", "comment"): 1, ("g", "x", "vote"): 2, ("f", "a", "comment"): 0}
    top = top_threads(counts, k=3)
    assert top == {
        "f": (TrendingThread("f", "c", 5, 1), TrendingThread("f", "a", 3, 2),
              TrendingThread("f", "b", 3, 3)),
        "g": (TrendingThread("g", "x", 2, 1),),
    }
    assert list(top) == ["f", "g"]


def test_types_filter_and_sum_over_types() -> None:
    counts = {("f", "a", "vote"): 3, ("f", "a", "comment"): 1, ("f", "b", "comment"): 2}
    assert [(r.thread, r.count) for r in top_threads(counts, 5)["f"]] == [("a", 4), ("b", 2)]
    only_comments = top_threads(counts, 5, types=["comment"])["f"]
    assert [(r.thread, r.count) for r in only_comments] == [("b", 2), ("a", 1)]
    assert top_threads(counts, 5, types=["pageview"]) == {}


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError):
        top_threads({}, 0)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from("fgh"), st.text("abcdefgh", min_size=1,
                                                                  max_size=3),
                                 st.sampled_from(["vote", "comment"])),
                       st.integers(1, 20), max_size=60),
       st.integers(1, 8))
def test_top_k_is_exact_against_a_full_sort(counts, k) -> None:
    per_thread: Counter = Counter()
    for (forum, thread, _kind), n in counts.items():
        per_thread[(forum, thread)] += n
    want: dict[str, list] = {}
    for (forum, thread), n in sorted(per_thread.items(), key=lambda x: (x[0][0], -x[1],
                                                                         x[0][1])):
        want.setdefault(forum, [])
        if len(want[forum]) < k:
            want[forum].append((thread, n))
    got = {f: [(r.thread, r.count) for r in rows] for f, rows in top_threads(counts, k).items()}
    assert got == want
    for rows in top_threads(counts, k).values():
        assert [r.rank for r in rows] == list(range(1, len(rows) + 1))


def test_last_hour_only_through_the_engine() -> None:
    """
    event time  00:00 ........ 00:30 ........ 01:00 ... 01:20
    thread old  x x x x x x                                     (90 min before: not in the hour)
    thread new                   x x            x x x
    at W = 01:20 the hour covers [00:20, 01:20): new = 5, old = 0 (dropped from the ranking)
    """
    engine = WindowEngine(WindowSettings(top_k=2))
    stamps = ([("old", T + i * MINUTE) for i in range(6)]
              + [("new", T + 30 * MINUTE), ("new", T + 31 * MINUTE)]
              + [("new", T + HOUR + i * MINUTE) for i in range(3)])
    partial, max_ts = preaggregate([Event("vote", "f", t, ts) for t, ts in stamps], MINUTE)
    engine.add_partial(partial)
    engine.watermarks.observe("p0", max_ts, 0)
    engine.watermarks.observe("p0", T + HOUR + 20 * MINUTE + 30_000, 0)
    engine.advance(0)
    snap = engine.trending()
    assert (snap.start_ms, snap.end_ms, snap.k) == (T + 20 * MINUTE, T + 80 * MINUTE, 2)
    assert snap.rows() == [TrendingThread("f", "new", 5, 1)]
    assert engine.trending(types=["comment"]).forums == {}


def test_cache_recomputes_only_on_change() -> None:
    rolling = RollingTotals()
    cache = TrendingCache(rolling, k=1)
    first = cache.get()
    assert first.forums == {} and cache.get() is first
    rolling.add(T, {("f", "a", "vote"): 2})
    rolling.advance(T + MINUTE)
    second = cache.get()
    assert second is not first and second.rows() == [TrendingThread("f", "a", 2, 1)]
    assert cache.get() is second
    rolling.add(T, {("f", "b", "vote"): 3})  # a restatement inside the hour
    assert cache.get().rows() == [TrendingThread("f", "b", 3, 1)]


def test_trending_matches_brute_force_on_a_skewed_stream() -> None:
    rnd = random.Random(7)
    rolling = RollingTotals()
    events = Counter()
    for minute in range(120):
        delta = Counter()
        for _ in range(50):
            thread = f"t{int(rnd.paretovariate(1.2)) % 40}"
            delta[(rnd.choice("fg"), thread, "vote")] += 1
        rolling.add(T + minute * MINUTE, dict(delta))
        events[minute] = delta
    rolling.advance(T + 120 * MINUTE)
    snap = trending(rolling, k=5)
    assert snap.start_ms == T + 60 * MINUTE
    per: Counter = Counter()
    for minute in range(60, 120):
        for (forum, thread, _), n in events[minute].items():
            per[(forum, thread)] += n
    for forum, rows in snap.forums.items():
        want = sorted(((t, n) for (f, t), n in per.items() if f == forum),
                      key=lambda x: (-x[1], x[0]))[:5]
        assert [(r.thread, r.count) for r in rows] == want
