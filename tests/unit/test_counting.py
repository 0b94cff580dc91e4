"""BucketCounter (the WindowCountBolt's state) against a brute-force oracle.

The property test plays the bolt's part: random events from 1-3 sources (Kafka partitions),
cut into offset ranges; delivered per source in order, with replays of earlier ranges (same
range, same rows, a new Storm tuple id) interleaved at random, random wall-clock advances
(ticks, idleness), and an END_OF_INPUT marker per source. ``advance`` follows every ``add``
as in the bolt: either restating at once, or (as the bolt does) writing only new finals after
an ``add`` and restatements on ticks. Checked:

- the LAST emission of every window equals the oracle group-by of the distinct accepted events
  (accepted = not too late on first delivery): replays never count twice;
- each emission's offset ranges are exactly the ranges folded into that window;
- every input tuple is acked exactly once, and only after an emission anchored to it (never
  anchored again after its ack: Storm would kill the worker), and nothing is held at the end;
- too-late rows + counted rows == all rows, and a range is too late for a window on a replay
  exactly when it was on its first delivery;
- a replay of a range whose window was already emitted re-emits that window, anchored to it
  (at once, or at the next tick when restatements wait for ticks).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from forumstats.counting import END_OF_INPUT, INPUT_IDLE, BucketCounter
from forumstats.settings import WindowSettings

W = WindowSettings(size_ms=60_000, out_of_orderness_ms=30_000, idle_timeout_ms=30_000,
                   allowed_lateness_ms=300_000)
SIZE, LATENESS = W.size_ms, W.allowed_lateness_ms
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
NOW0 = 1_000_000


@dataclass(frozen=True)
class Batch:
    source: str
    first: int
    last: int
    events: tuple  # ((ts, forum, thread, type), ...)
    max_ts: int | None

    def rows(self) -> list[list]:
        counts = Counter((ts - ts % SIZE, f, t, k) for ts, f, t, k in self.events)
        return [[*key, n] for key, n in counts.items()]


@st.composite
def scenarios(draw):
    """(batches per source, seed for the schedule). The bulk comes from a drawn seed."""
    n_sources = draw(st.integers(1, 3))
    n_events = draw(st.integers(0, 60))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    per_source: dict[str, list[Batch]] = {}
    for s in range(n_sources):
        name = f"topic-{s}"
        t = T0 + rnd.randint(0, 120_000)
        events = []
        for _ in range(rnd.randint(0, n_events)):
            step = rnd.randrange(10)
            if step < 6:
                t += rnd.randint(0, 20_000)
            elif step < 8:
                t += rnd.randint(0, 200_000)
            ts = t
            if rnd.random() < 0.2:  # out of order: within the bound, the lateness, or beyond
                ts -= rnd.choice((20_000, 200_000, 900_000))
            ts -= ts % rnd.choice((1, 1_000, 30_000))  # boundary hits are common
            events.append((ts, rnd.choice("ab"), rnd.choice("12"), rnd.choice(("vote", "view"))))
        batches, pos, offset = [], 0, rnd.randint(0, 5)
        while pos < len(events):
            k = rnd.randint(1, 5)
            chunk = tuple(events[pos:pos + k])
            gap = rnd.choice((0, 0, 0, 2))  # compacted / transaction-marker offsets
            last = offset + len(chunk) - 1 + gap
            batches.append(Batch(name, offset, last, chunk, max(e[0] for e in chunk)))
            offset, pos = last + 1, pos + k
        per_source[name] = batches
    return per_source, draw(st.integers(0, 2**32))


class Driver:
    """Plays WindowCountBolt over one BucketCounter and records everything."""

    def __init__(self, restate_on_add: bool = True) -> None:
        self.counter = BucketCounter(W)
        self.restate_on_add = restate_on_add
        self.owed: set[tuple[str, int]] = set()  # (replay tid, window) not re-emitted yet
        self.now = NOW0
        self.next_id = 0
        self.tuples: dict[str, Batch | None] = {}  # tuple id -> batch (None: END marker)
        self.acked: list[str] = []
        self.ack_set: set[str] = set()
        self.anchored: set[str] = set()  # tuple ids some emission was anchored to
        self.last: dict[int, object] = {}  # window start -> last Emission
        self.emissions = []
        # (source, first, last, start) -> True if counted on first delivery, False if too late
        self.status: dict[tuple, bool] = {}
        self.too_late_rows: dict[tuple, list] = {}
        self.replays_of_emitted = 0
        self.finite_mark = -(2**62)  # the watermark before it reached end of input

    def replayable(self, delivered: list[Batch]) -> list[Batch]:
        """Batches whose replay Storm can still deliver: the design requires the message
        timeout to exceed window + out-of-orderness + lateness + flush, so a replay arrives
        before the watermark passes the end + lateness of a window the range was counted in
        (an end-of-input watermark forgets nothing more). Replays beyond that horizon:
        see test_replay_of_a_range_whose_window_was_forgotten_is_not_too_late."""
        mark = self.finite_mark
        return [b for b in delivered
                if all(start + SIZE + LATENESS > mark
                       for (src, first, last, start), counted in self.status.items()
                       if counted and (src, first, last) == (b.source, b.first, b.last))]

    def _new_id(self) -> str:
        self.next_id += 1
        return f"t{self.next_id}"

    def deliver(self, batch: Batch, replay: bool) -> None:
        tid = self._new_id()
        self.tuples[tid] = batch
        rows = batch.rows()
        emitted_before = set(self.last)
        out = self.counter.add(tid, batch.source, batch.first, batch.last, batch.max_ts, rows,
                               self.now)
        late_starts = {row[0] for row in out.too_late}
        for row in out.too_late:  # really past the lateness at the current watermark
            assert row[0] + SIZE + LATENESS <= self.counter.engine.watermark
        by_start = defaultdict(list)
        for row in rows:
            by_start[row[0]].append(row)
        for start, window_rows in by_start.items():
            key = (batch.source, batch.first, batch.last, start)
            counted = start not in late_starts
            if key in self.status:
                assert self.status[key] == counted, (
                    f"range {key[:3]} window {start}: counted={self.status[key]} on first "
                    f"delivery but counted={counted} on a replay")
            else:
                assert not replay
                self.status[key] = counted
            if not counted:
                got = sorted(tuple(r) for r in out.too_late if r[0] == start)
                assert got == sorted(tuple(r) for r in window_rows)
                self.too_late_rows[key] = got
        if out.ack_now:
            assert late_starts == set(by_start), "acked at once though it touched a window"
            self._ack(tid, anchored=False)
        else:
            assert late_starts != set(by_start)
        counted_starts = set(by_start) - late_starts
        assert out.replayed == (replay and bool(counted_starts))
        if replay:
            # a replay of a range whose window was already emitted: written again, anchored
            self.owed |= {(tid, start) for start in counted_starts & emitted_before}
            self.replays_of_emitted += len(counted_starts & emitted_before)
        self.advance(restate=self.restate_on_add)

    def end(self, source: str) -> None:
        tid = self._new_id()
        self.tuples[tid] = None
        out = self.counter.add(tid, source, -1, -1, END_OF_INPUT, [], self.now)
        assert out.ack_now and not out.too_late
        self._ack(tid, anchored=False)
        self.advance(restate=self.restate_on_add)

    def tick(self, ms: int) -> None:
        self.now += ms
        self.advance(restate=True)

    def advance(self, restate: bool) -> None:
        emissions, acks = self.counter.advance(self.now, restate)
        self.owed -= {(tid, e.result.start_ms) for e in emissions for tid in e.anchors}
        if restate:
            assert not self.owed, f"replays not re-emitted by a restating advance: {self.owed}"
        if self.counter.engine.watermark < END_OF_INPUT:
            self.finite_mark = self.counter.engine.watermark
        self.just_emitted = emissions
        for e in emissions:
            assert e.result.final
            for tid in e.anchors:
                assert tid in self.tuples and tid not in self.ack_set, (
                    f"emission anchored to {tid}, which is unknown or already acked")
                self.anchored.add(tid)
            prev = self.last.get(e.result.start_ms)
            if prev is not None:
                assert e.result.revision >= prev.result.revision
            self.last[e.result.start_ms] = e
            self.emissions.append(e)
        for tid in acks:
            self._ack(tid, anchored=True)

    def _ack(self, tid: str, anchored: bool) -> None:
        assert tid not in self.ack_set, f"{tid} acked twice"
        if anchored:
            assert tid in self.anchored, f"{tid} acked before any emission anchored to it"
        self.ack_set.add(tid)
        self.acked.append(tid)


def play(per_source: dict[str, list[Batch]], seed: int) -> Driver:
    rnd = random.Random(seed)
    d = Driver(restate_on_add=rnd.random() < 0.5)
    pending = {s: list(b) for s, b in per_source.items()}
    delivered: list[Batch] = []
    ended: set[str] = set()
    while any(pending.values()):
        op = rnd.random()
        if op < 0.55:
            source = rnd.choice([s for s, b in pending.items() if b])
            batch = pending[source].pop(0)
            d.deliver(batch, replay=False)
            delivered.append(batch)
        elif op < 0.75 and (candidates := d.replayable(delivered)):
            d.deliver(rnd.choice(candidates), replay=True)
        else:
            d.tick(rnd.choice((0, 1_000, 5_000, 20_000, 45_000, 600_000)))
        # a bounded source sends END once it has cut everything (replays may still follow)
        for source, left in pending.items():
            if not left and source not in ended and rnd.random() < 0.5:
                ended.add(source)
                d.end(source)
    for source in per_source:
        if source not in ended:
            d.end(source)
    for _ in range(rnd.randint(0, 3)):  # replays after every END: still recognised
        if candidates := d.replayable(delivered):
            d.deliver(rnd.choice(candidates), replay=True)
    d.tick(1_000)
    return d


def oracle(per_source: dict[str, list[Batch]], status: dict) -> dict[int, dict]:
    out: dict[int, Counter] = defaultdict(Counter)
    for batches in per_source.values():
        for b in batches:
            for ts, f, t, k in b.events:
                start = ts - ts % SIZE
                if status[(b.source, b.first, b.last, start)]:
                    out[start][(f, t, k)] += 1
    return {start: dict(c) for start, c in out.items()}


def check(per_source, d: Driver) -> None:
    # every tuple acked exactly once, nothing held
    assert sorted(d.acked) == sorted(d.tuples)
    assert d.counter.held_tuples() == 0
    # the last emission of each window = the oracle over distinct accepted events
    got = {start: dict(e.result.counts) for start, e in d.last.items()}
    assert got == oracle(per_source, d.status)
    # offsets of each window = exactly the ranges folded into it
    for start, e in d.last.items():
        want = defaultdict(set)
        for (source, first, last, s), counted in d.status.items():
            if s == start and counted:
                want[source].add((first, last))
        assert {src: set(map(tuple, spans)) for src, spans in e.offsets.items()} == want
    # exact accounting: too late + counted == all rows
    total = sum(len(b.events) for bs in per_source.values() for b in bs)
    counted = sum(sum(c.values()) for c in got.values())
    late = sum(row[4] for rows in d.too_late_rows.values() for row in rows)
    assert counted + late == total


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_bucket_counter_matches_oracle_under_replays(scenario):
    per_source, seed = scenario
    d = play(per_source, seed)
    check(per_source, d)


# -- examples -------------------------------------------------------------------------------

def _rows(*events):
    return Batch("s", 0, 0, tuple(events), None).rows()


def test_replay_of_a_final_window_rewrites_it_and_acks_only_then():
    c = BucketCounter(W)
    rows = _rows((T0 + 1_000, "a", "1", "vote"), (T0 + 2_000, "a", "1", "vote"))
    out = c.add("t1", "p0", 0, 1, T0 + 2_000, rows, NOW0)
    assert not out.ack_now and not out.replayed and c.held_tuples() == 1
    assert c.advance(NOW0) == ([], [])  # watermark T0 - 28 s: nothing final yet
    c.add("t2", "p0", 2, 2, T0 + 95_000, [], NOW0)  # moves the watermark past T0 + 60 s
    emissions, acks = c.advance(NOW0)
    assert [e.result.start_ms for e in emissions] == [T0] and emissions[0].anchors == ["t1"]
    assert emissions[0].offsets == {"p0": [(0, 1)]}
    assert acks == ["t1"]
    first = emissions[0]
    out = c.add("t3", "p0", 0, 1, T0 + 2_000, rows, NOW0)  # replay: same range, same rows
    assert out.replayed and not out.ack_now and not out.too_late
    emissions, acks = c.advance(NOW0)
    assert len(emissions) == 1 and emissions[0].anchors == ["t3"] and acks == ["t3"]
    assert emissions[0].result == first.result  # same content, same revision: a rewrite
    assert dict(emissions[0].result.counts) == {("a", "1", "vote"): 2}


def test_replay_before_the_window_is_final_waits_for_it():
    c = BucketCounter(W)
    rows = _rows((T0 + 1_000, "a", "1", "vote"))
    c.add("t1", "p0", 0, 0, T0 + 1_000, rows, NOW0)
    out = c.add("t2", "p0", 0, 0, T0 + 1_000, rows, NOW0)
    assert out.replayed and c.held_tuples() == 2
    c.add("t3", "p0", 1, 1, T0 + 200_000, [], NOW0)
    emissions, acks = c.advance(NOW0)
    assert len(emissions) == 1 and sorted(emissions[0].anchors) == ["t1", "t2"]
    assert dict(emissions[0].result.counts) == {("a", "1", "vote"): 1}
    assert sorted(acks) == ["t1", "t2"]


def test_input_touching_two_windows_is_acked_after_both():
    c = BucketCounter(W)
    rows = _rows((T0 + 1_000, "a", "1", "vote"), (T0 + 61_000, "a", "1", "vote"))
    c.add("t1", "p0", 0, 1, T0 + 61_000, rows, NOW0)
    c.add("t2", "p0", 2, 2, T0 + 95_000, [], NOW0)
    emissions, acks = c.advance(NOW0)
    assert [e.result.start_ms for e in emissions] == [T0] and acks == []
    c.add("t3", "p0", 3, 3, T0 + 155_000, [], NOW0)
    emissions, acks = c.advance(NOW0)
    assert [e.result.start_ms for e in emissions] == [T0 + 60_000] and acks == ["t1"]


def test_too_late_rows_are_returned_and_acked_at_once():
    c = BucketCounter(W)
    c.add("t1", "p0", 0, 0, T0 + 1_000_000, [], NOW0)
    c.advance(NOW0)
    rows = _rows((T0, "a", "1", "vote"), (T0 + 1, "a", "1", "vote"))
    out = c.add("t2", "p0", 1, 2, T0 + 1, rows, NOW0)
    assert out.ack_now and out.too_late == [[T0, "a", "1", "vote", 2]]
    assert c.advance(NOW0)[0] == []


def test_end_of_input_closes_every_window():
    c = BucketCounter(W)
    c.add("t1", "p0", 0, 0, T0 + 1_000, _rows((T0 + 1_000, "a", "1", "vote")), NOW0)
    c.add("t2", "p1", 0, 0, T0 + 5_000, _rows((T0 + 5_000, "b", "1", "vote")), NOW0)
    assert c.add("e1", "p0", -1, -1, END_OF_INPUT, [], NOW0).ack_now
    assert c.advance(NOW0) == ([], [])  # p1 still holds the watermark
    assert c.add("e2", "p1", -1, -1, END_OF_INPUT, [], NOW0).ack_now
    emissions, acks = c.advance(NOW0)
    assert [e.result.start_ms for e in emissions] == [T0] and sorted(acks) == ["t1", "t2"]
    assert c.engine.watermark >= END_OF_INPUT


def test_counting_task_mode_waits_for_a_silent_input_until_its_source_declares_it_idle():
    """The bolt's mode: silence (a partition held back by max.spout.pending, pacing or a
    stalled sink) never releases the watermark; the spout's idle marker does, and the
    input's next data makes it hold again."""
    c = BucketCounter(W, idle_by_silence=False)
    c.add("t1", "p0", 0, 0, T0 + 1_000, _rows((T0 + 1_000, "a", "1", "vote")), NOW0)
    c.add("t2", "p1", 0, 0, T0 + 200_000, _rows((T0 + 200_000, "b", "1", "vote")), NOW0)
    hour = 3_600_000
    assert c.advance(NOW0 + hour) == ([], [])  # p0 silent for an hour: still waited for
    c.add("i1", "p0", -1, -1, None, [], NOW0 + hour)  # an announcement: still waited for
    assert c.advance(NOW0 + hour) == ([], [])
    assert c.add("i2", "p0", -1, -1, INPUT_IDLE, [], NOW0 + hour).ack_now
    emissions, acks = c.advance(NOW0 + hour)
    assert [e.result.start_ms for e in emissions] == [T0] and acks == ["t1"]
    c.add("t3", "p0", 1, 1, T0 + 190_000, _rows((T0 + 190_000, "a", "1", "vote")), NOW0 + hour)
    watermark = c.engine.watermark
    assert c.advance(NOW0 + 2 * hour) == ([], [])  # p0 has data again: it holds
    assert c.engine.watermark == watermark


