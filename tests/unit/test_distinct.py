"""Distinct users with HLL sketches: stated error, merge = union, canonical bytes, lifecycle."""

from __future__ import annotations

import random

import pytest
from datasketches import hll_sketch, tgt_hll_type
from hypothesis import given, settings
from hypothesis import strategies as st

from forumstats.distinct import (
    DEFAULT_LG_K,
    DistinctTracker,
    canonical_sketch_bytes,
    merge_sketches,
    relative_error,
    summarize,
)
from forumstats.engine import WindowEngine
from forumstats.events import Event
from forumstats.settings import WindowSettings
from forumstats.windows import preaggregate_with_users

MINUTE, HOUR = 60_000, 3_600_000
T = 1_767_225_600_000  # 2026-01-01T00:00Z


def sketch_of(users, lg_k: int = DEFAULT_LG_K) -> hll_sketch:
    s = hll_sketch(lg_k, tgt_hll_type.HLL_8)
    for u in users:
        s.update(u)
    return s


def tracker(**kw) -> DistinctTracker:
    return DistinctTracker(size_ms=10, rollup_sizes_ms=(60,), allowed_lateness_ms=20, **kw)


# -- stated error ------------------------------------------------------------------------
@pytest.mark.parametrize("lg_k", [10, 12, 14])
@pytest.mark.parametrize("n", [1, 10, 100, 1_000, 10_000, 100_000])
def test_estimate_within_stated_error_at_3_std_devs(lg_k: int, n: int) -> None:
    """Through the tracker (so the canonical, merged form is what is checked): the true
    cardinality lies within the sketch's own 3-sigma bounds, and the estimate within the
    a-priori relative error DataSketches states for lg_k at 3 standard deviations."""
    t = tracker(lg_k=lg_k)
    users = [f"user-{lg_k}-{i}" for i in range(n)]
    for i in range(0, n, 5_000):  # several batches
        t.add_users({(0, "f", "t"): users[i:i + 5_000]})
    (result, *_rest) = t.advance(10)
    d = result.threads[("f", "t")]
    s = hll_sketch.deserialize(d.sketch)
    assert s.get_estimate() == d.estimate
    assert s.get_lower_bound(3) <= n <= s.get_upper_bound(3)
    assert d.lower_bound <= n <= d.upper_bound  # published bounds: 2 sigma
    assert abs(d.estimate - n) <= relative_error(lg_k, 3) * n + 1e-6
    assert result.forums["f"].sketch == d.sketch  # one thread: forum = thread


def test_relative_error_matches_the_theory() -> None:
    # HLL: RSE ~ 1.04 / sqrt(k) for merged sketches; 3 sigma at lg_k=12 is about 5%
    assert 0.04 < relative_error(12, 3) < 0.06
    assert relative_error(14, 3) < relative_error(12, 3)


# -- merge = union, canonical bytes -------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([3, 50, 300, 600, 5_000]), st.integers(1, 6))
def test_canonical_bytes_do_not_depend_on_order_or_split(seed, n, parts) -> None:
    rnd = random.Random(seed)
    users = [f"u{rnd.random()}" for _ in range(n)]
    direct = canonical_sketch_bytes(sketch_of(users))
    shuffled = users + rnd.sample(users, min(n, 7))  # duplicates do not matter either
    rnd.shuffle(shuffled)
    assert canonical_sketch_bytes(sketch_of(shuffled)) == direct
    pieces = [sketch_of(shuffled[i::parts]) for i in range(parts)]
    rnd.shuffle(pieces)
    assert canonical_sketch_bytes(merge_sketches(pieces)) == direct
    assert summarize(merge_sketches(pieces)) == summarize(sketch_of(users))


def test_merged_minutes_equal_the_hour_rollup_and_the_union_of_users() -> None:
    rnd = random.Random(3)
    t = tracker()
    per_minute = {}
    for start in range(0, 60, 10):
        users = {f"u{rnd.randrange(2_000)}" for _ in range(rnd.randrange(100, 900))}
        per_minute[start] = users
        t.add_users({(start, "f", "t"): users})
    results = t.advance(60)
    minutes = [r for r in results if r.size_ms == 10]
    (hour,) = [r for r in results if r.size_ms == 60]
    merged = merge_sketches(r.threads[("f", "t")].sketch for r in minutes)
    everyone = set().union(*per_minute.values())
    assert canonical_sketch_bytes(merged) == hour.threads[("f", "t")].sketch
    assert canonical_sketch_bytes(merged) == canonical_sketch_bytes(sketch_of(everyone))
    assert merged.get_lower_bound(3) <= len(everyone) <= merged.get_upper_bound(3)


