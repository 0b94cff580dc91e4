"""Hypothesis: the engine against a brute-force group-by oracle, on random streams.

Real settings (1m windows, 1h and 1d rollups, 30 s bound, 5 min lateness); streams straddle a
UTC day boundary, mix dense stretches (disorder matters) with jumps of up to an hour, and come
from 1 to 3 inputs, each with its own arrival disorder, interleaved in random batches.

- disorder within the bound: every window is emitted exactly once (revision 1), final, and
  equals the oracle at 1m, 1h and 1d; nothing is too late;
- disorder beyond the bound but within bound + lateness: nothing is too late and the LAST
  revision of every window equals the oracle at every level; early results (partials) equal
  the oracle of what was accepted so far; distinct users are within the sketch's bounds;
- any disorder: the too-late count equals an independent simulation of the watermark rule, and
  the last revisions equal the oracle of the accepted events.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from forumstats.engine import WindowEngine, WindowResult
from forumstats.events import Event
from forumstats.settings import WindowSettings
from forumstats.windows import preaggregate, preaggregate_with_users, window_start

W = WindowSettings()  # 1m, (1h, 1d), bound 30 s, idle 30 s, lateness 5 min
SIZES = (W.size_ms,) + W.rollup_sizes_ms
BOUND, LATENESS = W.out_of_orderness_ms, W.allowed_lateness_ms
DAY = 86_400_000
T0 = 1_767_225_600_000 - 2 * 3_600_000  # two hours before 2026-01-01T00:00Z
NEG = -(2**62)


@st.composite
def streams(draw, max_disorder: int):
    """(batches, inputs): batches = [(input, [Event...])] in arrival order.

    Hypothesis draws the size, the number of inputs and a seed; the bulk is generated from the
    seed (drawing every field through Hypothesis made the suite ten times slower).
    """
    n = draw(st.integers(0, 80))
    inputs = draw(st.integers(1, 3))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    # a coarse grid makes exact boundary hits (ts on a window end, watermark exactly at
    # end or at end + lateness) common instead of one in 60 000
    grid = rnd.choice((1, 1_000, 15_000, 30_000))
    ts, t = [], T0
    for _ in range(n):
        step = rnd.randrange(4)
        if step == 3:  # to just before the next hour: late events restate hours and days
            t = t - t % 3_600_000 + 3_600_000 - rnd.randint(0, 120_000)
        else:
            t += rnd.randint(0, (4_000, 40_000, 3_600_000)[step])
        t -= t % grid
        ts.append(t)
    users = ["u1", "u2", "u3", "u4", "u5", None]
    events = [Event(rnd.choice(("vote", "comment")), rnd.choice("ab"), rnd.choice("123"), ts[i],
                    None, rnd.choice(users)) for i in range(n)]
    jitter = [rnd.randint(0, max_disorder) // grid * grid for _ in range(n)]
    # per input: arrival order by ts + jitter -> disorder within an input <= max_disorder
    per_input: list[list[Event]] = [[] for _ in range(inputs)]
    for i in sorted(range(n), key=lambda i: (ts[i] + jitter[i], i)):
        per_input[rnd.randrange(inputs)].append(events[i])
    queues: list[list[tuple[str, list[Event]]]] = []
    for p, evs in enumerate(per_input):
        queue, pos = [], 0
        while pos < len(evs):
            size = rnd.randint(1, 6)
            queue.append((f"p{p}", evs[pos:pos + size]))
            pos += size
        queues.append(queue)
    batches: list[tuple[str, list[Event]]] = []
    while any(queues):
        batches.append(rnd.choice([q for q in queues if q]).pop(0))
    return batches, [f"p{p}" for p in range(inputs)]


def run(batches, inputs, check_partials=False):
    """Drive the engine like the runner; return (emissions, accepted events, too-late n)."""
    engine = WindowEngine(W)
    for name in inputs:
        engine.watermarks.register(name, 0)
    emitted: list[WindowResult] = []
    distinct = []
    accepted: list[Event] = []
    too_late = 0
    for name, events in batches:
        counts, users, max_ts = preaggregate_with_users(events, W.size_ms)
        late = engine.add_partial(counts)
        too_late += sum(late.values())
        late_users = engine.add_users(users)
        accepted += [e for e in events
                     if (window_start(e.ts_ms, W.size_ms), e.forum, e.thread, e.type) not in late]
        assert {k[:3] for k in late} >= set(late_users)
        engine.watermarks.observe(name, max_ts, 0)
        emitted += engine.advance(0)
        distinct += engine.drain_distinct()
        if check_partials:
            for p in engine.partials():
                assert not p.final
                assert p.end_ms > engine.watermark
                assert dict(p.counts) == oracle(accepted, p.size_ms).get(p.start_ms, {})
    for name in inputs:
        engine.watermarks.end(name)
    emitted += engine.advance(0)
    distinct += engine.drain_distinct()
    assert engine.open_window_count() == 0 and engine.distinct.open_window_count() == 0
    return emitted, distinct, accepted, too_late


def oracle(events, size):
    out: dict[int, Counter] = defaultdict(Counter)
    for e in events:
        out[window_start(e.ts_ms, size)][(e.forum, e.thread, e.type)] += 1
    return {start: dict(c) for start, c in out.items()}


def last_revisions(emitted):
    """{size: {start: counts}} of each window's last revision, checking revisions count up."""
    seen: dict[tuple[int, int], int] = {}
    out: dict[int, dict[int, dict]] = defaultdict(dict)
    for r in emitted:
        assert r.final
        assert r.revision == seen.get((r.size_ms, r.start_ms), 0) + 1
        seen[(r.size_ms, r.start_ms)] = r.revision
        out[r.size_ms][r.start_ms] = dict(r.counts)
    return out