def test_replay_after_its_source_ended_does_not_hold_the_watermark_back():
    """A bounded source sends END once everything is cut, while batches may still be in flight;
    a failed one comes back after END. That replay must not revive the ended source, or the
    watermark would never reach end-of-input when the other sources end."""
    c = BucketCounter(W)
    rows = _rows((T0 + 1_000, "a", "1", "vote"))
    c.add("t1", "p0", 0, 0, T0 + 1_000, rows, NOW0)
    c.add("t2", "p1", 0, 0, T0 + 2_000, _rows((T0 + 2_000, "b", "1", "vote")), NOW0)
    c.add("e1", "p0", -1, -1, END_OF_INPUT, [], NOW0)
    c.advance(NOW0)
    c.add("t3", "p0", 0, 0, T0 + 1_000, rows, NOW0)  # replay of p0's batch after its END
    c.advance(NOW0)
    c.add("e2", "p1", -1, -1, END_OF_INPUT, [], NOW0)
    emissions, acks = c.advance(NOW0)  # same wall-clock instant: no idleness involved
    assert c.engine.watermark >= END_OF_INPUT
    assert sorted(acks) == ["t1", "t2", "t3"]
    assert dict(emissions[0].result.counts) == {("a", "1", "vote"): 1, ("b", "1", "vote"): 1}


