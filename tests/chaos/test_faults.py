"""Chaos 2-4: faults injected into one running backfill (``forumstats run --stop-at-end`` as a
subprocess), after it has committed some offsets; the run must finish by itself and the
output must equal the batch truth, offsets committed to the end."""

import time
import uuid

import pytest
from chaos_helpers import (
    Runner,
    committed,
    committed_total,
    end_offsets,
    generated,
    produce,
    run_command,
    tail,
    verify_exact,
    wait_for,
    write_config,
)

from forumstats import devservices

pytestmark = pytest.mark.integration


def _start(tmp_path, bootstrap, topic, group, bucket, seaweed, multilang, n=4000, seed=71):
    produced = produce(bootstrap, topic, generated(n, seed=seed))
    cmd = run_command(bootstrap, topic, group, f"s3://{bucket}/stats", seaweed.endpoint_url,
                      write_config(tmp_path), multilang=multilang)
    runner = Runner(cmd, tmp_path / "runner.log")
    wait_for("first commits", lambda: runner.proc.poll() is not None
             or committed_total(bootstrap, topic, group) > 0, timeout=90)
    assert runner.proc.poll() is None, "the run ended before the fault: more data\n" + tail(
        runner.log)
    return produced, runner


def test_tansu_restart_mid_run(seaweed, s3_bucket, tmp_path):
    """Tansu on SeaweedFS (the topic survives): stopped and started again mid-run."""
    broker = devservices.TansuBroker.on_seaweed(seaweed, f"tansu-{uuid.uuid4().hex[:8]}",
                                                workdir=tmp_path / "tansu")
    with broker:
        broker.start()
        topic, group = "chaos-broker", "chaos-broker"
        broker.create_topic(topic, partitions=4)
        produced, runner = _start(tmp_path, broker.bootstrap, topic, group, s3_bucket, seaweed,
                                  multilang=False)
        before = committed_total(broker.bootstrap, topic, group)
        t0 = time.monotonic()
        broker.restart()
        down_s = time.monotonic() - t0
        assert runner.wait(240) == 0, tail(runner.log)
        verdict = verify_exact(seaweed, s3_bucket, "stats", produced, tmp_path)
        print(f"\nTansu restart ({down_s:.1f} s) after {before} committed: {verdict.line()}")
        assert committed(broker.bootstrap, topic, group) == end_offsets(produced)


def test_seaweedfs_down_20s_mid_run(tansu, seaweed, s3_bucket, tmp_path):
    """The S3 store is stopped for 20 s: writes retry, the spout is held back by its pending
    cap, no component dies (same subprocesses before and after), the result is exact."""
    topic, group = f"chaos-s3-{uuid.uuid4().hex[:8]}", "chaos-s3"
    tansu.create_topic(topic, partitions=4)
    produced, runner = _start(tmp_path, tansu.bootstrap, topic, group, s3_bucket, seaweed,
                              multilang=True)
    children = sorted(runner.children())
    assert len(children) >= 4
    before = committed_total(tansu.bootstrap, topic, group)
    seaweed.stop()
    try:
        time.sleep(20)
        during = committed_total(tansu.bootstrap, topic, group)
        assert runner.proc.poll() is None, "the runner died while S3 was down\n" + tail(
            runner.log)
        assert sorted(runner.children()) == children, "a component died while S3 was down"
    finally:
        seaweed.start()
    assert runner.wait(300) == 0, tail(runner.log)
    verdict = verify_exact(seaweed, s3_bucket, "stats", produced, tmp_path)
    print(f"\nSeaweedFS down 20 s: committed {before} before, {during} at the end of the "
          f"outage; {verdict.line()}")
    # backpressure: with nothing durable, nothing more could be acked past what was in flight
    assert during - before <= 64 * 100, (before, during)
    assert committed(tansu.bootstrap, topic, group) == end_offsets(produced)


