"""WindowCountBolt run as Storm runs it (``streamparse_run bolts.window_count.WindowCountBolt``),
driven by the multi-lang driver playing Storm's ShellBolt.

The bolt holds every batch tuple un-acked until each window it touched has been emitted to
the sink anchored to it, so the spout's tuple tree completes only once the window is written.
The driver kills the "worker" (raises) on anything Storm would not accept: acking or anchoring
an unknown or finished id, undeclared streams, wrong field counts. So every test here also
proves the bolt never acks an id Storm did not give it.

Also here: a stray ``print()`` in a component cannot corrupt the protocol stream, proven with
wrapper components (in a temporary resources folder) that subclass ours and print; and, for a
Kafka source, a restarted task restores written windows before counting into them, while a
store it cannot read costs a failed (replayed) tuple, never the worker.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from tests.components.multilang import (
    DEFAULT_CONF,
    STREAMPARSE_RUN,
    ProtocolViolation,
    ShellBolt,
    ShellSpout,
    WorkerDied,
    component_conf,
    context_from_topology,
)
from tests.components.project import CONFIG, SRC, worker_env

from forumstats import devservices
from forumstats.counting import END_OF_INPUT, INPUT_IDLE
from forumstats.topology_config import topology_options

SCRIPT = "bolts.window_count.WindowCountBolt"
W = 1_767_225_600_000  # 2026-01-01T00:00Z, a window start
MIN = 60_000

PRINTING_COMPONENTS = '''\
"""Our components with a stray print() in their hot path (test wrappers, not shipped)."""
import sys

from bolts.parquet_sink import ParquetSinkBolt
from bolts.window_count import WindowCountBolt
from forumstats import stdio_guard
from spouts.kafka_events import KafkaEventSpout


class PrintingCountBolt(WindowCountBolt):
    def process(self, tup):
        print("stray print from WindowCountBolt.process", tup.id)
        super().process(tup)

    def process_tick(self, tup):
        print("stray print from WindowCountBolt.process_tick")
        super().process_tick(tup)


class PrintingSinkBolt(ParquetSinkBolt):
    def process(self, tup):
        print("stray print from ParquetSinkBolt.process", tup.id)
        super().process(tup)


class PrintingSpout(KafkaEventSpout):
    def next_tuple(self):
        print("stray print from KafkaEventSpout.next_tuple")
        super().next_tuple()


class UnguardedPrintingCountBolt(PrintingCountBolt):
    """The control: the same bolt with the guard undone, as pystorm alone leaves it."""

    def initialize(self, storm_conf, context):
        super().initialize(storm_conf, context)
        sys.stdout = stdio_guard._original_stdout
'''


# --------------------------------------------------------------------------- helpers






def topology_conf(**extra) -> dict:
    conf = dict(topology_options(str(CONFIG), "local").options)
    conf.update(extra)
    return conf


def batch(bucket: int, first: int, last: int, max_ts: int, rows: list, source="p-0",
          users: list | None = None, span: list | None = None) -> list:
    return [bucket, source, first, last, max_ts, rows, users or [], span]


def end_marker(bucket: int, source="p-0") -> list:
    return [bucket, source, -1, -1, END_OF_INPUT, [], [], None]


def idle_marker(bucket: int, source="p-0") -> list:
    return [bucket, source, -1, -1, INPUT_IDLE, [], [], None]




@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    """Storm's ``resources/`` folder: the contents of ``src/`` plus the printing wrappers."""
    res = tmp_path_factory.mktemp("resources")
    for package in ("spouts", "bolts", "forumstats"):
        (res / package).symlink_to(SRC / package, target_is_directory=True)
    (res / "printing_components").mkdir()
    (res / "printing_components" / "__init__.py").write_text("")
    (res / "printing_components" / "wrappers.py").write_text(PRINTING_COMPONENTS)
    return res