def test_replay_of_a_range_whose_window_was_forgotten_is_not_too_late():
    """A closed window's folded ranges are kept for ``retain_ms`` of wall-clock time (the bolt
    passes two message timeouts), so a replay after event time raced ahead is recognised."""
    c = BucketCounter(W, retain_ms=600_000)
    rows = _rows((T0 + 1_000, "a", "1", "vote"))
    c.add("t1", "p0", 0, 0, T0 + 1_000, rows, NOW0)
    c.add("t2", "p0", 1, 1, T0 + 3_600_000, [], NOW0)  # event time races an hour ahead
    emissions, acks = c.advance(NOW0)
    assert dict(emissions[0].result.counts) == {("a", "1", "vote"): 1} and "t1" in acks
    out = c.add("t3", "p0", 0, 0, T0 + 1_000, rows, NOW0)  # the sink write timed out: replay
    assert out.too_late == []  # it was counted: it must not also be reported too late
    assert out.replayed
    emissions, acks = c.advance(NOW0 + 1_000)  # rewritten (same content) before t3 is acked
    assert [dict(e.result.counts) for e in emissions] == [{("a", "1", "vote"): 1}]
    assert acks == ["t3"]
    c.advance(NOW0 + 601_000 + 1_000)  # retention over: the window is forgotten for good
    out = c.add("t4", "p0", 2, 2, T0 + 2_000, _rows((T0 + 2_000, "a", "1", "vote")),
                NOW0 + 602_000)
    assert out.too_late and out.ack_now


