"""ParquetSinkBolt run as Storm runs it (``streamparse_run bolts.parquet_sink.ParquetSinkBolt``),
driven by the multi-lang driver playing Storm's ShellBolt.

The sink writes on a background thread and acks a tuple on the next tuple or tick after its
objects are durable. So: a tuple is never acked before its files exist; while the store is
unreachable nothing is acked but heartbeats are still answered (Storm would otherwise kill the
worker after ``topology.subprocess.timeout.secs``); once the store is back everything is
written and acked; and Storm's ``error`` command is used only for real failures, never for a
store outage that retrying rides out.

The S3 test runs its own SeaweedFS, so stopping it disturbs no other test.
"""

from __future__ import annotations

import base64
import io
import time

import pyarrow.parquet as pq
import pytest
from tests.components.multilang import STREAMPARSE_RUN, ShellBolt, SubprocessExited
from tests.components.project import CONFIG, worker_env

from forumstats import devservices, keys
from forumstats.topology_config import topology_options

SCRIPT = "bolts.parquet_sink.ParquetSinkBolt"
W = 1_767_225_600_000  # 2026-01-01T00:00Z
MIN = 60_000
DATASETS = ("thread_counts", "forum_counts")


# --------------------------------------------------------------------------- helpers






def window(start: int, rows: list, *, watermark: int | None = None, revision: int = 1) -> dict:
    return {"size": MIN, "start": start, "revision": revision, "final": True,
            "watermark": start + 2 * MIN if watermark is None else watermark,
            "rows": rows, "offsets": {"p-0": [[0, 9]]}}


def window_keys(bucket: int, start: int) -> list[str]:
    return [keys.window_key(d, MIN, start, bucket) for d in DATASETS]






@pytest.fixture
def run_sink(topology, resources, tmp_path):
    started: list[ShellBolt] = []

    def start(conf: dict, env: dict[str, str] | None = None, **kwargs) -> ShellBolt:
        kwargs.setdefault("workdir", tmp_path / f"sink{len(started)}")
        merged = dict(topology_options(str(CONFIG), "local").options)
        merged.update(conf)
        bolt = ShellBolt.from_topology(topology, "sink", cwd=resources, conf=merged,
                                       env=worker_env(extra=env), **kwargs)
        started.append(bolt)
        return bolt

    yield start
    for bolt in started:
        bolt.close()