@pytest.fixture
def run_bolt(topology, resources, tmp_path):
    """``run_bolt(component, conf, unbuffered=..., script=...)``: one task of a topology
    component with the conf and context Storm gives it; ``script`` runs a wrapper class in
    its place (same conf and context)."""
    started: list = []

    def start(component="counts", conf=None, *, unbuffered=False, script=None, env=None,
              **kwargs):
        kwargs.setdefault("workdir", tmp_path / f"{component}{len(started)}")
        kind = ShellSpout if component == "events" else ShellBolt
        conf = topology_conf(**(conf or {}))
        child_env = worker_env(unbuffered=unbuffered, extra=env)
        if script is None:
            shell = kind.from_topology(topology, component, cwd=resources, conf=conf,
                                       env=child_env, **kwargs)
        else:
            conf = {**DEFAULT_CONF, **conf, **component_conf(topology, component)}
            shell = kind(STREAMPARSE_RUN, script, cwd=resources, conf=conf,
                         context=context_from_topology(topology, component),
                         env=child_env, **kwargs)
        started.append(shell)
        return shell

    yield start
    for shell in started:
        shell.close()


def end_markers(spout: ShellSpout) -> list:
    return [e for e in spout.emits if e.msg_id is None and e.values[4] == END_OF_INPUT]


def send(bolt: ShellBolt, values: list) -> str:
    return bolt.send_tuple(values, comp="events", stream="batches")


def settle(bolt: ShellBolt) -> None:
    """Everything the bolt wrote for the tuples sent so far has been read and checked."""
    bolt.flush()
    bolt.send_heartbeat()


def windows_in(execution) -> list:
    return [e for e in execution.emits if e.stream in ("windows", "dead_letters")]


def windows(bolt: ShellBolt, since: int = 0) -> list[tuple[int, dict, tuple]]:
    return [(e.values[0], e.values[1], e.anchors) for e in bolt.emits[since:]
            if e.stream == "windows"]


# --------------------------------------------------------------------------- tests


def test_inputs_are_held_until_their_windows_are_emitted_anchored_to_them(run_bolt, tmp_path):
    bolt = run_bolt()
    assert bolt.argv == [STREAMPARSE_RUN, SCRIPT]
    assert (tmp_path / "counts0" / "pids" / str(bolt.pid)).is_file()
    assert bolt.conf["topology.tick.tuple.freq.secs"] == 1  # the component's json_conf

    i1 = send(bolt, batch(0, 0, 99, W + 50_000, [[W, "general", "t1", "vote", 3],
                                                  [W, "general", "t2", "comment", 1]],
                          users=[[W, "general", "t1", ["u1", "u2"]]]))
    i2 = send(bolt, batch(0, 100, 199, W + 70_000, [[W, "general", "t1", "vote", 2],
                                                     [W + MIN, "general", "t1", "pageview", 5]],
                          users=[[W, "general", "t1", ["u2", "u3"]]]))
    empty = send(bolt, batch(0, 200, 299, W + 70_000, []))  # nothing for this bucket
    settle(bolt)
    assert bolt.acked == [empty]  # carries only event-time progress: acked at once
    tick = bolt.tick()
    assert tick.acked and windows_in(tick) == []  # watermark W+40s: no window has closed
    assert set(bolt.pending) == {i1, i2}
    assert bolt.acked == [empty, tick.id]

    marker = send(bolt, end_marker(0))
    bolt.wait_acked([marker, i1, i2])
    settle(bolt)

    out = windows(bolt)
    assert [(b, p["start"], anchors) for b, p, anchors in out] == [
        (0, W, (i1, i2)), (0, W + MIN, (i2,))]
    first, second = out[0][1], out[1][1]
    users = first.pop("users")
    assert first == {"size": MIN, "start": W, "revision": 1, "final": True,
                     "watermark": END_OF_INPUT,
                     "rows": [["general", "t1", "vote", 5], ["general", "t2", "comment", 1]],
                     "offsets": {"p-0": [[0, 99], [100, 199]]}}
    # u1, u2, u3 across both inputs (HLL list mode: exact but for float noise)
    assert [(f, t, round(e, 6)) for f, t, e, *_ in users["threads"]] == [("general", "t1", 3.0)]
    assert [(f, round(e, 6)) for f, e, *_ in users["forums"]] == [("general", 3.0)]
    assert second["users"] is None  # no user was named in that window
    assert second["rows"] == [["general", "t1", "pageview", 5]]
    assert second["offsets"] == {"p-0": [[100, 199]]}
    # The end marker is acked as it arrives; each input after its last window was emitted.
    assert bolt.acked[2:] == [marker, i1, i2]
    assert not bolt.pending and bolt.failed == []

    later = bolt.tick()
    assert later.acked and windows_in(later) == []  # final windows are not emitted again
    assert bolt.errors == [] and bolt.emitted("dead_letters") == []