def test_forum_sketch_is_the_union_of_its_threads() -> None:
    t = tracker()
    t.add_users({(0, "f", "a"): ["u1", "u2"], (0, "f", "b"): ["u2", "u3"],
                 (0, "g", "a"): ["u1"]})
    (r, *_) = t.advance(10)
    assert {k: round(d.estimate) for k, d in r.threads.items()} == {
        ("f", "a"): 2, ("f", "b"): 2, ("g", "a"): 1}
    assert {k: round(d.estimate) for k, d in r.forums.items()} == {"f": 3, "g": 1}


# -- lifecycle (same as the counts) -------------------------------------------------------
def test_restatement_too_late_and_purge() -> None:
    """
    event time  0    10   ...  30
    users       u1            (W=10: final r1)  u2 at W=29: r2   u3 at W=30: too late
    """
    t = tracker()
    t.add_users({(0, "f", "t"): ["u1"]})
    assert [(r.size_ms, r.start_ms, r.revision, r.final) for r in t.advance(10)] == [
        (10, 0, 1, True)]
    assert t.advance(29) == []
    assert t.add_users({(0, "f", "t"): ["u2"]}) == {}
    (r,) = t.advance(29)
    assert (r.revision, round(r.threads[("f", "t")].estimate)) == (2, 2)
    assert t.advance(30) == []
    assert t.open_window_count() == 1  # the rollup [0,60) only
    assert t.add_users({(0, "f", "t"): ["u3"]}) == {(0, "f", "t"): ["u3"]}
    assert t.too_late_users == 1
    (hour,) = t.advance(60)
    assert (hour.size_ms, round(hour.forums["f"].estimate)) == (60, 2)
    assert t.advance(80) == [] and t.state_size() == 0


def test_restated_minute_restates_its_final_hour() -> None:
    t = tracker()
    t.add_users({(50, "f", "t"): ["u1"]})
    assert [(r.size_ms, r.revision) for r in t.advance(60)] == [(10, 1), (60, 1)]
    t.add_users({(50, "f", "t"): ["u2"], (40, "f", "t"): ["u1"]})
    got = t.advance(61)
    assert [(r.size_ms, r.start_ms, r.revision) for r in got] == [
        (10, 40, 1), (10, 50, 2), (60, 0, 2)]
    assert round(got[-1].threads[("f", "t")].estimate) == 2


def test_partials_are_not_final_and_include_unhanded_minutes() -> None:
    t = tracker()
    t.add_users({(0, "f", "t"): ["u1"], (20, "f", "t"): ["u2", "u3"]})
    t.advance(12)
    partials = {(r.size_ms, r.start_ms): r for r in t.partials()}
    assert set(partials) == {(10, 20), (60, 0)}
    assert not any(r.final for r in partials.values())
    assert round(partials[(60, 0)].forums["f"].estimate) == 3


def test_add_sketches_equals_add_users() -> None:
    a, b = tracker(), tracker()
    a.add_users({(0, "f", "t"): ["u1", "u2"], (10, "f", "s"): ["u3"]})
    b.add_sketches({(0, "f", "t"): sketch_of(["u2", "u1"]).serialize_compact(),
                    (10, "f", "s"): sketch_of(["u3"]).serialize_compact()})
    assert a.advance(100) == b.advance(100)


def test_engine_drives_distinct_with_its_watermark_and_cutoff() -> None:
    engine = WindowEngine(WindowSettings())
    events = [Event("vote", "f", "t", T + i * 1_000, None, f"u{i % 7}") for i in range(130)]
    counts, users, max_ts = preaggregate_with_users(events, MINUTE)
    engine.add_partial(counts)
    assert engine.add_users(users) == {}
    engine.watermarks.observe("p0", max_ts, 0)
    engine.advance(0)
    got = engine.drain_distinct()
    assert [(r.size_ms, r.start_ms - T, r.revision) for r in got] == [(MINUTE, 0, 1)]
    assert engine.drain_distinct() == []
    assert {(r.size_ms, r.start_ms - T) for r in engine.distinct_partials()} == {
        (MINUTE, 2 * MINUTE), (MINUTE, MINUTE), (HOUR, 0), (86_400_000, 0)}
    engine.watermarks.observe("p0", T + 20 * MINUTE, 0)
    engine.advance(0)
    # too late for counts means too late for users: same cutoff
    late = {(T, "f", "t"): {"u99"}}
    assert engine.add_users(late) == {(T, "f", "t"): ["u99"]}
    engine.watermarks.end("p0")
    engine.advance(0)
    final = {(r.size_ms, r.start_ms - T): round(r.forums["f"].estimate)
             for r in engine.drain_distinct()}
    assert final == {(MINUTE, MINUTE): 7, (MINUTE, 2 * MINUTE): 7, (HOUR, 0): 7,
                     (86_400_000, 0): 7}
    assert engine.state_breakdown()["distinct"] == 0


def test_lg_k_is_validated() -> None:
    with pytest.raises(ValueError):
        DistinctTracker(lg_k=3)