# -- SourceChain: a partition's event time counts only through contiguous ranges -------------


def test_a_gap_left_by_a_failed_batch_holds_the_watermark_until_its_replay():
    """p0's batch [100, 200) fails (a store read failed) while [200, 300) is counted: p0's
    event time stays at [0, 100)'s, so the windows the replay needs stay open."""
    c = BucketCounter(W, idle_by_silence=False)
    c.add("a", "p0", 0, 99, T0 + 10_000, _rows((T0 + 10_000, "a", "1", "vote")), NOW0,
          span=[0, 0, 100])
    c.add("p", "p1", 0, 9, T0 + 900_000, [], NOW0, span=[0, 0, 10])
    # [100, 200) never arrives (failed); the next one does
    c.add("c", "p0", 200, 299, T0 + 900_000, _rows((T0 + 900_000, "a", "1", "vote")), NOW0,
          span=[0, 200, 300])
    assert c.engine.watermarks.input_watermark("p0") == T0 + 10_000 - W.out_of_orderness_ms
    c.advance(NOW0)
    replay = c.add("b", "p0", 100, 199, T0 + 30_000, _rows((T0 + 30_000, "a", "1", "vote")),
                   NOW0 + 5_000, span=[0, 100, 200])
    assert replay.too_late == []  # counted in its window
    assert c.engine.watermarks.input_watermark("p0") == T0 + 900_000 - W.out_of_orderness_ms