def test_silence_never_closes_a_window_but_a_declared_idle_input_does(run_bolt):
    """Silence can be a partition held back upstream (max.spout.pending, pacing, a stalled
    sink): only the spout's idle marker (caught up and quiet) lets the watermark pass it."""
    bolt = run_bolt(conf={"forumstats.out_of_orderness": "1s", "forumstats.idle_timeout": "1s"})

    i1 = send(bolt, batch(1, 0, 9, W + MIN + 500, [[W, "help", "t", "vote", 1],
                                                    [W + MIN, "help", "t", "vote", 2]]))
    assert windows_in(bolt.tick()) == []  # watermark W+59.5s
    deadline = time.monotonic() + 3  # three times the idle timeout, in silence
    while time.monotonic() < deadline:
        assert windows_in(bolt.tick()) == [], "a silent input was taken for idle"
        time.sleep(0.2)
    declared_at = time.monotonic()
    idle = send(bolt, idle_marker(1))
    # Declared idle: event time moves on with the wall clock from W+59.5s, so W closes
    # 0.5 s after the declaration, on a tick.
    while not windows(bolt):
        assert time.monotonic() - declared_at < 15, "the idle input never let the window close"
        tick = bolt.tick()
        assert tick.acked
        time.sleep(0.1)
    assert time.monotonic() - declared_at >= 0.5
    assert [e.stream for e in windows_in(tick)] == ["windows"]  # emitted on that tick
    assert idle not in bolt.pending

    assert [(p["start"], p["rows"], a) for _b, p, a in windows(bolt)] == [
        (W, [["help", "t", "vote", 1]], (i1,))]
    assert list(bolt.pending) == [i1]  # W+60s is still open
    marker = send(bolt, end_marker(1))
    bolt.wait_acked([marker, i1])
    assert [p["start"] for _b, p, _a in windows(bolt)] == [W, W + MIN]


def test_a_replay_is_counted_once_and_rewrites_a_final_window(run_bolt):
    bolt = run_bolt()
    rows = [[W, "music", "t", "vote", 3]]

    i1 = send(bolt, batch(2, 0, 9, W + 10_000, rows))
    r1 = send(bolt, batch(2, 0, 9, W + 10_000, rows))  # a replay while the window is open
    i3 = send(bolt, batch(2, 10, 19, W + 100_000, [[W + MIN, "music", "t", "vote", 1]]))
    bolt.wait_acked([i1, r1])
    settle(bolt)
    ((_b, final, anchors),) = windows(bolt)
    assert anchors == (i1, r1)
    assert final["rows"] == [["music", "t", "vote", 3]]  # not 6
    assert final["offsets"] == {"p-0": [[0, 9]]}
    assert list(bolt.pending) == [i3]

    mark = len(bolt.emits)
    r2 = send(bolt, batch(2, 0, 9, W + 10_000, rows))  # a replay after the window was final
    settle(bolt)
    assert r2 not in bolt.acked  # re-written with the next tick's restatements
    bolt.tick()
    bolt.wait_acked(r2)
    settle(bolt)
    ((_b, rewrite, anchors),) = windows(bolt, mark)
    assert anchors == (r2,)
    assert rewrite == final  # the same window again, same revision and content: same file
    assert list(bolt.pending) == [i3]

    marker = send(bolt, end_marker(2))
    bolt.wait_acked([marker, i3])
    settle(bolt)
    assert [(p["start"], p["rows"]) for _b, p, _a in windows(bolt, mark + 1)] == [
        (W + MIN, [["music", "t", "vote", 1]])]
    assert bolt.emitted("dead_letters") == [] and bolt.errors == []