def check_all_levels(emitted, accepted):
    got = last_revisions(emitted)
    for size in SIZES:
        assert got.get(size, {}) == oracle(accepted, size), f"level {size}"


@settings(max_examples=300, deadline=None)
@given(streams(max_disorder=BOUND))
def test_within_bound_every_window_final_once_and_exact(stream) -> None:
    batches, inputs = stream
    emitted, _distinct, accepted, too_late = run(batches, inputs)
    assert too_late == 0
    assert all(r.revision == 1 for r in emitted)
    check_all_levels(emitted, [e for _, evs in batches for e in evs])


@settings(max_examples=300, deadline=None)
@given(streams(max_disorder=BOUND + LATENESS))
def test_within_lateness_last_revision_is_exact(stream) -> None:
    batches, inputs = stream
    emitted, distinct, accepted, too_late = run(batches, inputs, check_partials=True)
    assert too_late == 0
    check_all_levels(emitted, [e for _, evs in batches for e in evs])
    # distinct users: last revision of every window within the sketch's stated bounds
    exact: dict[tuple[int, int, str], set] = defaultdict(set)
    for e in accepted:
        if e.user is not None:
            for size in SIZES:
                exact[(size, window_start(e.ts_ms, size), e.forum)].add(e.user)
    last = {}
    for r in distinct:
        last[(r.size_ms, r.start_ms)] = r
    got_keys = set()
    for (size, start), r in last.items():
        for forum, d in r.forums.items():
            got_keys.add((size, start, forum))
            n = len(exact[(size, start, forum)])
            assert d.lower_bound <= n <= d.upper_bound
            assert round(d.estimate) == n  # a handful of users: the sketch is exact
    assert got_keys == set(exact)


@settings(max_examples=300, deadline=None)
@given(streams(max_disorder=4 * LATENESS))
def test_too_late_count_is_exact_and_the_rest_is_counted(stream) -> None:
    batches, inputs = stream
    emitted, _distinct, accepted, too_late = run(batches, inputs)
    # independent simulation of the rule: the watermark before a batch is the running max of
    # min over inputs of (max ts - bound); an event is too late when its window started at or
    # before watermark - lateness - size
    maxima = dict.fromkeys(inputs, NEG)
    watermark = NEG
    expected_late = 0
    expected_accepted = []
    for name, events in batches:
        cutoff = watermark - LATENESS - W.size_ms
        for e in events:
            if window_start(e.ts_ms, W.size_ms) <= cutoff:
                expected_late += 1
            else:
                expected_accepted.append(e)
        maxima[name] = max([maxima[name]] + [e.ts_ms for e in events])
        low = min(maxima.values())
        if low > NEG:
            watermark = max(watermark, low - BOUND)
    assert too_late == expected_late
    assert sorted(accepted, key=repr) == sorted(expected_accepted, key=repr)
    check_all_levels(emitted, expected_accepted)


@settings(max_examples=60, deadline=None)
@given(streams(max_disorder=BOUND + LATENESS))
def test_preaggregate_with_users_counts_like_preaggregate(stream) -> None:
    batches, _ = stream
    for _, events in batches:
        counts, users, max_ts = preaggregate_with_users(events, W.size_ms)
        assert (counts, max_ts) == preaggregate(events, W.size_ms)
        expected = defaultdict(set)
        for e in events:
            if e.user is not None:
                expected[(window_start(e.ts_ms, W.size_ms), e.forum, e.thread)].add(e.user)
        assert users == dict(expected)


def test_day_rollup_splits_at_utc_midnight() -> None:
    midnight = T0 + 2 * 3_600_000
    assert midnight % DAY == 0
    events = [Event("vote", "a", "1", midnight - 1), Event("vote", "a", "1", midnight)]
    emitted, *_ = run([("p0", events)], ["p0"])
    days = {r.start_ms: sum(r.counts.values()) for r in emitted if r.size_ms == DAY}
    assert days == {midnight - DAY: 1, midnight: 1}
