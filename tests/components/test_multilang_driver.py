"""The multi-lang driver itself, proven against the sample components.

Each sample runs as a real subprocess (``streamparse_run sample_bolts...``) and the
driver plays the Java side of Storm's protocol. These tests also pin down how pystorm
3.1.4 behaves, since our real components inherit it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from tests.components.multilang import (
    BackpressureTimeout,
    DriverUsageError,
    Emit,
    HandshakeError,
    MessageDropped,
    ProtocolViolation,
    SubprocessExited,
    SubprocessTimeout,
    make_context,
)

from forumstats import stdio_guard

ECHO = "sample_bolts.echo.EchoBolt"
ECHO_IO = {
    "outputs": {"default": ["value"], "ticks": ["freq"]},
    "inputs": {("spout", "default"): ["word"]},
}
ONE_FIELD = {"outputs": {"default": ["value"]}, "inputs": {("spout", "default"): ["word"]}}
PYSTORM_HELLO = 'pystorm StormHandler logging enabled, so all messages at levels greater than "pystorm.log.level" (info) will be sent to Storm.'  # noqa: E501


# --------------------------------------------------------------------------- handshake


def test_handshake_creates_pid_file_and_reports_the_real_pid(run_bolt, tmp_path):
    bolt = run_bolt(ECHO, component_id="echo", **ECHO_IO)

    pid_file = tmp_path / "bolt0" / "pids" / str(bolt.pid)
    assert pid_file.is_file() and pid_file.stat().st_size == 0
    assert bolt.alive
    # pystorm's first message after the pid reply: one log command at INFO.
    bolt.send_heartbeat()
    assert bolt.logs[0].level == 2 and bolt.logs[0].msg == PYSTORM_HELLO


def test_handshake_sends_a_storm_like_context(run_bolt):
    bolt = run_bolt(ECHO, component_id="echo", task_id=7, **ECHO_IO)

    ctx = bolt.context
    assert ctx["taskid"] == 7 and ctx["task->component"]["7"] == "echo"
    assert set(ctx["task->component"].values()) == {"echo", "spout", "__acker"}
    assert ctx["streams"] == ["default", "ticks"]
    assert ctx["stream->outputfields"] == {"default": ["value"], "ticks": ["freq"]}
    assert ctx["source->stream->grouping"] == {"spout": {"default": {"type": "SHUFFLE"}}}
    assert ctx["source->stream->fields"] == {"spout": {"default": ["word"]}}
    assert bolt.conf["topology.shellbolt.max.pending"] == 100
    assert bolt.subprocess_timeout == 30  # supervisor.worker.timeout.secs fallback


def test_a_component_that_cannot_start_fails_the_handshake_with_its_traceback(run_bolt):
    with pytest.raises(HandshakeError) as excinfo:
        run_bolt("sample_bolts.missing.NoSuchBolt", **ONE_FIELD)
    message = str(excinfo.value)
    assert "Pipe to subprocess seems to be broken" in message
    assert "ModuleNotFoundError" in message  # the child's stderr is included


# --------------------------------------------------------------------------- bolts


def test_bolt_emit_is_anchored_to_the_input_and_the_input_is_acked(run_bolt):
    bolt = run_bolt(ECHO, **ECHO_IO)

    result = bolt.execute(["hello"])

    assert result.acked and bolt.acked == [result.id] and not bolt.pending
    assert result.emits == [
        Emit(stream="default", values=["hello"], anchors=(result.id,), need_task_ids=False)
    ]
    sent = bolt.sent[-1]
    assert (sent.comp, sent.stream, sent.task) == ("spout", "default", 3)  # spout's task


def test_many_tuples_in_flight_are_all_acked_in_order(run_bolt):
    bolt = run_bolt(ECHO, **ECHO_IO)

    ids = [bolt.send_tuple([f"w{i}"]) for i in range(50)]
    bolt.wait_acked(ids)

    assert bolt.acked == ids
    assert bolt.emitted() == [[f"w{i}"] for i in range(50)]
    assert [e.anchors for e in bolt.emits] == [(i,) for i in ids]


def test_emit_with_need_task_ids_gets_the_target_tasks(run_bolt):
    targets = {"default": {"sink": {"type": "SHUFFLE"}}}
    bolt = run_bolt(ECHO, targets=targets, **ECHO_IO)
    sink_task = int(next(t for t, c in bolt.context["task->component"].items() if c == "sink"))

    result = bolt.execute(["need-task-ids"])

    assert result.emits[0].need_task_ids and result.emits[0].task_ids == [sink_task]
    assert result.logs[-1].msg.endswith(f"need-task-ids went to tasks [{sink_task}]")


def test_heartbeat_is_answered_with_sync_in_time(run_bolt):
    bolt = run_bolt(ECHO, subprocess_timeout=2, **ECHO_IO)

    latency = bolt.send_heartbeat()

    assert latency < 2
    assert bolt.heartbeats_sent == 1 and bolt.sync_count == 1
    assert not bolt.acked and not bolt.failed  # heartbeats are never acked
    assert bolt.received_commands[-1] == "sync"


def test_heartbeat_not_answered_within_the_subprocess_timeout_kills(run_bolt):
    bolt = run_bolt("sample_bolts.slow.SleepyBolt", subprocess_timeout=1)
    bolt.send_tuple(["5"])
    bolt.flush()  # a heartbeat would overtake a tuple still queued, as in Storm

    start = time.monotonic()
    with pytest.raises(SubprocessTimeout, match="subprocess heartbeat timeout"):
        bolt.send_heartbeat()
    assert time.monotonic() - start < 3
    with pytest.raises(SubprocessTimeout):  # the driver stays dead, like the worker
        bolt.send_tuple(["0"])


def test_storm_like_heartbeat_timer_keeps_an_idle_bolt_alive(run_bolt):
    bolt = run_bolt(ECHO, heartbeat_interval=0.1, subprocess_timeout=0.5, **ECHO_IO)

    bolt.pump(1.5)  # idle far longer than the timeout

    assert bolt.heartbeats_sent >= 5 and bolt.sync_count >= 5
    assert bolt.execute(["still alive"]).acked


def test_storm_like_heartbeat_timer_kills_a_bolt_busy_for_too_long(run_bolt):
    bolt = run_bolt("sample_bolts.slow.SleepyBolt", heartbeat_interval=0.1, subprocess_timeout=0.5)
    bolt.execute(["0.2"])  # busy for less than the timeout: fine

    bolt.send_tuple(["3"])
    with pytest.raises(SubprocessTimeout, match="nothing received for"):
        bolt.pump(3)


def test_tick_tuple_is_delivered_as_storm_sends_it_and_acked(run_bolt):
    bolt = run_bolt(ECHO, **ECHO_IO)

    result = bolt.tick(freq=5)

    tick = bolt.sent[-1]
    assert (tick.comp, tick.stream, tick.task, tick.values) == ("__system", "__tick", -1, [5])
    assert result.acked
    assert result.values("ticks") == [[5]]


def test_bolt_raising_in_process_reports_error_fails_the_tuple_and_exits(run_bolt):
    """pystorm 3.1.4 on an exception in process(): logs it (ERROR, with traceback), sends
    ``error``, then ``sync``, fails the tuple (auto_fail), and exits with status 1."""
    bolt = run_bolt("sample_bolts.failing.RaisingBolt", **ONE_FIELD)
    assert bolt.execute(["fine"]).acked
    before = len(bolt.received_commands)

    boom = bolt.send_tuple(["boom"])
    with pytest.raises(SubprocessExited) as excinfo:
        bolt.pump(5)

    assert excinfo.value.returncode == 1
    assert bolt.received_commands[before:] == ["log", "error", "sync", "fail"]
    assert bolt.logs[-1].level == 4 and "Exception in RaisingBolt.run()" in bolt.logs[-1].msg
    (error,) = bolt.errors
    assert error.startswith("Python ValueError raised while processing Tuple")
    assert "cannot process boom" in error and "Traceback" in error
    assert bolt.failed == [boom]


@pytest.mark.parametrize(
    ("action", "exc_type", "fragment"),
    [
        ("ack-unknown", ProtocolViolation, "Acked a non-existent or already acked/failed id"),
        ("fail-unknown", ProtocolViolation, "Failed a non-existent or already acked/failed id"),
        ("double-ack", ProtocolViolation, "Acked a non-existent or already acked/failed id"),
        ("anchor-unknown", ProtocolViolation, "Anchored onto made-up-id after ack/fail"),
        ("anchor-after-ack", ProtocolViolation, "after ack/fail"),
        ("not-json", ProtocolViolation, "unparseable output"),
        ("json-list", ProtocolViolation, "not an object"),
        ("no-command", ProtocolViolation, "Command not found"),
        ("unknown-command", ProtocolViolation, "Unknown command received: 'bogus'"),
        ("undeclared-stream", ProtocolViolation, "Unknown stream ID: 'nowhere'"),
        ("wrong-field-count", ProtocolViolation, "wrong number of fields"),
        ("direct", ProtocolViolation, "direct emit to task 5"),
        ("nan", MessageDropped, "Failed to send message"),
        ("exit", SubprocessExited, "exit status 3"),
    ],
)
def test_protocol_violations_are_detected(run_bolt, action, exc_type, fragment):
    bolt = run_bolt("sample_bolts.bad.MisbehavingBolt", **ONE_FIELD)
    assert bolt.execute(["fine"]).acked

    with pytest.raises(exc_type, match=fragment):
        bolt.execute([action])


def test_acking_a_made_up_id_is_a_protocol_violation_and_the_worker_stays_dead(run_bolt):
    bolt = run_bolt("sample_bolts.bad.MisbehavingBolt", **ONE_FIELD)
    bolt.send_tuple(["ack-unknown"])

    with pytest.raises(ProtocolViolation, match="'made-up-id'"):
        bolt.pump(5)
    with pytest.raises(ProtocolViolation):
        bolt.send_tuple(["fine"])


def test_driver_refuses_input_storm_would_never_deliver(run_bolt):
    bolt = run_bolt(ECHO, **ECHO_IO)

    with pytest.raises(DriverUsageError, match="does not subscribe"):
        bolt.send_tuple(["x"], comp="other")
    with pytest.raises(DriverUsageError, match="declares fields"):
        bolt.send_tuple(["x", "y"])
    tup_id = bolt.send_tuple(["x"])
    with pytest.raises(DriverUsageError, match="already pending"):
        bolt.send_tuple(["x"], id=tup_id)


def test_max_pending_bounds_the_tuples_queued_for_the_subprocess(run_bolt):
    """Storm's writer queue holds at most topology.shellbolt.max.pending tuples; once the
    subprocess stops reading (busy) and the pipe is full, send_tuple blocks."""
    bolt = run_bolt(
        "sample_bolts.slow.SleepyBolt",
        max_pending=5,
        send_timeout=0.3,
        inputs={("spout", "default"): ["secs", "padding"]},
    )
    bolt.send_tuple(["3", ""])  # keeps the bolt busy; the rest piles up
    padding = "x" * 20_000
    sent = 0
    with pytest.raises(BackpressureTimeout, match="max.pending=5"):
        for _ in range(100):
            bolt.send_tuple(["0", padding])
            sent += 1
    assert bolt.outstanding == 5 and bolt.max_outstanding_seen == 5
    assert sent < 30  # a few in the pipe, a few read, five queued


def test_max_pending_does_not_limit_tuples_the_bolt_holds_unacked(run_bolt):
    """Written tuples do not count, so a bolt may hold more than max_pending unacked
    tuples (a windowing bolt does); the emit on the tick is anchored to all of them."""
    bolt = run_bolt("sample_bolts.batch.CountingBolt", max_pending=10, send_timeout=2)

    ids = [bolt.send_tuple([i]) for i in range(50)]
    bolt.send_heartbeat()  # a barrier: everything before it has been read
    assert len(bolt.pending) == 50 and not bolt.acked

    result = bolt.tick()

    assert result.acked
    (count,) = [e for e in result.emits if e.stream == "default"]
    assert count.values == [50] and set(count.anchors) == set(ids)
    bolt.wait_acked(ids)


def test_make_context_task_layout_follows_storm():
    ctx = make_context(
        "counter",
        outputs={"default": ["n"]},
        targets={"default": {"echo": {"type": "FIELDS", "fields": ["n"]}}},
    )
    # Storm numbers tasks from 1 over the sorted component ids.
    assert ctx["task->component"] == {"1": "__acker", "2": "counter", "3": "echo"}
    assert ctx["taskid"] == 2


# --------------------------------------------------------------------------- spouts


COUNTER = "sample_spouts.counter.CounterSpout"
COUNTER_IO = {"outputs": {"default": ["n"]}}


def test_spout_commands_each_end_in_sync(run_spout):
    spout = run_spout(COUNTER, conf={"counter.limit": 2}, **COUNTER_IO)

    activate = spout.activate()
    assert activate.logs[0].msg == PYSTORM_HELLO
    assert activate.logs[1].msg.endswith("activated")
    first, second, empty = spout.next(), spout.next(), spout.next()
    assert (first.values(), first.msg_ids) == ([[0]], ["n-0"])
    assert (second.values(), second.msg_ids) == ([[1]], ["n-1"])
    assert empty.emits == []
    assert empty.elapsed < 0.5  # pystorm does not sleep on an empty next_tuple
    assert spout.pending_ids == ["n-0", "n-1"]

    failed = spout.fail("n-0")  # the sample replays it under the same id
    assert failed.msg_ids == ["n-0"] and failed.logs[0].msg.endswith("failed n-0, replaying")
    assert spout.ack("n-0").logs[0].msg.endswith("acked n-0")
    assert spout.ack("n-1").logs[0].msg.endswith("acked n-1")
    assert spout.deactivate().logs[0].msg.endswith("deactivated")

    assert spout.sync_count == 8  # one per command
    assert spout.pending_ids == []


def test_spout_ack_or_fail_only_for_pending_ids(run_spout):
    spout = run_spout(COUNTER, **COUNTER_IO)
    spout.next()

    with pytest.raises(DriverUsageError, match="never acks"):
        spout.ack("n-42")
    spout.ack("n-0")
    with pytest.raises(DriverUsageError, match="already completed"):
        spout.fail("n-0")


def test_unreliable_spout_emits_are_not_tracked(run_spout):
    spout = run_spout(COUNTER, conf={"counter.unreliable": True}, **COUNTER_IO)

    step = spout.next()

    assert step.values() == [[0]] and step.msg_ids == [] and spout.pending_ids == []
    with pytest.raises(DriverUsageError):
        spout.ack(None)


def test_spout_next_respects_max_spout_pending(run_spout):
    spout = run_spout(
        COUNTER, conf={"counter.limit": 5, "topology.max.spout.pending": 2}, **COUNTER_IO
    )
    spout.next()
    spout.next()

    with pytest.raises(DriverUsageError, match="max.spout.pending"):
        spout.next()
    spout.ack("n-0")
    assert spout.next().msg_ids == ["n-2"]


def test_spout_that_does_not_sync_in_time_kills_the_worker(run_spout):
    spout = run_spout(
        "sample_spouts.stuck.StuckSpout",
        conf={"stuck.sleep": 30},
        subprocess_timeout=0.5,
        **COUNTER_IO,
    )

    start = time.monotonic()
    with pytest.raises(SubprocessTimeout, match="no sync for 'next'"):
        spout.next()
    assert time.monotonic() - start < 2
    spout.close()
    assert spout.returncode is not None  # terminated, not waited for


def test_spout_to_bolt_round_trip(run_spout, run_bolt):
    """What a Storm worker does for a tiny topology: spout -> bolt -> ack to the spout."""
    spout = run_spout(COUNTER, conf={"counter.limit": 3}, **COUNTER_IO)
    bolt = run_bolt(ECHO, inputs={("counter", "default"): ["n"]}, outputs=ECHO_IO["outputs"])

    spout.next_until(lambda: len(spout.emits) == 3)
    for emit in spout.emits:
        result = bolt.execute(emit.values, comp="counter")
        assert result.acked and result.values() == [emit.values]
        spout.ack(emit.msg_id)

    assert spout.pending_ids == [] and spout.acked == ["n-0", "n-1", "n-2"]


# --------------------------------------------------------------------------- stdout guard


@pytest.mark.parametrize("unbuffered", [True, False], ids=["unbuffered", "buffered"])
def test_guarded_print_never_reaches_the_protocol_stream(run_bolt, child_env, tmp_path, unbuffered):
    bolt = run_bolt(
        "sample_bolts.printer.PrintingBolt",
        env=child_env(unbuffered=unbuffered),
        conf={"pystorm.log.path": str(tmp_path)},
        **ONE_FIELD,
    )

    for i in range(3):
        assert bolt.execute([f"v{i}"]).values() == [[f"v{i}"]]
    bolt.close()

    assert bolt.garbage == [] and bolt.trailing_output == ""
    assert bolt.stderr_text() == "oops\n" * 3  # where Storm's worker log picks it up


@pytest.mark.parametrize("log_path", [True, False], ids=["log-file", "storm-handler"])
def test_unguarded_print_corrupts_the_next_frame_when_unbuffered(
    run_bolt, child_env, tmp_path, log_path
):
    """pystorm 3.1.4 redirects stdout in neither logging configuration."""
    conf = {"pystorm.log.path": str(tmp_path)} if log_path else {}
    bolt = run_bolt(
        "sample_bolts.printer.UnguardedPrintingBolt",
        env=child_env(unbuffered=True),
        conf=conf,
        **ONE_FIELD,
    )

    with pytest.raises(ProtocolViolation, match=r"unparseable output .*'oops\\n\{"):
        bolt.execute(["v0"])


def test_unguarded_print_corrupts_the_stream_later_when_buffered(run_bolt, child_env, tmp_path):
    """With block-buffered stdout the stray text waits in sys.stdout's buffer and reaches
    the protocol stream later (after 8 KiB, or at exit): the failure looks random."""
    bolt = run_bolt(
        "sample_bolts.printer.UnguardedPrintingBolt",
        env=child_env(unbuffered=False),
        conf={"pystorm.log.path": str(tmp_path)},
        **ONE_FIELD,
    )

    for i in range(3):
        assert bolt.execute([f"v{i}"]).acked  # looks fine for now
    bolt.close()

    assert bolt.garbage == ["oops\noops\noops"]
    assert bolt.stderr_text() == ""


def test_protect_protocol_stream_points_stdout_at_stderr(monkeypatch, capfd):
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # restored after the test
    monkeypatch.setattr(stdio_guard, "_original_stdout", None)
    monkeypatch.setattr(stdio_guard, "_replacement", None)
    original = sys.stdout

    installed = stdio_guard.protect_protocol_stream()
    print("stray")
    sys.stdout.flush()

    assert sys.stdout is installed and installed is sys.__stderr__
    assert stdio_guard.is_protected()
    assert stdio_guard.protect_protocol_stream() is installed  # idempotent
    assert stdio_guard._original_stdout is original  # kept alive: fd 1 stays open
    out, err = capfd.readouterr()
    assert "stray" in err and "stray" not in out


def test_stdio_guard_imports_neither_streamparse_nor_pystorm():
    code = (
        "import sys, forumstats.stdio_guard; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('streamparse', 'pystorm')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