def test_rows_too_late_go_to_dead_letters_never_lost(run_bolt):
    bolt = run_bolt()
    ten = W + 10 * MIN
    i1 = send(bolt, batch(3, 0, 9, ten, [[W + 9 * MIN, "f", "t", "vote", 1]]))
    # watermark now ten - 30 s; windows starting at or before ten - 30 s - 5 min - 1 min
    # are closed for good.
    i2 = send(bolt, batch(3, 10, 19, ten, [[W, "f", "t", "vote", 4],
                                          [W + 9 * MIN, "f", "t2", "vote", 1]]))
    i3 = send(bolt, batch(3, 20, 29, ten, [[W + MIN, "f", "t", "comment", 2]]))
    bolt.wait_acked(i3)  # nothing left to count: acked once its dead letter is emitted
    settle(bolt)

    dead = [e for e in bolt.emits if e.stream == "dead_letters"]
    assert [(e.values[:4], e.anchors) for e in dead] == [
        (["p-0", 10, 19, "late3"], (i2,)), (["p-0", 20, 29, "late3"], (i3,))]
    (record,) = dead[0].values[4]
    reason, detail, raw_b64, kind, topic, partition, offset, received_ms, key_ts = record
    assert (reason, kind, topic, partition, offset, key_ts) == (
        "too_late", "aggregate", None, None, 10, W)
    assert "4 events" in detail and received_ms > 0
    assert json.loads(base64.b64decode(raw_b64)) == {
        "window_start": W, "forum": "f", "thread": "t", "type": "vote", "count": 4,
        "source": "p-0"}
    assert set(bolt.pending) == {i1, i2}

    marker = send(bolt, end_marker(3))
    bolt.wait_acked([marker, i1, i2])
    settle(bolt)
    ((_b, payload, anchors),) = windows(bolt)
    assert payload["start"] == W + 9 * MIN and anchors == (i1, i2)
    assert payload["rows"] == [["f", "t", "vote", 1], ["f", "t2", "vote", 1]]
    assert bolt.errors == []


def test_spout_batches_through_the_count_bolt_add_up(run_bolt):
    """The spout's real tuples (generator source) into a count task: every accepted event is
    in exactly one emitted window, and every batch tuple is acked once its windows are out."""
    spout = run_bolt("events", conf={"forumstats.source": "generator",
                                     "forumstats.generator.events": 1500,
                                     "forumstats.kafka.batch_size": 500})
    spout.next_until(lambda: len(end_markers(spout)) == 4, timeout=20)
    bolt = run_bolt()

    accepted = 0
    by_bolt_id = {}
    for emit in spout.emits:
        if emit.stream != "batches":
            continue
        accepted += sum(row[4] for row in emit.values[5])
        tup_id = bolt.send_tuple(emit.values, comp="events", stream="batches")
        by_bolt_id[tup_id] = emit.msg_id
    bolt.wait_acked(list(by_bolt_id), timeout=10)
    settle(bolt)

    # Out-of-order events within the allowed lateness restate a final window: a later
    # revision carries the window's whole content, so the newest revision of each counts.
    latest: dict[tuple[int, int], dict] = {}
    for bucket, payload, _anchors in windows(bolt):
        key = (bucket, payload["start"])
        assert payload["final"]
        assert payload["revision"] == (latest[key]["revision"] + 1 if key in latest else 1)
        latest[key] = payload
    counted = sum(row[3] for payload in latest.values() for row in payload["rows"])
    assert counted == accepted > 1400
    for msg_id in spout.pending_ids:  # the dead-letter tuples would go to the sink
        spout.ack(msg_id)
    assert spout.pending_ids == []


@pytest.mark.parametrize(
    ("component", "script"),
    [
        ("counts", "printing_components.wrappers.PrintingCountBolt"),
        ("sink", "printing_components.wrappers.PrintingSinkBolt"),
        ("events", "printing_components.wrappers.PrintingSpout"),
    ],
)
def test_a_stray_print_cannot_reach_the_protocol_stream(run_bolt, tmp_path, component, script):
    """Unbuffered stdout, the sharpest case: an unguarded print corrupts the next frame."""
    conf = {"forumstats.output": str(tmp_path / "out"), "forumstats.source": "generator",
            "forumstats.generator.events": 600, "forumstats.kafka.batch_size": 500}
    shell = run_bolt(component, conf, unbuffered=True, script=script)
    if component == "events":
        shell.next_until(lambda: len(end_markers(shell)) == 4)
        shell.next()
    elif component == "counts":
        held = send(shell, batch(0, 0, 9, W, [[W, "f", "t", "vote", 1]]))
        marker = send(shell, end_marker(0))
        shell.wait_acked([held, marker])
        assert shell.tick().acked
    else:
        payload = {"size": MIN, "start": W, "revision": 1, "final": True, "watermark": W + MIN,
                   "rows": [["f", "t", "vote", 1]], "offsets": {"p-0": [[0, 9]]}}
        tup_id = shell.send_tuple([0, payload], comp="counts", stream="windows")
        deadline = time.monotonic() + 10
        while tup_id not in shell.outcomes and time.monotonic() < deadline:
            shell.tick()
        shell.wait_acked(tup_id)
    if component == "events":
        shell.activate()
    else:
        shell.send_heartbeat()
    assert shell.alive and shell.garbage == [] and shell.errors == []
    assert "stray print from" in shell.stderr_text()  # where Storm's worker log gets it
    shell.close()
    assert shell.garbage == [] and shell.trailing_output == ""


