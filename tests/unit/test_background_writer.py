"""BackgroundWriter: one thread, supersede-by-key, store errors retried forever with capped
backoff, other errors given up at once and reported with failed()."""

from __future__ import annotations

import threading
import time

from forumstats.background_writer import BackgroundWriter
from forumstats.errors import StoreError

WAIT = 5.0  # generous: only reached when something is broken


def collect(writer: BackgroundWriter, n: int) -> list:
    """Tokens from done() until n arrived (or WAIT passed)."""
    out: list = []
    deadline = time.monotonic() + WAIT
    while len(out) < n and time.monotonic() < deadline:
        out += writer.done()
        time.sleep(0.001)
    return out


class Gate:
    """A write function that blocks on jobs named in ``hold`` until released."""

    def __init__(self, hold=()) -> None:
        self.hold = set(hold)
        self.started = threading.Event()
        self.release = threading.Event()
        self.written: list = []
        self.lock = threading.Lock()

    def __call__(self, job) -> None:
        if job in self.hold:
            self.started.set()
            assert self.release.wait(WAIT)
        with self.lock:
            self.written.append(job)


def test_jobs_are_written_in_submission_order_and_tokens_reported_in_order():
    gate = Gate()
    writer = BackgroundWriter(gate)
    for i in range(5):
        writer.submit(f"k{i}", f"job{i}", f"t{i}")
    assert collect(writer, 5) == [f"t{i}" for i in range(5)]
    assert gate.written == [f"job{i}" for i in range(5)]
    assert writer.pending() == 0 and writer.done() == []


def test_supersede_keeps_the_newest_job_and_reports_every_token():
    gate = Gate(hold={"busy"})
    writer = BackgroundWriter(gate)
    writer.submit("other", "busy", "t0")
    assert gate.started.wait(WAIT)  # the thread is inside a write: the rest waits
    writer.submit("a", "a1", "t1")
    writer.submit("b", "b1", "t2")
    writer.submit("a", "a2", "t3")  # replaces a1, keeps a's place in the order
    writer.submit("a", "a3", "t4")
    assert writer.pending() == 2
    assert writer.done() == [] and not writer.idle()
    gate.release.set()
    assert collect(writer, 5) == ["t0", "t1", "t3", "t4", "t2"]
    assert writer.idle() and writer.pending() == 0
    assert gate.written == ["busy", "a3", "b1"]  # a1 and a2 never written


def test_a_job_submitted_while_its_key_is_being_written_is_written_again_after():
    gate = Gate(hold={"a1"})
    writer = BackgroundWriter(gate)
    writer.submit("a", "a1", "t1")
    assert gate.started.wait(WAIT)
    assert writer.pending() == 0 and not writer.idle()  # nothing waiting, one running
    writer.submit("a", "a2", "t2")  # a1 is already running: a2 must not be lost
    gate.release.set()
    assert collect(writer, 2) == ["t1", "t2"]
    assert gate.written == ["a1", "a2"]


def test_failing_write_is_retried_with_capped_backoff_and_tokens_wait_for_success():
    attempts: list = []
    sleeps: list = []
    may_succeed = threading.Event()
    retrying = threading.Event()

    def write(job):
        attempts.append(job)
        if len(attempts) <= 5 or not may_succeed.is_set():
            raise StoreError("store down")

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) >= 5:
            retrying.set()
            time.sleep(0.001)

    writer = BackgroundWriter(write, backoff_s=0.5, backoff_cap_s=3.0, sleep=sleep)
    writer.submit("k", "job", "t1")
    writer.submit("k2", "job2", "t2")
    assert retrying.wait(WAIT)
    assert writer.done() == []  # nothing reported while the write keeps failing
    assert sleeps[:5] == [0.5, 1.0, 2.0, 3.0, 3.0]  # doubled, capped
    assert all(s <= 3.0 for s in sleeps)
    may_succeed.set()
    assert collect(writer, 2) == ["t1", "t2"]
    assert writer.failures == len(sleeps) >= 5
    assert attempts[-1] == "job2" and set(attempts[:-1]) == {"job"}


def test_real_sleep_default_backoff_is_short_enough_for_one_retry():
    calls = []

    def write(job):
        calls.append(job)
        if len(calls) == 1:
            raise StoreError("once")

    writer = BackgroundWriter(write, backoff_s=0.01)
    writer.submit("k", "j", "t")
    assert collect(writer, 1) == ["t"]
    assert calls == ["j", "j"] and writer.failures == 1


def test_a_non_store_error_is_not_retried_and_its_tokens_are_reported_failed():
    gate = Gate(hold={"busy"})
    boom = ValueError("bad job")

    def write(job):
        if job == "poison":
            raise boom
        gate(job)

    sleeps: list = []
    writer = BackgroundWriter(write, sleep=sleeps.append)
    writer.submit("x", "busy", "t0")
    assert gate.started.wait(WAIT)
    writer.submit("p", "poison", "t1")
    writer.submit("p", "poison", "t2")  # superseded: both tokens fail together
    writer.submit("q", "fine", "t3")
    gate.release.set()
    assert collect(writer, 2) == ["t0", "t3"]  # the poisoned job does not wedge the queue
    assert writer.failed() == [("t1", boom), ("t2", boom)]
    assert sleeps == [] and writer.failures == 0
    assert gate.written == ["busy", "fine"]


def test_tokens_wait_for_follow_ups_and_jobs_needing_one_follow_up_share_it():
    gate = Gate(hold={"busy"})
    runs: list = []

    def write(job):
        gate(job)
        runs.append(job)
        if job.startswith("window"):
            return [("hour", "rebuild hour")]  # every window of the hour needs its rebuild
        if job == "rebuild hour":
            return [("day", "rebuild day")]
        return None

    writer = BackgroundWriter(write)
    writer.submit("x", "busy", "t0")
    assert gate.started.wait(WAIT)
    for i in range(3):
        writer.submit(f"w{i}", f"window{i}", f"t{i + 1}")
    gate.release.set()
    assert collect(writer, 4) == ["t0", "t1", "t2", "t3"]
    # the three windows ran before the follow-up they queued: one hour and one day rebuild
    assert runs == ["busy", "window0", "window1", "window2", "rebuild hour", "rebuild day"]
    assert writer.idle()


def test_a_token_whose_follow_up_fails_is_reported_failed_once_and_never_done():
    def write(job):
        if job == "window":
            return [("a", "follow a"), ("b", "follow b")]
        if job == "follow a":
            raise ValueError("bad rollup")
        return None

    writer = BackgroundWriter(write)
    writer.submit("w", "window", "t1")
    deadline = time.monotonic() + WAIT
    while not writer.idle() and time.monotonic() < deadline:
        time.sleep(0.001)
    failed = writer.failed()
    assert [(token, str(exc)) for token, exc in failed] == [("t1", "bad rollup")]
    assert writer.done() == [] and writer.failed() == []