@pytest.mark.parametrize("victim", ["window_count", "parquet_sink"])
def test_multilang_bolt_subprocess_killed(victim, tansu, seaweed, s3_bucket, tmp_path):
    """kill -9 of one bolt subprocess: the runner restarts the task as Storm restarts a dead
    worker; the tuples it held time out (topology.message.timeout.secs) and are replayed."""
    topic, group = f"chaos-bolt-{uuid.uuid4().hex[:8]}", f"chaos-bolt-{victim}"
    tansu.create_topic(topic, partitions=4)
    produced, runner = _start(tmp_path, tansu.bootstrap, topic, group, s3_bucket, seaweed,
                              multilang=True)
    pids = [pid for pid, cmd in runner.children() if victim in cmd]
    assert pids, runner.children()
    import os
    import signal

    os.kill(pids[0], signal.SIGKILL)  # a child of the runner we started, by its pid
    t0 = time.monotonic()
    assert runner.wait(300) == 0, tail(runner.log)
    took = time.monotonic() - t0
    log = runner.log.read_text(errors="replace")
    assert "died" in log and "restarting it" in log, tail(runner.log)
    verdict = verify_exact(seaweed, s3_bucket, "stats", produced, tmp_path)
    print(f"\n{victim} subprocess killed; run finished {took:.0f} s later: {verdict.line()}")
    # Known gap: the runner may exit while a timed-out batch waits for its replay backoff, so
    # its offsets are not committed yet (safe: at-least-once, the next run replays it and the
    # folded ranges keep the windows exact). A last run with the same group completes it.
    final = Runner(runner.proc.args, tmp_path / "runner.log")
    assert final.wait(240) == 0, tail(final.log)
    assert verify_exact(seaweed, s3_bucket, "stats", produced, tmp_path).rows == verdict.rows
    assert committed(tansu.bootstrap, topic, group) == end_offsets(produced)


def test_consumer_group_rebalance_mid_run(tansu, seaweed, s3_bucket, tmp_path):
    """Chaos 6. Two spout tasks, two consumers of the group, each a multi-lang subprocess.
    One is killed mid-run: the group moves its partitions to the other once its session
    times out (a rebalance), the runner restarts it as Storm restarts a dead worker and it
    joins again (a second rebalance, splitting the partitions anew). Batches of revoked
    partitions are forgotten and replayed by the new owner; the counting tasks recognise the
    replayed ranges. Exact, offsets committed to the end."""
    import os
    import signal

    topic, group = f"chaos-rebalance-{uuid.uuid4().hex[:8]}", "chaos-rebalance"
    tansu.create_topic(topic, partitions=4)
    produced = produce(tansu.bootstrap, topic, generated(12_000, seed=83))
    cmd = run_command(tansu.bootstrap, topic, group, f"s3://{s3_bucket}/stats",
                      seaweed.endpoint_url,
                      write_config(tmp_path, **{"forumstats.parallelism.spout": 2}),
                      multilang=True)
    runner = Runner(cmd, tmp_path / "runner.log")
    wait_for("first commits", lambda: runner.proc.poll() is not None
             or committed_total(tansu.bootstrap, topic, group) > 0, timeout=90)
    assert runner.proc.poll() is None, "the run ended before the fault: more data\n" + tail(
        runner.log)
    spouts = [pid for pid, cmdline in runner.children() if "kafka_events" in cmdline]
    assert len(spouts) == 2, runner.children()
    before = committed_total(tansu.bootstrap, topic, group)
    os.kill(spouts[0], signal.SIGKILL)  # a child of the runner we started, by its pid
    assert runner.wait(300) == 0, tail(runner.log)
    log = runner.log.read_text(errors="replace")
    assert "events[" in log and "died" in log and "restarting it" in log, tail(runner.log)
    verdict = verify_exact(seaweed, s3_bucket, "stats", produced, tmp_path)
    print(f"\nspout task killed after {before} committed (of {produced.count}); "
          f"rejoined: {verdict.line()}")
    assert before < produced.count
    assert committed(tansu.bootstrap, topic, group) == end_offsets(produced)