def tick_until(bolt: ShellBolt, ids: list[str], timeout: float, on_ack=None) -> None:
    """Send ticks (as Storm does every ``tick_secs``) until every id is acked or failed.
    ``on_ack(id)`` runs as soon as an id is seen acked."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        for tup_id in ids:
            if tup_id in bolt.outcomes and tup_id not in seen:
                seen.add(tup_id)
                if on_ack is not None and bolt.outcomes[tup_id] == "ack":
                    on_ack(tup_id)
        if len(seen) == len(ids):
            return
        assert time.monotonic() < deadline, f"not acked within {timeout}s: {set(ids) - seen}"
        assert bolt.tick().acked
        bolt.pump(0.1)


def no_outcome(bolt: ShellBolt, ids: list[str]) -> bool:
    return not any(i in bolt.outcomes for i in ids)


# --------------------------------------------------------------------------- tests


def test_tuples_are_acked_only_after_their_files_are_written(run_sink, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output directory should be")
    out = blocker / "out"  # unwritable until the file goes away
    sink = run_sink({"forumstats.output": str(out)})
    assert sink.argv == [STREAMPARSE_RUN, SCRIPT]
    assert (tmp_path / "sink0" / "pids" / str(sink.pid)).is_file()
    assert sink.conf["topology.tick.tuple.freq.secs"] == 1

    raw = b'{"type":"vote","forum":"f","thread":1.5}'
    dead_record = ["bad_type:thread", "field 'thread' is float",
                   base64.b64encode(raw).decode("ascii"), "generator", None, None, 7,
                   W + 5, W]
    w0 = sink.send_tuple([0, window(W, [["general", "t1", "vote", 3],
                                         ["general", "t2", "comment", 1]])],
                         comp="counts", stream="windows")
    w1 = sink.send_tuple([1, window(W, [["help", "7", "pageview", 2]])],
                         comp="counts", stream="windows")
    dead = sink.send_tuple(["generator-0", 0, 499, "spout", [dead_record]],
                           comp="events", stream="dead_letters")
    ids = [w0, w1, dead]

    def warned(n: int) -> bool:
        return sum("store write failed" in m for m in sink.log_messages(min_level=3)) >= n

    sink.pump_until(lambda: warned(1), timeout=10, what="a warning about the failed write")
    for _ in range(5):  # the writes are retried: ticks are acked, the tuples are not
        assert sink.tick().acked
        time.sleep(0.1)
    sink.pump_until(lambda: warned(2), timeout=10, what="a retry")
    assert no_outcome(sink, ids)
    assert sink.errors == []  # a warning in the worker log, not an error

    blocker.unlink()
    expected = {w0: window_keys(0, W), w1: window_keys(1, W),
                dead: [keys.dead_letters_key(W, "generator-0", 0, 499, "spout")]}

    def files_exist(tup_id: str) -> None:
        for key in expected[tup_id]:
            assert (out / key).is_file(), f"{tup_id} acked before {key} was written"

    tick_until(sink, ids, timeout=20, on_ack=files_exist)
    assert [sink.outcomes[i] for i in ids] == ["ack"] * 3
    assert sink.errors == []

    threads = pq.read_table(out / window_keys(0, W)[0]).to_pylist()
    assert [(r["forum"], r["thread"], r["type"], r["count"]) for r in threads] == [
        ("general", "t1", "vote", 3), ("general", "t2", "comment", 1)]
    forums = pq.read_table(out / window_keys(1, W)[1]).to_pylist()
    assert [(r["forum"], r["type"], r["count"]) for r in forums] == [("help", "pageview", 2)]
    (letter,) = pq.read_table(out / expected[dead][0]).to_pylist()
    assert letter["raw"] == raw and letter["offset"] == 7
    assert letter["reason"] == "bad_type:thread"

    # A restated window replaces its file (same key): no second object, new content.
    w0b = sink.send_tuple([0, window(W, [["general", "t1", "vote", 4],
                                          ["general", "t2", "comment", 1]], revision=2)],
                          comp="counts", stream="windows")
    tick_until(sink, [w0b], timeout=10, on_ack=lambda _i: None)
    threads = pq.read_table(out / window_keys(0, W)[0]).to_pylist()
    assert [r["count"] for r in threads] == [4, 1]
    assert len(list((out / window_keys(0, W)[0]).parent.iterdir())) == 2  # parts 0 and 1
    assert sink.errors == [] and sink.failed == []


def test_a_write_that_cannot_succeed_is_an_error_and_does_not_block_the_rest(run_sink, tmp_path):
    """A real failure (here a source name the key layout rejects: a '/' could shape a path)
    is reported with Storm's ``error`` command and the tuple failed for replay; the writes
    queued behind it go on."""
    out = tmp_path / "out"
    sink = run_sink({"forumstats.output": str(out)})
    bad_source = "../t-0"
    record = ["bad_json", "truncated", base64.b64encode(b"{").decode("ascii"), "kafka",
              "t" * 70, 0, 5, W, W]
    poisoned = sink.send_tuple([bad_source, 5, 5, "spout", [record]],
                               comp="events", stream="dead_letters")
    fine = sink.send_tuple([0, window(W, [["f", "t", "vote", 1]])],
                           comp="counts", stream="windows")

    tick_until(sink, [poisoned, fine], timeout=10)
    assert (sink.outcomes[poisoned], sink.outcomes[fine]) == ("fail", "ack")
    assert all((out / k).is_file() for k in window_keys(0, W))
    (error,) = sink.errors
    assert poisoned in error and "ConfigError" in error
    assert sink.alive  # reported, not crashed: Storm replays the batch


def test_malformed_tuple_is_reported_and_the_worker_restarts(run_sink, tmp_path):
    """An exception on the protocol thread: pystorm reports it with ``error``, fails the
    tuple and exits, as Storm expects (the worker is restarted and the batch replayed)."""
    sink = run_sink({"forumstats.output": str(tmp_path / "out")})
    bad = sink.send_tuple([0, {"start": W}], comp="counts", stream="windows")
    with pytest.raises(SubprocessExited):
        sink.wait_finished([bad], timeout=10)
        sink.pump(5)
    assert sink.outcomes.get(bad) == "fail"
    assert len(sink.errors) == 1 and "KeyError" in sink.errors[0]


def test_s3_outage_keeps_heartbeats_answered_and_acks_nothing_until_it_is_back(
        run_sink, tmp_path):
    with devservices.SeaweedS3(tmp_path / "seaweed") as s3:
        bucket = s3.create_bucket("forumstats-out")
        conf = {"forumstats.output": f"s3://{bucket}/agg",
                "forumstats.s3.endpoint_url": s3.endpoint_url}
        # The S3 identity only in the worker's environment, as on a cluster node.
        env = {k: v for k, v in s3.env().items() if k != "AWS_ENDPOINT_URL"}
        timeout = 4
        sink = run_sink(conf, env, subprocess_timeout=timeout, heartbeat_interval=1.0)

        first = sink.send_tuple([0, window(W, [["f", "t", "vote", 1]])],
                                comp="counts", stream="windows")
        tick_until(sink, [first], timeout=20)
        assert sink.outcomes[first] == "ack"

        s3.stop()
        down_ids = []
        latencies = []
        down_until = time.monotonic() + 5
        k = 1
        while time.monotonic() < down_until:
            down_ids.append(sink.send_tuple(
                [k % 2, window(W + k * MIN, [["f", "t", "vote", k]])],
                comp="counts", stream="windows"))
            assert sink.tick().acked
            latencies.append(sink.send_heartbeat())  # SubprocessTimeout if over `timeout`
            sink.pump(0.4)  # the driver's own heartbeat timer runs meanwhile
            k += 1
        assert no_outcome(sink, down_ids), "acked while S3 was down"
        assert max(latencies) < timeout
        assert sink.heartbeats_sent > len(latencies)  # the timer's heartbeats too

        s3.start()
        tick_until(sink, down_ids, timeout=40)
        assert all(sink.outcomes[i] == "ack" for i in down_ids)
        assert sink.errors == []  # an outage that retrying rides out is not an error

        client = s3.client()
        listed = client.list_objects_v2(Bucket=bucket, Prefix="agg/")
        stored = {o["Key"] for o in listed.get("Contents", [])}
        for n in range(k):
            for key in window_keys(n % 2, W + n * MIN):
                assert f"agg/{key}" in stored
        last = window_keys((k - 1) % 2, W + (k - 1) * MIN)[0]
        body = client.get_object(Bucket=bucket, Key=f"agg/{last}")["Body"].read()
        rows = pq.read_table(io.BytesIO(body)).to_pylist()
        assert [(r["forum"], r["count"]) for r in rows] == [("f", k - 1)]
