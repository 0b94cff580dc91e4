"""LocalCluster: Storm's semantics in one process, checked with tiny in-test components.

Ack trees, fail propagation, message timeouts (fake clock), max.spout.pending, fields and all
groupings, tick tuples (fake clock), JSON round trip, LocalStormError on protocol misuse, and
``java_hash`` against Java's hashCode formulas written out independently here.
"""

from __future__ import annotations

import logging
from collections import Counter, deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamparse import Bolt, Grouping, Spout, Stream, Topology

from forumstats.localstorm import LocalCluster, LocalStormError, java_hash

# -- components -------------------------------------------------------------------------------


class PlanSpout(Spout):
    """Emits the planned (key, n, msg_id) tuples, one per next_tuple call; with
    ``test.forever`` a new reliable tuple on every call."""

    outputs = [Stream(fields=["key", "n"])]

    def initialize(self, conf, context):
        self.plan = deque(tuple(p) for p in conf.get("test.plan", []))
        self.forever = conf.get("test.forever", False)
        self.calls = 0
        self.acked: list = []
        self.failed: list = []

    def next_tuple(self):
        self.calls += 1
        if self.plan:
            key, n, msg_id = self.plan.popleft()
            self.emit([key, n], tup_id=msg_id)
        elif self.forever:
            self.emit([self.calls, self.calls], tup_id=f"m{self.calls}")

    def ack(self, tup_id):
        self.acked.append(tup_id)

    def fail(self, tup_id):
        self.failed.append(tup_id)


class SplitBolt(Bolt):
    """Auto-anchors two children to each input, then auto-acks the input."""

    outputs = [Stream(fields=["key", "n"])]

    def process(self, tup):
        key, n = tup.values
        self.emit([key, n])
        self.emit([key, n + 1])


class HoldBolt(Bolt):
    """Holds every input (no auto-ack): the test acks or fails them."""

    outputs = [Stream(fields=["key", "n"])]
    auto_ack = False

    def initialize(self, conf, context):
        self.held: list = []
        self.ticks: list = []

    def process(self, tup):
        self.held.append(tup)

    def process_tick(self, tup):
        self.ticks.append(tup)
        self.ack(tup)


class RecordBolt(Bolt):
    """Records what it receives; auto-acks."""

    outputs: list = []

    def initialize(self, conf, context):
        self.seen: list = []
        self.ticks: list = []
        self.task_id = context["taskid"]

    def process(self, tup):
        self.seen.append(tup)

    def process_tick(self, tup):
        self.ticks.append(tup)


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def instances(cluster: LocalCluster, component: str) -> list:
    return [task.instance for task in cluster.by_component[component]]


def drain(cluster: LocalCluster, steps: int = 20) -> None:
    for _ in range(steps):
        cluster.step()


# -- topologies -------------------------------------------------------------------------------


class SplitHold(Topology):
    spout = PlanSpout.spec(name="spout")
    split = SplitBolt.spec(name="split", inputs=[spout])
    hold = HoldBolt.spec(name="hold", inputs=[split])


class Hold(Topology):
    spout = PlanSpout.spec(name="spout")
    hold = HoldBolt.spec(name="hold", inputs=[spout])


# -- ack tree ---------------------------------------------------------------------------------


def test_ack_tree_completes_only_when_every_anchored_descendant_is_acked():
    cluster = LocalCluster(SplitHold, {"test.plan": [["a", 1, "m1"]]}, clock=Clock())
    drain(cluster)
    spout, = instances(cluster, "spout")
    hold, = instances(cluster, "hold")
    assert [t.values for t in hold.held] == [("a", 1), ("a", 2)]
    assert spout.acked == [] and spout.failed == []  # split acked its input; children held
    hold.ack(hold.held[0])
    drain(cluster)
    assert spout.acked == []
    hold.ack(hold.held[1])
    drain(cluster)
    assert spout.acked == ["m1"] and spout.failed == []
    assert cluster.roots == {} and cluster.stats.acked == 1