def test_idle_is_believed_only_once_everything_handed_out_has_arrived():
    c = BucketCounter(W, idle_by_silence=False)
    c.add("a", "p0", 0, 99, T0 + 10_000, _rows((T0 + 10_000, "a", "1", "vote")), NOW0,
          span=[0, 0, 100])
    c.add("p", "p1", 0, 9, T0 + 900_000, [], NOW0, span=[0, 0, 10])
    c.add("i1", "p0", 0, 200, INPUT_IDLE, [], NOW0)  # [100, 200) still on its way
    assert c.advance(NOW0 + 60_000) == ([], [])
    c.add("b", "p0", 100, 199, T0 + 20_000, [], NOW0, span=[0, 100, 200])
    c.add("i2", "p0", 0, 200, INPUT_IDLE, [], NOW0 + 60_000)
    emissions, _acks = c.advance(NOW0 + 60_000)
    assert [e.result.start_ms for e in emissions] == [T0]


chain_steps = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 1000)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.permutations(range(10)), chain_steps, st.integers(0, 10))
def test_source_chain_matches_an_oracle(order, extra, floor_at):
    """Ranges [10k, 10k+10) arrive in any order, some twice; the floor rises to 10*floor_at
    part-way. The chain's event time is the max over ranges below the first missing one."""
    from forumstats.counting import SourceChain

    chain = SourceChain()
    ts = {k: (k * 37) % 101 for k in range(10)}
    arrivals = list(order) + [k for k, _ in extra]
    seen: set[int] = set()
    best = None
    floor = 0
    frontier = 0
    for i, k in enumerate(arrivals):
        if i == len(arrivals) // 2:
            floor = 10 * floor_at
        grown = chain.add(floor, 10 * k, 10 * k + 10, ts[k])
        if 10 * k + 10 > max(frontier, floor):  # below the chain already: old news, ignored
            seen.add(k)
        first_missing = next((j for j in range(10) if j * 10 >= max(frontier, floor)
                              and j not in seen), 10)
        frontier = max(frontier, floor, 10 * first_missing)
        expected = max([ts[j] for j in seen if 10 * j + 10 <= frontier] or [None],
                       key=lambda v: -1 if v is None else v)
        if grown is not None:
            best = grown if best is None else max(best, grown)
        assert chain.frontier == frontier
        if expected is not None:
            assert best == expected