def test_the_print_control_without_the_guard_breaks_the_stream(run_bolt):
    """Proves the test above can fail: the same bolt with the guard undone kills the worker."""
    bolt = run_bolt("counts", unbuffered=True,
                    script="printing_components.wrappers.UnguardedPrintingCountBolt")
    with pytest.raises(WorkerDied) as excinfo:  # a tuple acked at once: print, then ack
        bolt.execute(batch(0, 0, 9, W, []), comp="events", stream="batches", timeout=5)
    assert isinstance(excinfo.value, ProtocolViolation)
    assert "stray print" in str(excinfo.value)


# --------------------------------------------------------------------------- restarts


def test_a_restarted_task_restores_written_windows_and_skips_replays(run_bolt, tmp_path):
    """Kafka offsets name the same records in every run: a new count task (after a crash)
    reads what was written for a window before counting into it, so a replay of a range
    already in the file is not counted again and the rewrite never holds less."""
    conf = {"forumstats.output": str(tmp_path / "out")}  # source: kafka (config.json)
    first = run_bolt("counts", conf)
    rows = [[W, "f", "t", "vote", 3]]
    i1 = send(first, batch(0, 0, 9, W + 5000, rows))
    first.wait_acked(send(first, end_marker(0)))
    first.wait_acked(i1)
    ((_b, written, _a),) = windows(first)
    first.kill()  # the crash: its memory is gone, the file stays

    sink = run_bolt("sink", conf)
    stored = sink.send_tuple([0, written], comp="counts", stream="windows")
    deadline = time.monotonic() + 10
    while stored not in sink.outcomes:
        assert time.monotonic() < deadline
        sink.tick()
    sink.wait_acked(stored)

    second = run_bolt("counts", conf)
    replay = send(second, batch(0, 0, 9, W + 5000, rows))  # the crash failed the tree
    fresh = send(second, batch(0, 10, 19, W + 6000, [[W, "f", "t", "vote", 2]]))
    second.wait_acked([send(second, end_marker(0)), replay, fresh])
    # The replay is recognised in the restored window and new data restates it on top of
    # what was written (3 restored + 2 new, not 3 + 3 + 2): one restatement holds both.
    ((_b, restated, anchors),) = windows(second)
    assert sorted(anchors) == sorted((replay, fresh))
    assert restated["rows"] == [["f", "t", "vote", 5]]
    assert restated["offsets"] == {"p-0": [[0, 9], [10, 19]]}
    assert restated["revision"] == written["revision"] + 1
    assert second.errors == []


def test_a_store_outage_fails_the_tuple_but_keeps_the_worker(run_bolt, tmp_path):
    """Restoring a window reads the store on the protocol loop. While S3 is down that read
    must neither outlast the heartbeat timeout nor crash the task (losing every window it
    holds): the tuple is failed, Storm replays the batch, and the replay counts normally."""
    with devservices.SeaweedS3(tmp_path / "seaweed") as s3:
        bucket = s3.create_bucket("counts-out")
        conf = {"forumstats.output": f"s3://{bucket}/agg",
                "forumstats.s3.endpoint_url": s3.endpoint_url}
        env = {k: v for k, v in s3.env().items() if k != "AWS_ENDPOINT_URL"}
        bolt = run_bolt("counts", conf, env=env, subprocess_timeout=4, heartbeat_interval=1.0)
        s3.stop()

        rows = [[W, "f", "t", "vote", 1]]
        attempt = send(bolt, batch(0, 0, 9, W + 5000, rows))
        assert bolt.wait_finished([attempt], timeout=10) == {attempt: "fail"}
        assert bolt.send_heartbeat() < 4
        assert bolt.errors == [] and bolt.alive
        assert any("failed for replay" in m for m in bolt.log_messages(min_level=3))

        s3.start()
        replay = send(bolt, batch(0, 0, 9, W + 5000, rows))
        bolt.wait_acked([send(bolt, end_marker(0)), replay], timeout=20)
        ((_b, payload, anchors),) = windows(bolt)
        assert anchors == (replay,) and payload["rows"] == [["f", "t", "vote", 1]]
        assert bolt.errors == []