def test_a_descendant_fail_fails_the_spout_tuple_once():
    cluster = LocalCluster(SplitHold, {"test.plan": [["a", 1, "m1"]]}, clock=Clock())
    drain(cluster)
    spout, = instances(cluster, "spout")
    hold, = instances(cluster, "hold")
    hold.fail(hold.held[0])
    assert spout.failed == ["m1"]
    hold.ack(hold.held[1])  # the other child acked afterwards: no ack, no error
    drain(cluster)
    assert spout.failed == ["m1"] and spout.acked == []
    assert cluster.stats.failed == 1 and cluster.roots == {}


def test_held_tuple_times_out_after_message_timeout_and_spout_gets_fail():
    clock = Clock()
    cluster = LocalCluster(Hold, {"test.plan": [["a", 1, "m1"]],
                                  "topology.message.timeout.secs": 10}, clock=clock)
    drain(cluster, 2)
    spout, = instances(cluster, "spout")
    hold, = instances(cluster, "hold")
    assert len(hold.held) == 1
    clock.t += 9.9
    drain(cluster, 2)
    assert spout.failed == []
    clock.t += 0.2
    cluster.step()
    assert spout.failed == ["m1"] and cluster.stats.timed_out == 1
    hold.ack(hold.held[0])  # a late ack of a timed-out tree is not an error and not an ack
    assert spout.acked == [] and cluster.roots == {}


def test_tuples_queued_for_a_worker_that_died_are_lost_with_it_and_time_out():
    """As on Storm: what was on its way to a dead worker is gone (the restarted task never
    sees it, so it can never ack it); the spout tuple times out and is replayed."""
    clock = Clock()
    cluster = LocalCluster(Hold, {"test.plan": [["a", 1, "m1"]],
                                  "topology.message.timeout.secs": 10}, clock=clock)
    spout_task, = cluster.by_component["spout"]
    hold_task, = cluster.by_component["hold"]
    spout_task.instance.next_tuple()  # emitted and queued for "hold", not yet delivered
    assert len(cluster.queue) == 1
    hold_task.instance.restart = lambda: None  # an in-process bolt: nothing to restart
    cluster._worker_died(hold_task, RuntimeError("killed"))
    drain(cluster, 2)
    assert hold_task.instance.held == []  # never delivered to the restarted task
    clock.t += 10.1
    cluster.step()
    assert spout_task.instance.failed == ["m1"] and cluster.stats.timed_out == 1


def test_unreliable_and_unsubscribed_tuples():
    cluster = LocalCluster(Hold, {"test.plan": [["a", 1, None]]}, clock=Clock())
    drain(cluster, 2)
    spout, = instances(cluster, "spout")
    hold, = instances(cluster, "hold")
    assert len(hold.held) == 1 and cluster.roots == {}  # unreliable: no tree at all
    hold.ack(hold.held[0])
    assert spout.acked == [] and spout.failed == []


def test_reliable_tuple_nobody_subscribes_to_is_acked_at_once():
    class Alone(Topology):
        spout = PlanSpout.spec(name="spout")

    cluster = LocalCluster(Alone, {"test.plan": [["a", 1, "m1"]]}, clock=Clock())
    cluster.step()
    spout, = instances(cluster, "spout")
    assert spout.acked == ["m1"]


# -- max.spout.pending --------------------------------------------------------------------------


def test_max_spout_pending_stops_next_tuple_calls_until_an_ack():
    cluster = LocalCluster(Hold, {"test.forever": True, "topology.max.spout.pending": 3},
                           clock=Clock())
    drain(cluster, 10)
    spout, = instances(cluster, "spout")
    hold, = instances(cluster, "hold")
    assert spout.calls == 3 and len(hold.held) == 3
    hold.ack(hold.held[0])
    drain(cluster, 10)
    assert spout.calls == 4 and len(hold.held) == 4
    assert spout.acked == ["m1"]


