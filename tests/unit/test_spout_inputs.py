"""Two Kafka spout tasks share a topic's partitions: a counting task must hear of every
partition before the first batch of either task, else its watermark is the minimum over only
the partitions of the task that started first and closes windows the other task's backlog
still has events for (chaos test_consumer_group_rebalance_mid_run: about 900 events dead-
lettered as too_late whenever one task set up its partitions a second after the other).

KafkaEventSpout runs in-process over a fake batch source; its emitted tuples are fed to a
BucketCounter as the WindowCountBolt would."""

from __future__ import annotations

import pytest

from forumstats.counting import BucketCounter
from forumstats.kafka_source import RawBatch
from forumstats.localstorm import in_process_component
from forumstats.settings import WindowSettings

W = WindowSettings(size_ms=60_000, out_of_orderness_ms=2_000, idle_timeout_ms=120_000,
                   allowed_lateness_ms=5_000)
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
TOPIC = "events"


class FakeSource:
    """One group member: owns ``owned`` of the topic's ``partitions``."""

    def __init__(self, owned: list[int], partitions: int = 4) -> None:
        self.owned = owned
        self.partitions = partitions
        self.queue: list[RawBatch] = []

    def poll(self, max_records=500, timeout_ms=0, max_batches=None):
        out, self.queue = self.queue, []
        return out

    def assignment(self):
        return {(TOPIC, p) for p in self.owned}

    def all_partitions(self):
        return {(TOPIC, p) for p in range(self.partitions)}

    def idle_inputs(self):
        return {}

    def note_event_time(self, key, max_ts):
        pass

    def commit(self):
        return True


def batch(partition: int, start: int, ts: list[int]) -> RawBatch:
    records = [(start + i, (b'{"type":"comment","forum":"f","thread":"t","ts":%d}' % t), t)
               for i, t in enumerate(ts)]
    end = start + len(ts)
    return RawBatch(TOPIC, partition, start, end - 1, records, f"{partition}:{start}",
                    span=(0, start, end))


@pytest.fixture
def spout_with(monkeypatch):
    from spouts import kafka_events

    def make(source: FakeSource):
        monkeypatch.setattr(kafka_events, "open_batch_source", lambda settings, conf: source)
        sent: list[dict] = []
        conf = {"forumstats.buckets": 1, "topology.max.spout.pending": None}
        spout = in_process_component(kafka_events.KafkaEventSpout, conf,
                                     {"taskid": 1, "componentid": "events",
                                      "task->component": {"1": "events"}}, sent.append)
        spout.sent = sent
        return spout
    return make


def deliver(spout, counter: BucketCounter, now_ms: int) -> list[list]:
    """The spout's batch tuples so far, into the counter; returns the too-late rows."""
    late = []
    for msg in spout.sent:
        if msg.get("command") == "emit" and msg.get("stream") == "batches":
            _bucket, source, first, last, max_ts, rows, users, span = msg["tuple"]
            out = counter.add(msg.get("id") or "marker", source, first, last, max_ts, rows,
                              now_ms, users, span)
            late += out.too_late
            counter.advance(now_ms)
    spout.sent.clear()
    return late


def test_a_spout_task_announces_every_partition_of_the_topic_before_its_first_batch(
        spout_with):
    source = FakeSource(owned=[0, 1])
    source.queue = [batch(0, 0, [T0 + 1_000])]
    spout = spout_with(source)
    spout.next_tuple()
    tuples = [m["tuple"] for m in spout.sent if m.get("stream") == "batches"]
    first_data = next(i for i, t in enumerate(tuples) if t[2] >= 0)
    announced = [t[1] for t in tuples[:first_data]]
    assert announced == [f"{TOPIC}-{p}" for p in range(4)]


def test_the_other_tasks_backlog_is_not_late_when_it_sets_up_its_partitions_later(
        spout_with):
    """Task A (partitions 0, 1) hands out minutes of backlog before task B (2, 3) has set
    up its partitions; B's first batches must still be counted, not dead-lettered."""
    counter = BucketCounter(W, idle_by_silence=False)
    a, b = FakeSource(owned=[0, 1]), FakeSource(owned=[2, 3])
    task_a, task_b = spout_with(a), spout_with(b)
    minutes = [T0 + 10_000 * i for i in range(30)]  # 5 minutes of events
    a.queue = [batch(0, 0, minutes), batch(1, 0, minutes)]
    task_a.next_tuple()
    assert deliver(task_a, counter, now_ms=1_000) == []
    b.queue = [batch(2, 0, minutes), batch(3, 0, minutes)]
    task_b.next_tuple()
    assert deliver(task_b, counter, now_ms=2_000) == []
    assert counter.engine.watermark == T0 + 290_000 - W.out_of_orderness_ms
