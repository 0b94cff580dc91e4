"""Table tests of the windowing engine, each with an ASCII timeline of what happens.

Abstract milliseconds: windows of 10, one rollup of 60, out-of-orderness bound B=3, idle
timeout I=5 (wall-clock), allowed lateness L=20. So after a batch whose max event time is m:
watermark W = m - 3; window [s, s+10) is final when s+10 <= W; late events for it restate it
while W < s+10+20; later ones (s <= W - 30) are too late. The harness drives the engine
exactly like ``forumstats.runner.Pipeline.process``: drop too-late by ``late_cutoff()`` ->
``preaggregate`` -> ``add_partial`` -> ``watermarks.observe`` -> ``advance``.

Emissions are written ``size@start rRevision n=total``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from forumstats.engine import WindowEngine, WindowResult
from forumstats.events import Event
from forumstats.settings import WindowSettings
from forumstats.watermarks import POS_INF
from forumstats.windows import preaggregate

S = WindowSettings(size_ms=10, rollup_sizes_ms=(60,), out_of_orderness_ms=3,
                   idle_timeout_ms=5, allowed_lateness_ms=20)


def show(result: WindowResult) -> str:
    return f"{result.size_ms}@{result.start_ms} r{result.revision} n={sum(result.counts.values())}"


class Harness:
    def __init__(self, settings: WindowSettings = S) -> None:
        self.settings = settings
        self.engine = WindowEngine(settings)
        self.too_late = 0

    def batch(self, source: str, stamps: list[int], now: int) -> list[str]:
        cutoff = self.engine.late_cutoff()
        size = self.settings.size_ms
        on_time = []
        for ts in stamps:
            if ts - ts % size <= cutoff:
                self.too_late += 1
            else:
                on_time.append(Event("vote", "f", "t", ts))
        partial, max_ts = preaggregate(on_time, size)
        assert not self.engine.add_partial(partial)
        self.engine.watermarks.observe(source, max_ts, now)
        return [show(r) for r in self.engine.advance(now)]

    def tick(self, now: int) -> list[str]:
        return [show(r) for r in self.engine.advance(now)]

    def register(self, source: str, now: int) -> list[str]:
        self.engine.watermarks.register(source, now)
        return []

    def end(self, source: str, now: int) -> list[str]:
        self.engine.watermarks.end(source)
        return [show(r) for r in self.engine.advance(now)]


@dataclass
class Step:
    op: str  # "p0"/"p1" = a batch from that input; "tick", "end", "register"
    now: int
    stamps: list[int]
    expect: list[str]
    too_late: int = 0  # cumulative too-late count after this step
    watermark: int | None = None
    held: list[str] | None = None  # base windows still held after this step, "start"s


def batch(source: str, stamps: list[int], now: int, expect: list[str], too_late: int = 0,
          wm: int | None = None) -> Step:
    return Step(source, now, stamps, expect, too_late, wm)


def tick(now: int, expect: list[str], wm: int | None = None) -> Step:
    return Step("tick", now, [], expect, watermark=wm)


CASES = {
    "event exactly at a window boundary": ("""
        event time  0         10        20
                    [---w0----)[---w1----)
        events              9^ ^10        ts 10 opens w1, it is not the end of w0
        W=10 closes w0 (end 10 <= W); W=19 does not close w1, W=20 does
    """, [
        batch("p0", [9, 10], 0, [], wm=7),
        batch("p0", [13], 0, ["10@0 r1 n=1"], wm=10),
        batch("p0", [22], 0, [], wm=19),
        batch("p0", [23], 0, ["10@10 r1 n=2"], wm=20),
    ]),
    "watermark jump": ("""
        event time  0    10   20   30 ... 60   70   80   90   100
        events      1    12   25                 75!        100   65!!
        ts 100 jumps W from 22 to 97: w20 and the rollup [0,60) close at once.
        ts 75 (start 70 > W-30=67) is late but accepted: w70 emitted already final.
        ts 65 (start 60 <= 67) is too late.
    """, [
        batch("p0", [1, 12, 25], 0, ["10@0 r1 n=1", "10@10 r1 n=1"], wm=22),
        batch("p0", [100], 0, ["10@20 r1 n=1", "60@0 r1 n=3"], wm=97),
        batch("p0", [75], 0, ["10@70 r1 n=1"], wm=97),
        batch("p0", [65], 0, [], too_late=1, wm=97),
    ]),
    "idle partition": ("""
        wall        0     5     6
        p0          2     5     14
        p1          registered at 0, never sends
        W           -inf  -inf  11     p1 silent 5 = I still holds; at 6 > I it is idle
    """, [
        Step("register", 0, ["p1"], []),  # type: ignore[list-item]
        batch("p0", [2], 0, []),
        batch("p0", [5], 5, []),
        batch("p0", [14], 6, ["10@0 r1 n=2"], wm=11),
    ]),
    "partition wakes up late": ("""
        wall        0      10        11      12
        p0          5      41        55
        p1          6      (idle)    (idle)  33, 18   <- wakes up with old events
        W           2      38        52      52       never goes back
        at wall 12: cutoff = 52-30 = 22: ts 18 (start 10) too late; ts 33 (start 30)
        accepted, and its window is already final: emitted at once
    """, [
        batch("p0", [5], 0, []),
        batch("p1", [6], 0, [], wm=2),
        batch("p0", [41], 10, ["10@0 r1 n=2"], wm=38),
        batch("p0", [55], 11, ["10@40 r1 n=1"], wm=52),
        batch("p1", [33, 18], 12, ["10@30 r1 n=1"], too_late=1, wm=52),
    ]),
    "restatement inside lateness": ("""
        event time  0    10   20   30  ...  50   60
        events      4    13   28        7!         62  63   55!
        W                10   25            59   60   60
        ts 7 at W=25 (< end 10 + L 20): restates w0, revision 2, same key.
        ts 55 after the rollup [0,60) is final: restates w50 and the rollup.
    """, [
        batch("p0", [4], 0, [], wm=1),
        batch("p0", [13], 0, ["10@0 r1 n=1"], wm=10),
        batch("p0", [28], 0, ["10@10 r1 n=1"], wm=25),
        batch("p0", [7], 0, ["10@0 r2 n=2"], wm=25),
        batch("p0", [62], 0, ["10@20 r1 n=1"], wm=59),
        batch("p0", [63], 0, ["60@0 r1 n=4"], wm=60),
        batch("p0", [55], 0, ["10@50 r1 n=1", "60@0 r2 n=5"], wm=60),
    ]),
    "too late beyond lateness": ("""
        event time  0    10   20   30
        events      4              32    9 (W=29: cutoff -1, accepted)   33   8!
        W           1              29                                    30
        at W=30 window w0 is gone (end 10 + L 20 <= 30): ts 8 is too late, counted, not added
    """, [
        batch("p0", [4], 0, [], wm=1),
        batch("p0", [32], 0, ["10@0 r1 n=1"], wm=29),
        Step("p0", 0, [9], ["10@0 r2 n=2"], watermark=29, held=["0", "30"]),
        Step("p0", 0, [33], [], watermark=30, held=["30"]),
        batch("p0", [8], 0, [], too_late=1, wm=30),
    ]),
    "end of input": ("""
        event time  0    10   ...  60
        events      4    15        61
        W           58 ------------------> +inf at end: every window and rollup closes
    """, [
        batch("p0", [4, 15, 61], 0, ["10@0 r1 n=1", "10@10 r1 n=1"], wm=58),
        Step("end", 0, ["p0"], ["10@60 r1 n=1", "60@0 r1 n=2", "60@60 r1 n=1"],  # type: ignore
             watermark=POS_INF),
        tick(1, [], wm=POS_INF),
        batch("p0", [70], 1, [], too_late=1, wm=POS_INF),
    ]),
    "all inputs idle close the last windows": ("""
        wall        0      5     6      17
        p0          4, 12  (silent from wall 0)
        W           9      9     10     21     W moves with wall-clock once p0 is idle
    """, [
        batch("p0", [4, 12], 0, [], wm=9),
        tick(5, [], wm=9),
        tick(6, ["10@0 r1 n=1"], wm=10),
        tick(17, ["10@10 r1 n=1"], wm=21),
    ]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_timeline(name: str) -> None:
    timeline, steps = CASES[name]
    h = Harness()
    for number, step in enumerate(steps, start=1):
        if step.op == "tick":
            got = h.tick(step.now)
        elif step.op == "end":
            got = h.end(step.stamps[0], step.now)  # type: ignore[arg-type]
        elif step.op == "register":
            got = h.register(step.stamps[0], step.now)  # type: ignore[arg-type]
        else:
            got = h.batch(step.op, step.stamps, step.now)
        where = f"{name}, step {number} ({step.op} {step.stamps} @ wall {step.now})\n{timeline}"
        assert got == step.expect, where
        assert h.too_late == step.too_late, where
        if step.watermark is not None:
            assert h.engine.watermark == step.watermark, where
        if step.held is not None:
            assert [str(s) for s in sorted(h.engine.levels[0].windows)] == step.held, where


def test_rollups_not_multiples_of_each_other() -> None:
    """
    base 15, rollups 45 and 30 (given in that order): 45 is not a multiple of 30, so it must be
    built from the base windows, not from the 30s (fixed: a [30,60) window used to be handed
    whole to [0,45)).
        event time  0    15   30   45   60
        events      0    16   31 44 46
        30@0 = {0,16}   30@30 = {31,44,46}   45@0 = {0,16,31,44}   45@45 = {46}
    """
    settings = WindowSettings(size_ms=15, rollup_sizes_ms=(45, 30), out_of_orderness_ms=0,
                              idle_timeout_ms=5, allowed_lateness_ms=0)
    h = Harness(settings)
    got = h.batch("p0", [0, 16, 31, 44, 46], 0) + h.end("p0", 0)
    assert sorted(g for g in got if not g.startswith("15@")) == [
        "30@0 r1 n=2", "30@30 r1 n=3", "45@0 r1 n=4", "45@45 r1 n=1"]


def test_early_results_are_flagged_not_final() -> None:
    """
        event time  0    10   20   ...  60
        events      4    13   25
        W=22: w0, w10 final; w20 open -> partial n=1; rollup [0,60) partial n=3 (includes
        the final minutes not yet handed up as well as the open one)
    """
    h = Harness()
    h.batch("p0", [4, 13, 25], 0)
    partials = {show(p): p.final for p in h.engine.partials()}
    assert partials == {"10@20 r0 n=1": False, "60@0 r0 n=3": False}


def test_partial_of_a_restated_rollup_keeps_its_revision() -> None:
    h = Harness()
    h.batch("p0", [4, 63], 0)  # W=60: w0 and the rollup [0,60) final
    assert [show(p) for p in h.engine.partials()] == ["10@60 r0 n=1", "60@60 r0 n=1"]


def test_state_is_purged_after_lateness_and_bounded() -> None:
    h = Harness()
    for ts in range(0, 600, 2):
        h.batch("p0", [ts], 0)
    # open: windows within out-of-orderness + size + lateness of W, plus the rollups
    breakdown = h.engine.state_breakdown()
    assert h.engine.open_window_count() <= (3 + 10 + 20) // 10 + 2 + 2
    assert breakdown["windows"] == h.engine.open_window_count()  # one key per window here
    h.end("p0", 0)
    assert h.engine.open_window_count() == 0
    assert h.engine.state_breakdown()["windows"] == 0