def test_without_max_spout_pending_next_tuple_is_called_every_step():
    cluster = LocalCluster(Hold, {"test.forever": True}, clock=Clock())
    drain(cluster, 10)
    assert instances(cluster, "spout")[0].calls == 10


# -- groupings ----------------------------------------------------------------------------------


class Fields4(Topology):
    spout = PlanSpout.spec(name="spout")
    rec = RecordBolt.spec(name="rec", par=4, inputs={spout: Grouping.fields("key")})


class All3(Topology):
    spout = PlanSpout.spec(name="spout")
    rec = RecordBolt.spec(name="rec", par=3, inputs={spout: Grouping.ALL})


def _java_string_hash(s: str) -> int:
    """Java's String.hashCode: s[0]*31^(n-1) + ... + s[n-1] over UTF-16 code units, int32."""
    units = []
    for ch in s:
        cp = ord(ch)
        if cp > 0xFFFF:  # a surrogate pair in Java's UTF-16 string
            cp -= 0x10000
            units += [0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)]
        else:
            units.append(cp)
    n = len(units)
    total = sum(u * 31 ** (n - 1 - i) for i, u in enumerate(units))
    return _signed32(total)


def _java_list_hash(hashes: list[int]) -> int:
    """Java's List.hashCode (= Arrays.deepHashCode): 31^n + sum h_i*31^(n-1-i), int32."""
    n = len(hashes)
    return _signed32(31 ** n + sum(h * 31 ** (n - 1 - i) for i, h in enumerate(hashes)))


def _signed32(v: int) -> int:
    v %= 2**32
    return v - 2**32 if v >= 2**31 else v


def test_fields_grouping_sends_equal_keys_to_one_task_chosen_as_storm_does():
    keys = ["forum-a", "forum-b", "x", "", "polygenelubricants", "ünïcode", "😀"] * 3
    plan = [[k, i, f"m{i}"] for i, k in enumerate(keys)]
    cluster = LocalCluster(Fields4, {"test.plan": plan}, clock=Clock())
    drain(cluster, len(plan) + 2)
    where: dict[str, set[int]] = {}
    for index, bolt in enumerate(instances(cluster, "rec")):
        for tup in bolt.seen:
            where.setdefault(tup.values.key, set()).add(index)
    assert set(where) == set(keys)
    for key, tasks in where.items():
        # Storm: targets[Math.floorMod(Arrays.deepHashCode(key values), numTasks)]
        want = _java_list_hash([_java_string_hash(key)]) % 4
        assert tasks == {want}, key
    assert sum(len(b.seen) for b in instances(cluster, "rec")) == len(plan)
    assert len(instances(cluster, "spout")[0].acked) == len(plan)


def test_fields_grouping_on_integer_buckets_spreads_them_evenly():
    plan = [[b, i, f"m{i}"] for i, b in enumerate(list(range(16)) * 2)]
    cluster = LocalCluster(Fields4, {"test.plan": plan}, clock=Clock())
    drain(cluster, len(plan) + 2)
    per_task = [sorted({t.values.key for t in bolt.seen}) for bolt in instances(cluster, "rec")]
    assert sorted(b for task in per_task for b in task) == list(range(16))
    assert [len(t) for t in per_task] == [4, 4, 4, 4]  # List.of(b).hashCode() = 31 + b
    for index, buckets in enumerate(per_task):
        assert all((31 + b) % 4 == index for b in buckets)