def test_restatements_wait_for_a_restating_advance_and_carry_every_late_batch():
    c = BucketCounter(W)
    c.add("t1", "p0", 0, 0, T0 + 1_000, _rows((T0 + 1_000, "a", "1", "vote")), NOW0)
    c.add("t2", "p0", 1, 1, T0 + 95_000, [], NOW0)
    emissions, _ = c.advance(NOW0, restate=False)  # newly final: written at once
    assert [(e.result.start_ms, e.result.revision) for e in emissions] == [(T0, 1)]
    for i, tid in enumerate(("t3", "t4", "t5"), start=2):  # late, within the lateness
        c.add(tid, "p0", i, i, T0 + 2_000, _rows((T0 + 2_000, "a", "1", "vote")), NOW0)
        assert c.advance(NOW0, restate=False) == ([], [])
    emissions, acks = c.advance(NOW0, restate=True)
    assert [(e.result.start_ms, e.result.revision) for e in emissions] == [(T0, 2)]
    assert dict(emissions[0].result.counts) == {("a", "1", "vote"): 4}
    assert sorted(emissions[0].anchors) == ["t3", "t4", "t5"] == sorted(acks)


def test_a_window_about_to_be_forgotten_is_restated_without_waiting():
    c = BucketCounter(W)
    c.add("t1", "p0", 0, 0, T0 + 1_000, _rows((T0 + 1_000, "a", "1", "vote")), NOW0)
    c.add("t2", "p0", 1, 1, T0 + 95_000, [], NOW0)
    c.advance(NOW0, restate=False)
    c.add("t3", "p0", 2, 2, T0 + 2_000, _rows((T0 + 2_000, "a", "1", "vote")), NOW0)
    assert c.advance(NOW0, restate=False) == ([], [])
    c.add("t4", "p0", 3, 3, T0 + SIZE + LATENESS + 31_000, [], NOW0)  # past end + lateness
    emissions, acks = c.advance(NOW0, restate=False)
    assert [(e.result.start_ms, e.result.revision) for e in emissions][0] == (T0, 2)
    assert dict(emissions[0].result.counts) == {("a", "1", "vote"): 2} and "t3" in acks
