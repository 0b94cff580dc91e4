"""WatermarkTracker: per-input bound, min over live inputs, idleness, end of input, monotonicity.

Units are abstract milliseconds: bound B=3 (out-of-orderness), idle timeout I=5 (wall-clock).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from forumstats.watermarks import NEG_INF, POS_INF, WatermarkTracker

B, IDLE = 3, 5


def tracker() -> WatermarkTracker:
    return WatermarkTracker(out_of_orderness_ms=B, idle_timeout_ms=IDLE)


def test_no_input_no_watermark() -> None:
    wm = tracker()
    assert wm.watermark(0) == NEG_INF
    assert wm.current == NEG_INF
    assert wm.input_watermark("nobody") == NEG_INF


def test_single_input_is_max_ts_minus_bound_and_never_goes_back() -> None:
    wm = tracker()
    wm.observe("p0", 20, now_ms=0)
    assert wm.watermark(0) == 17
    wm.observe("p0", 12, now_ms=1)  # an older batch does not lower the input's max
    assert wm.watermark(1) == 17
    assert wm.input_watermark("p0") == 17
    wm.observe("p0", None, now_ms=2)  # an empty batch is activity without event time
    assert wm.watermark(2) == 17


def test_combined_is_min_over_live_inputs() -> None:
    """
    p0: ....20           -> 17
    p1: ..........40     -> 37
    combined = min = 17
    """
    wm = tracker()
    wm.observe("p0", 20, 0)
    wm.observe("p1", 40, 0)
    assert wm.watermark(0) == 17
    assert wm.inputs() == {"p0": 17, "p1": 37}


def test_registered_silent_input_holds_until_idle_then_releases() -> None:
    """
    wall:   0    5    6
    p0:     30 ---------  (keeps sending)
    p1:     registered, never sends
    wm:     -inf -inf 27   (p1 idle once silent > I)
    """
    wm = tracker()
    wm.register("p1", now_ms=0)
    wm.observe("p0", 30, 0)
    assert wm.watermark(0) == NEG_INF
    wm.observe("p0", 30, 5)
    assert wm.watermark(5) == NEG_INF  # silent exactly I: still live
    wm.observe("p0", 30, 6)
    assert wm.watermark(6) == 27


def test_idle_input_stops_holding_back() -> None:
    wm = tracker()
    wm.observe("p0", 10, 0)
    wm.observe("p1", 50, 0)
    assert wm.watermark(0) == 7
    wm.observe("p1", 60, 6)  # p0 silent for 6 > I
    assert wm.watermark(6) == 57


def test_all_idle_advances_with_wall_clock_from_where_they_fell_silent() -> None:
    """
    wall:  0         5   6   10
    p0:    ts 100 .... silent ....
    wm:    97        97  98  102    (97 + (silent - I))
    """
    wm = tracker()
    wm.observe("p0", 100, 0)
    assert wm.watermark(5) == 97
    assert wm.watermark(6) == 98
    assert wm.watermark(10) == 102


def test_all_idle_takes_the_furthest_projection() -> None:
    wm = tracker()
    wm.observe("p0", 100, 0)
    wm.observe("p1", 50, 0)
    assert wm.watermark(10) == 97 + 5


def test_wake_up_does_not_move_watermark_back() -> None:
    wm = tracker()
    wm.observe("p0", 100, 0)
    wm.observe("p1", 100, 0)
    assert wm.watermark(20) == 97 + 15
    wm.observe("p1", 40, 21)  # p1 wakes up with old events
    assert wm.watermark(21) == 112
    assert wm.input_watermark("p1") == 97


def test_end_of_only_input_is_infinity() -> None:
    wm = tracker()
    wm.observe("p0", 10, 0)
    wm.end("p0")
    assert wm.watermark(0) == POS_INF
    assert wm.input_watermark("p0") == POS_INF


def test_ended_input_does_not_hold_back_the_others() -> None:
    wm = tracker()
    wm.observe("p0", 10, 0)
    wm.observe("p1", 40, 0)
    wm.end("p0")
    assert wm.watermark(0) == 37


def test_ended_input_plus_idle_input_without_data_is_infinity() -> None:
    """A spout task with no partitions never sends: once idle, it must not keep the last
    windows of a bounded run open forever (fixed: it used to pin the watermark at -inf)."""
    wm = tracker()
    wm.register("empty", 0)
    wm.observe("p0", 10, 0)
    wm.end("p0")
    assert wm.watermark(5) == NEG_INF  # 'empty' still within its idle timeout
    assert wm.watermark(6) == POS_INF


def test_ended_input_without_data_reports_infinity() -> None:
    wm = tracker()
    wm.register("p0", 0)
    wm.end("p0")
    assert wm.input_watermark("p0") == POS_INF
    assert wm.watermark(0) == POS_INF


def test_observe_after_end_reopens_the_input() -> None:
    wm = tracker()
    wm.observe("p0", 10, 0)
    wm.observe("p1", 20, 0)
    wm.end("p1")
    wm.observe("p1", 25, 1)
    assert wm.watermark(1) == 7
    assert wm.input_watermark("p1") == 22


def test_removed_input_no_longer_counts() -> None:
    wm = tracker()
    wm.observe("p0", 10, 0)
    wm.observe("p1", 40, 0)
    wm.remove("p0")
    assert wm.watermark(0) == 37


def test_upstream_watermark_is_taken_net_of_bound() -> None:
    wm = tracker()
    wm.observe_watermark("task-1", 100, 0)
    assert wm.watermark(0) == 100
    wm.observe_watermark("task-2", NEG_INF, 0)  # upstream has no watermark yet: holds
    assert wm.watermark(0) == 100  # monotonic: never back
    assert wm.input_watermark("task-2") == NEG_INF


ops = st.lists(
    st.tuples(st.sampled_from(["observe", "end", "tick"]), st.sampled_from(["a", "b", "c"]),
              st.integers(0, 200), st.integers(0, 4)),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_monotonic_and_never_ahead_of_live_inputs(steps) -> None:
    wm = tracker()
    now = 0
    last = NEG_INF
    for op, name, ts, dt in steps:
        now += dt
        if op == "observe":
            wm.observe(name, ts, now)
        elif op == "end":
            wm.end(name)
        value = wm.watermark(now)
        assert value >= last
        last = value


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 200)), max_size=40))
def test_without_idleness_is_running_max_of_min_over_inputs(steps) -> None:
    wm = tracker()
    maxima: dict[str, int] = {}
    expected = NEG_INF
    for name, ts in steps:
        wm.observe(name, ts, 0)
        maxima[name] = max(maxima.get(name, ts), ts)
        expected = max(expected, min(maxima.values()) - B)
        assert wm.watermark(0) == expected


# -- idleness declared by the source (the counting bolt's mode) ------------------------------


def declared() -> WatermarkTracker:
    return WatermarkTracker(out_of_orderness_ms=B, idle_timeout_ms=IDLE, idle_by_silence=False)


def test_declared_mode_a_silent_input_holds_the_watermark_however_long() -> None:
    wm = declared()
    wm.observe("a", 100, 0)
    wm.observe("b", 10, 0)
    assert wm.watermark(10**9) == 10 - B  # b is silent (held back upstream), not idle


def test_declared_idle_input_stops_holding_until_it_delivers_data() -> None:
    wm = declared()
    wm.observe("a", 100, 0)
    wm.observe("b", 10, 0)
    wm.mark_idle("b", 50)
    assert wm.watermark(50) == 100 - B
    wm.observe("b", None, 60, data=False)  # an announcement does not wake it
    assert wm.watermark(60) == 100 - B
    wm.observe("b", 20, 70)  # data does (late data: the watermark does not go back)
    wm.observe("a", 200, 70)
    assert wm.watermark(70) == 100 - B
    wm.observe("b", 150, 80)
    assert wm.watermark(80) == 150 - B


def test_declared_all_idle_moves_with_wall_clock_from_the_declaration() -> None:
    wm = declared()
    wm.observe("a", 100, 0)
    wm.mark_idle("a", 1_000)
    assert wm.watermark(1_000) == 100 - B
    assert wm.watermark(1_400) == 100 - B + 400
    wm.mark_idle("a", 1_500)  # repeated declarations keep the first moment
    assert wm.watermark(1_600) == 100 - B + 600


declared_ops = st.lists(
    st.tuples(st.sampled_from(["data", "announce", "idle", "end"]),
              st.sampled_from(["a", "b", "c"]), st.integers(0, 200), st.integers(0, 50)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(declared_ops)
def test_declared_mode_matches_a_brute_force_oracle(steps) -> None:
    """Oracle: an input is idle from its first declaration until its next data; live inputs
    hold at max - B; with none live, the furthest idle projection; never backwards."""
    wm = declared()
    now = 0
    maxima: dict[str, int] = {}
    idle_from: dict[str, int] = {}
    ended: set[str] = set()
    expected = NEG_INF
    for op, name, ts, dt in steps:
        now += dt
        if op == "data":
            wm.observe(name, ts, now)
            maxima[name] = max(maxima.get(name, NEG_INF), ts)
            idle_from.pop(name, None)
            ended.discard(name)
        elif op == "announce":
            wm.observe(name, None, now, data=False)
            maxima.setdefault(name, NEG_INF)
            ended.discard(name)
        elif op == "idle":
            wm.mark_idle(name, now)
            maxima.setdefault(name, NEG_INF)
            idle_from.setdefault(name, now)
        else:
            wm.end(name)
            maxima.setdefault(name, NEG_INF)
            ended.add(name)
        open_inputs = [n for n in maxima if n not in ended]
        live = [maxima[n] - B if maxima[n] > NEG_INF else NEG_INF
                for n in open_inputs if n not in idle_from]
        projections = [maxima[n] - B + now - idle_from[n] for n in open_inputs
                       if n in idle_from and maxima[n] > NEG_INF]
        if live:
            candidate = min(live)
        elif projections:
            candidate = max(projections)
        elif ended:
            candidate = POS_INF
        else:
            candidate = NEG_INF
        expected = max(expected, candidate)
        assert wm.watermark(now) == expected
