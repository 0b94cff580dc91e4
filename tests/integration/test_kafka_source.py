"""KafkaBatchSource against a real Tansu broker (tests/conftest.py: ``tansu``, ``seaweed``)."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from forumstats import devservices
from forumstats.kafka_source import KafkaBatchSource, settings_for_tests
from kafka_groups import committed

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def names():
    tag = uuid.uuid4().hex[:10]
    return f"events-{tag}", f"group-{tag}"


def produce(bootstrap, topic, partitions, per_partition, *, start=0, ts=None):
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for i in range(start, start + per_partition):
            for p in range(partitions):
                stamp = ts(p, i) if ts else T0 + i
                producer.send(topic, value=f"{p}:{i}".encode(), partition=p, timestamp_ms=stamp)
        producer.flush()
    finally:
        producer.close()


def source(bootstrap, topic, group, _kw=None, **changes):
    settings = settings_for_tests(bootstrap_servers=bootstrap, topics=(topic,), group_id=group,
                                  **changes)
    return KafkaBatchSource(settings, **(_kw or {}))


def drain(*sources, until, timeout=25.0, max_records=500, ack=False):
    """Poll the sources in turn until ``until(batches)``; returns all batches (in order)."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for src in sources:
            for batch in src.poll(max_records=max_records, timeout_ms=50):
                out.append(batch)
                if ack:
                    assert src.ack(batch.batch_id)
        if until(out):
            return out
    raise AssertionError(f"gave up after {timeout} s with {len(out)} batches: "
                         f"{[(b.partition, b.first_offset, b.last_offset) for b in out]}")


def records_of(batches):
    return sum(len(b.records) for b in batches)


def spans(batches):
    return sorted((b.partition, b.first_offset, b.last_offset) for b in batches)


# ----------------------------------------------------------------------------------------