def test_all_grouping_broadcasts_and_the_tree_waits_for_every_copy():
    cluster = LocalCluster(All3, {"test.plan": [["a", 1, "m1"], ["b", 2, "m2"]]},
                           clock=Clock())
    drain(cluster, 4)
    for bolt in instances(cluster, "rec"):
        assert [t.values for t in bolt.seen] == [("a", 1), ("b", 2)]
    assert instances(cluster, "spout")[0].acked == ["m1", "m2"]

    class AllHold(Topology):
        spout = PlanSpout.spec(name="spout")
        hold = HoldBolt.spec(name="hold", par=3, inputs={spout: Grouping.ALL})

    cluster = LocalCluster(AllHold, {"test.plan": [["a", 1, "m1"]]}, clock=Clock())
    drain(cluster, 3)
    holds = instances(cluster, "hold")
    spout, = instances(cluster, "spout")
    for bolt in holds[:2]:
        bolt.ack(bolt.held[0])
    assert spout.acked == []
    holds[2].ack(holds[2].held[0])
    assert spout.acked == ["m1"]


def test_tuples_go_through_a_json_round_trip_and_carry_field_names():
    plan = [[[1, (2, 3)], {"k": (4,)}, "m1"]]
    cluster = LocalCluster(Fields4, {"test.plan": plan}, clock=Clock())
    drain(cluster, 3)
    seen = [t for bolt in instances(cluster, "rec") for t in bolt.seen]
    assert len(seen) == 1
    tup = seen[0]
    assert tup.values.key == [1, [2, 3]] and tup.values.n == {"k": [4]}  # tuples -> lists
    assert tup.component == "spout" and tup.stream == "default"


# -- ticks --------------------------------------------------------------------------------------


def test_tick_tuples_arrive_at_the_configured_frequency():
    class Ticking(Topology):
        spout = PlanSpout.spec(name="spout")
        ticked = RecordBolt.spec(name="ticked", inputs=[spout],
                                 config={"topology.tick.tuple.freq.secs": 5})
        plain = RecordBolt.spec(name="plain", inputs=[spout])

    clock = Clock(0.0)
    cluster = LocalCluster(Ticking, {}, clock=clock)
    at = []
    for _ in range(41):  # t = 0, 0.5, ..., 20
        before = len(instances(cluster, "ticked")[0].ticks)
        cluster.step()
        if len(instances(cluster, "ticked")[0].ticks) > before:
            at.append(clock.t)
        clock.t += 0.5
    assert at == [5.0, 10.0, 15.0, 20.0]
    tick = instances(cluster, "ticked")[0].ticks[0]
    assert tick.component == "__system" and tick.stream == "__tick" and tick.task == -1
    assert list(tick.values) == [5]
    assert instances(cluster, "plain")[0].ticks == []
    assert cluster.instances == {}  # auto-acked ticks leave nothing behind


# -- protocol misuse ----------------------------------------------------------------------------


def test_ack_of_an_unknown_or_finished_tuple_raises():
    cluster = LocalCluster(Hold, {"test.plan": [["a", 1, "m1"]]}, clock=Clock())
    drain(cluster, 2)
    hold, = instances(cluster, "hold")
    with pytest.raises(LocalStormError, match="unknown"):
        hold.ack("no-such-id")
    with pytest.raises(LocalStormError):
        hold.fail("no-such-id")
    hold.ack(hold.held[0])
    with pytest.raises(LocalStormError):
        hold.ack(hold.held[0])  # twice


def test_anchoring_to_an_acked_tuple_raises():
    cluster = LocalCluster(SplitHold, {"test.plan": [["a", 1, "m1"]]}, clock=Clock())
    drain(cluster, 3)
    hold, = instances(cluster, "hold")
    first = hold.held[0]
    hold.ack(first)
    with pytest.raises(LocalStormError, match="anchored"):
        hold.emit(["x", 0], anchors=[first.id])
    with pytest.raises(LocalStormError, match="anchored"):
        hold.emit(["x", 0], anchors=["never-seen"])


def test_unknown_command_raises():
    cluster = LocalCluster(Hold, {}, clock=Clock())
    hold, = instances(cluster, "hold")
    with pytest.raises(LocalStormError):
        hold.send_message({"command": "bogus"})


# -- java_hash ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("hello", 99162322),           # "hello".hashCode()
    ("", 0),
    ("a", 97),
    ("Aa", 2112), ("BB", 2112),    # the classic collision
    ("polygenelubricants", -2**31),  # hashes to Integer.MIN_VALUE
    ([1], 32),                     # List.of(1).hashCode()
    ([], 1),                       # List.of().hashCode()
    (["a", "b"], 4066),            # Arrays.asList("a", "b").hashCode()
    (0, 0), (42, 42), (2**31 - 1, 2**31 - 1),  # Integer.hashCode is the value
    (2**32, 1),                    # Long.hashCode(1L << 32) = (int)(v ^ v >>> 32)
    (True, 1231), (False, 1237),   # Boolean.hashCode
    (None, 0),
])
def test_java_hash_known_values(value, expected):
    assert java_hash(value) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_java_hash_of_strings_is_javas_formula(s):
    assert java_hash(s) == _java_string_hash(s)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=10), st.integers(0, 2**31 - 1)), max_size=6))
def test_java_hash_of_lists_is_javas_formula(items):
    hashes = [_java_string_hash(x) if isinstance(x, str) else x for x in items]
    assert java_hash(items) == _java_list_hash(hashes)
    assert java_hash(tuple(items)) == java_hash(items)


@settings(max_examples=200, deadline=None)
@given(st.integers(2**31, 2**63 - 1) | st.integers(-(2**63), -(2**31) - 1))
def test_java_hash_of_longs_is_javas_formula(v):
    bits = v % 2**64
    assert java_hash(v) == _signed32((bits ^ (bits >> 32)) & 0xFFFFFFFF)


def test_shuffle_spreads_over_tasks():
    class Shuffle4(Topology):
        spout = PlanSpout.spec(name="spout")
        rec = RecordBolt.spec(name="rec", par=4, inputs=[spout])

    plan = [["k", i, f"m{i}"] for i in range(200)]
    cluster = LocalCluster(Shuffle4, {"test.plan": plan}, clock=Clock())
    drain(cluster, 202)
    counts = Counter(len(b.seen) for b in instances(cluster, "rec"))
    assert sum(n * c for n, c in counts.items()) == 200
    assert all(len(b.seen) > 20 for b in instances(cluster, "rec"))


class TalkBolt(Bolt):
    """Logs, reports an error and closes; auto-acks."""

    outputs: list = []

    def initialize(self, conf, context):
        self.closed = False

    def process(self, tup):
        self.log(f"got {tup.values[0]}", level="warn")
        self.raise_exception(RuntimeError("boom"), tup)

    def close(self):
        self.closed = True


def test_run_until_done_logs_errors_observers_and_shutdown(caplog):
    class Talk(Topology):
        spout = PlanSpout.spec(name="spout")
        talk = TalkBolt.spec(name="talk", inputs=[spout])

    cluster = LocalCluster(Talk, {"test.plan": [["a", 1, "m1"], ["b", 2, "m2"]]},
                           clock=Clock())
    seen = []
    cluster.observers.append(lambda comp, task_id, stream, values, msg_id: seen.append(
        (comp, task_id, stream, values, msg_id)))
    spout, = instances(cluster, "spout")
    with caplog.at_level(logging.INFO, logger="forumstats.localstorm"):
        stats = cluster.run(until=lambda: len(spout.acked) == 2)
    assert spout.acked == ["m1", "m2"] and stats.acked == 2 and stats.spout_tuples == 2
    assert seen == [("spout", 1, "default", ["a", 1], "m1"),
                    ("spout", 1, "default", ["b", 2], "m2")]
    assert stats.by_stream == {("spout", "default"): 2}
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.WARNING, "talk[2] got a") in messages
    assert any(level == logging.ERROR and "RuntimeError" in msg for level, msg in messages)
    talk, = instances(cluster, "talk")
    assert not talk.closed
    cluster.shutdown()
    assert talk.closed