def test_tansu_commit_metadata_support_is_detected(tansu):
    """Tansu 0.6 answers metadata=None for committed offsets: the source must notice and keep
    its cut log in a topic. If a later Tansu keeps metadata, the source must use it."""
    topic, group = names()
    tansu.create_topic(topic, 1)
    probe = KafkaConsumer(bootstrap_servers=tansu.bootstrap, group_id=group + "-probe",
                          enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    probe.commit({tp: OffsetAndMetadata(0, "fs1;s=5;h=0", -1)})
    keeps = probe.committed(tp, metadata=True).metadata == "fs1;s=5;h=0"
    probe.close()
    produce(tansu.bootstrap, topic, 1, 3)
    with source(tansu.bootstrap, topic, group) as src:
        drain(src, until=lambda b: records_of(b) == 3)
        assert src.cut_log_mode == ("metadata" if keeps else "topic")
    assert not keeps, "Tansu now keeps commit metadata: update the docs of kafka_source"


def test_consume_all_ack_commit_and_a_new_consumer_starts_at_the_end(tansu):
    topic, group = names()
    tansu.create_topic(topic, 4)
    produce(tansu.bootstrap, topic, 4, 500)  # 2,000 records
    with source(tansu.bootstrap, topic, group, batch_size=128) as src:
        batches = drain(src, until=lambda b: records_of(b) == 2000 and src.caught_up())
        offsets = sorted((b.partition, off) for b in batches for off, _, _ in b.records)
        assert offsets == [(p, i) for p in range(4) for i in range(500)]  # each exactly once
        for b in batches:
            assert b.first_offset // 128 == b.last_offset // 128  # never crosses k*S
            assert [r[0] for r in b.records][0] == b.first_offset
            assert all(value == f"{b.partition}:{off}".encode() for off, value, _ in b.records)
        assert spans(batches)[:4] == [(0, 0, 127), (0, 128, 255), (0, 256, 383), (0, 384, 499)]
        snapshot = src.end_offsets_snapshot()
        assert snapshot == {(topic, p): 500 for p in range(4)}  # not ListOffsets' lower value
        assert not src.reached(snapshot)
        assert src.lag() == 2000  # nothing committed yet
        for b in batches:
            if b.partition != 3:
                assert src.ack(b.batch_id)
        assert src.lag() == 500  # partition 3 is still behind
        for b in batches:
            if b.partition == 3:
                assert src.ack(b.batch_id)
        assert src.commit()
        assert src.reached(snapshot)
        assert src.lag() == 0
    assert committed(tansu.bootstrap, topic, group, 4) == {p: 500 for p in range(4)}
    with source(tansu.bootstrap, topic, group) as again:
        drain(again, until=lambda _: len(again.assignment()) == 4 and again.caught_up())
        info = again.watermark_info()
        assert {k: v["committable"] for k, v in info.items()} == {(topic, p): 500
                                                                    for p in range(4)}
        assert all(v["highwater"] == 500 for v in info.values())


def test_failed_batch_is_replayed_after_backoff_identically_and_blocks_the_commit(tansu):
    topic, group = names()
    tansu.create_topic(topic, 2)
    produce(tansu.bootstrap, topic, 2, 100)
    skew = [0.0]
    settings = settings_for_tests(bootstrap_servers=tansu.bootstrap, topics=(topic,),
                                  group_id=group, batch_size=32, backoff_base_ms=10_000,
                                  backoff_cap_ms=40_000)
    with KafkaBatchSource(settings, clock=lambda: time.monotonic() + skew[0]) as src:
        batches = drain(src, until=lambda b: records_of(b) == 200)
        victim = next(b for b in batches if b.partition == 1 and b.first_offset == 32)
        others = [b for b in batches if b is not victim]
        assert src.fail(victim.batch_id)
        for b in others:
            assert src.ack(b.batch_id)
        assert src.commit()
        # un-acked 32..63 blocks 64..99 of partition 1 although those are acked
        assert committed(tansu.bootstrap, topic, group, 2) == {0: 100, 1: 32}
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:  # backoff not over: nothing comes back
            assert src.poll(timeout_ms=50) == []
        skew[0] += 10.0
        again = drain(src, until=lambda b: len(b) == 1)[0]
        assert (again.partition, again.first_offset, again.last_offset) == (1, 32, 63)
        assert again.records == victim.records and again.batch_id == victim.batch_id
        assert again.attempt == 1
        assert src.fail(again.batch_id)  # second failure: 20 s
        skew[0] += 10.0
        t_end = time.monotonic() + 0.5
        while time.monotonic() < t_end:
            assert src.poll(timeout_ms=50) == []
        skew[0] += 10.0
        third = drain(src, until=lambda b: len(b) == 1)[0]
        assert third.records == victim.records and third.attempt == 2
        assert src.ack(third.batch_id)
        assert not src.ack(third.batch_id)  # a second ack of the same batch is ignored
        assert src.commit()
        assert src.poll(timeout_ms=100) == []  # the window after it is not handed out again
    assert committed(tansu.bootstrap, topic, group, 2) == {0: 100, 1: 100}


def test_restart_reproduces_tail_cuts_even_with_another_batch_size(tansu):
    topic, group = names()
    tansu.create_topic(topic, 1)
    produce(tansu.bootstrap, topic, 1, 30)
    with source(tansu.bootstrap, topic, group, batch_size=100) as first:
        got = drain(first, until=lambda b: records_of(b) == 30)
        produce(tansu.bootstrap, topic, 1, 100, start=30)
        got += drain(first, until=lambda b: records_of(b) == 100)
        assert spans(got) == [(0, 0, 29), (0, 30, 99), (0, 100, 129)]
        assert first.ack(got[0].batch_id)
        # crash without committing the ack: the committed offset stays 0
        first._closed = True
        first._consumer.close(autocommit=False)
        for client in (first._producer, first._cut_reader, first._admin):
            if client is not None:
                client.close()
    with source(tansu.bootstrap, topic, group, batch_size=50) as second:
        replay = drain(second, until=lambda b: records_of(b) == 130)
        assert spans(replay) == [(0, 0, 29), (0, 30, 99), (0, 100, 129)]
        assert [b.records for b in replay] == [b.records for b in sorted(
            got, key=lambda b: b.first_offset)]


class Poller(threading.Thread):
    """Polls one source in its own thread, as separate spout processes would (polling two
    group members from one thread makes Tansu's coordinator go through extra join rounds)."""

    def __init__(self, src):
        super().__init__(daemon=True)
        self.src, self.batches, self.stop = src, [], threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                self.batches.extend(self.src.poll(max_records=500, timeout_ms=50))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def halt(self):
        self.stop.set()
        self.join(10)
        assert self.error is None, self.error


def wait_for(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_rebalance_forgets_revoked_batches_and_ignores_their_acks(tansu):
    topic, group = names()
    tansu.create_topic(topic, 4)
    produce(tansu.bootstrap, topic, 4, 50)
    with source(tansu.bootstrap, topic, group, batch_size=1000) as a:
        held = drain(a, until=lambda b: records_of(b) == 200)
        assert spans(held) == [(p, 0, 49) for p in range(4)]
        with source(tansu.bootstrap, topic, group, batch_size=1000) as b:
            pa, pb = Poller(a), Poller(b)
            pa.start()
            pb.start()

            def settled():
                mine, theirs = a.assignment(), b.assignment()
                return (mine and theirs and len(mine | theirs) == 4 and not mine & theirs
                        and records_of(pb.batches) == 50 * len(theirs))

            try:
                wait_for(settled, what="the group to split the partitions")
            finally:
                pa.halt()
                pb.halt()
            moved = b.assignment()
            # each member knows every partition of the topic, not only its own
            every = {(topic, p) for p in range(4)}
            assert a.all_partitions() == b.all_partitions() == every
            for batch in held:
                expected = (topic, batch.partition) not in moved
                assert a.ack(batch.batch_id) is expected
            assert a.commit()
            result = committed(tansu.bootstrap, topic, group, 4)
            for p in range(4):
                if (topic, p) in moved:
                    assert result[p] in (None, 0), "a revoked batch was committed"
                else:
                    assert result[p] == 50
            # the new owner hands the moved partitions out again, cut the same way
            assert spans(pb.batches) == sorted((p, 0, 49) for _, p in moved)
            assert a.stats["ignored"] == len(moved)
            assert pa.batches == []  # partitions a kept were not handed out twice


def test_only_caught_up_quiet_partitions_are_declared_idle(tansu):
    """Downstream stops waiting for a partition only on the source's word: a partition whose
    backlog is held back by the in-flight cap is silent, not idle; a failed batch waiting for
    its replay is not idle either."""
    topic, group = names()
    tansu.create_topic(topic, 2)
    produce(tansu.bootstrap, topic, 2, 40)
    with source(tansu.bootstrap, topic, group, batch_size=10, max_in_flight=1,
                idle_timeout_ms=500) as src:
        held = drain(src, until=lambda b: len(b) == 1)
        time.sleep(1.0)  # twice the idle timeout with one batch out and 70 records waiting
        assert src.poll(timeout_ms=50) == []  # the cap holds everything else back
        assert src.idle_inputs() == {}
        assert src.ack(held[0].batch_id)
        rest = drain(src, until=lambda b: records_of(held + b) == 80 and src.caught_up(),
                     max_records=10, ack=True)
        time.sleep(1.0)
        src.poll(timeout_ms=50)
        # (acked prefix, end of what was handed out): all acked
        assert src.idle_inputs() == {f"{topic}-0": (40, 40), f"{topic}-1": (40, 40)}
        assert src.idle_inputs(ends={(topic, 0): 30, (topic, 1): 41}) == {
            f"{topic}-0": (40, 30)}
        assert rest  # (acked as they came)

    with source(tansu.bootstrap, topic, group + "-b", batch_size=40, idle_timeout_ms=500,
                backoff_base_ms=60_000) as src:
        out = drain(src, until=lambda b: records_of(b) == 80 and src.caught_up())
        failed = next(b for b in out if b.partition == 1)
        assert src.fail(failed.batch_id)
        for b in out:
            if b is not failed:
                assert src.ack(b.batch_id)
        time.sleep(1.0)
        src.poll(timeout_ms=50)
        assert list(src.idle_inputs()) == [f"{topic}-0"]  # partition 1 waits for its replay


def test_pacing_pauses_a_partition_far_ahead_in_event_time(tansu):
    topic, group = names()
    tansu.create_topic(topic, 2)
    hour = 3_600_000
    # partition 1 starts two hours after partition 0 (a backlog with skewed partitions)
    produce(tansu.bootstrap, topic, 2, 400, ts=lambda p, i: T0 + p * 2 * hour + i * 27_000)
    bound = 10 * 60_000
    # partition 0 ends (T0+3h) before partition 1 (T0+5h): partition 1 then waits until
    # partition 0 has been idle for idle_timeout and no longer counts as the slowest
    with source(tansu.bootstrap, topic, group, batch_size=25, pacing_bound_ms=bound,
                idle_timeout_ms=2_000) as src:
        seen = {0: None, 1: None}
        held_seen = False
        early = 0  # records of partition 1 handed out before partition 0 was within the bound
        emitted = []
        per_poll = 50
        deadline = time.monotonic() + 30
        while records_of(emitted) < 800 and time.monotonic() < deadline:
            before = dict(seen)  # what the pacer knew when this poll started
            p0_running = records_of([b for b in emitted if b.partition == 0]) < 400
            for batch in src.poll(max_records=per_poll, timeout_ms=50):
                top = max(ts for _, _, ts in batch.records)
                low = min(ts for _, _, ts in batch.records)
                if batch.partition == 1 and (before[0] is None
                                             or before[0] < T0 + 2 * hour - bound):
                    early += len(batch.records)
                if batch.partition == 1 and p0_running and None not in before.values():
                    # partition 1 runs at most the bound (plus one poll of records) ahead of
                    # partition 0 while partition 0 still has a backlog
                    assert low <= before[0] + bound + per_poll * 27_000, (
                        (low - before[0]) / 60_000)
                seen[batch.partition] = max(seen[batch.partition] or top, top)
                src.note_event_time(batch, top)
                src.ack(batch.batch_id)
                emitted.append(batch)
            held_seen |= src.watermark_info().get((topic, 1), {}).get("held", False)
        assert records_of(emitted) == 800
        assert held_seen
        assert early <= per_poll, early  # at most the first fetch round
        assert not src.watermark_info()[(topic, 0)]["live"]  # idle by now


def test_broker_restart_is_survived(seaweed, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="forumstats.kafka_source")
    broker = devservices.TansuBroker.on_seaweed(seaweed, bucket=f"tansu-{uuid.uuid4().hex[:8]}",
                                                workdir=tmp_path / "tansu")
    with broker:
        topic, group = names()
        broker.create_topic(topic, 2)
        produce(broker.bootstrap, topic, 2, 50)
        with source(broker.bootstrap, topic, group, batch_size=40,
                    _kw={"health_interval_ms": 300, "commit_timeout_ms": 2_000}) as src:
            first = drain(src, until=lambda b: records_of(b) == 100, ack=True)
            assert src.commit()
            broker.stop()
            t_end = time.monotonic() + 3
            while time.monotonic() < t_end:
                assert src.poll(timeout_ms=100) == []
            assert src.broker_down
            assert "unreachable" in caplog.text
            broker.start()
            produce(broker.bootstrap, topic, 2, 50, start=50)
            later = drain(src, until=lambda b: {off for x in b for off, _, _ in x.records
                                                if off >= 50} == set(range(50, 100))
                          and records_of([x for x in b if x.partition == 1 and
                                          x.last_offset >= 99]) > 0,
                          ack=True, timeout=45)
            assert src.commit()
            assert "reachable again" in caplog.text
            seen = sorted((b.partition, off) for b in first + later for off, _, _ in b.records)
            assert set(seen) == {(p, i) for p in range(2) for i in range(100)}
        assert committed(broker.bootstrap, topic, group, 2) == {0: 100, 1: 100}


def test_two_consumers_polled_in_turn_from_one_thread_settle_without_endless_rejoins(
        tansu, caplog):
    """As the local runner drives two spout tasks: short polls in turn, with gaps. With
    kafka-python 3.0.12 as it is, a join that completes during a gap is thrown away and the
    group rebalances again and again (see kafka_source._JoinTask)."""
    topic, group = names()
    tansu.create_topic(topic, 4)
    produce(tansu.bootstrap, topic, 4, 10)
    caplog.set_level(logging.INFO, logger="kafka.coordinator")
    with source(tansu.bootstrap, topic, group) as a, source(tansu.bootstrap, topic, group) as b:
        started = time.monotonic()
        while time.monotonic() - started < 40:
            for src in (a, b):
                src.poll(timeout_ms=0)
                time.sleep(0.3)  # the other tasks' turn
            mine, theirs = a.assignment(), b.assignment()
            if len(mine) == 2 and len(theirs) == 2 and not mine & theirs:
                break
        took = time.monotonic() - started
        joins = sum("Successfully joined group" in r.getMessage() for r in caplog.records)
    assert len(mine) == len(theirs) == 2 and not mine & theirs, (mine, theirs, took)
    assert joins <= 6, f"{joins} joins in {took:.0f} s: rejoining in a loop"


def test_max_batches_limits_what_one_poll_hands_out_and_zero_still_polls(tansu):
    topic, group = names()
    tansu.create_topic(topic, 2)
    produce(tansu.bootstrap, topic, 2, 40)
    with source(tansu.bootstrap, topic, group, batch_size=10) as src:
        deadline = time.monotonic() + 25
        while len(src.assignment()) < 2 and time.monotonic() < deadline:
            assert src.poll(timeout_ms=50, max_batches=0) == []  # the group still forms
        for _ in range(10):  # and records are fetched and buffered, not handed out
            assert src.poll(timeout_ms=50, max_batches=0) == []
        assert len(src.assignment()) == 2
        polls = [src.poll(timeout_ms=50, max_batches=3) for _ in range(5)]
        assert len(polls[0]) == 3 and all(len(p) <= 3 for p in polls)
        got = [b for p in polls for b in p]
        got += drain(src, until=lambda b: len(b) + len(got) >= 8) if len(got) < 8 else []
        assert len(got) == 8  # 2 partitions x 4 batches
        assert records_of(got) == 80  # none lost or doubled
        failed = got[0]
        assert src.fail(failed.batch_id)
        time.sleep(1.2)  # the backoff (1 s)
        assert src.poll(timeout_ms=50, max_batches=0) == []
        replay = drain(src, until=lambda b: len(b) == 1)
        assert (replay[0].first_offset, replay[0].attempt) == (failed.first_offset, 1)
