"""The development services behave like the real things the pipeline talks to."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from forumstats.devservices import TansuBroker

pytestmark = pytest.mark.integration


def test_kafka_round_trip_of_1000_json_events_over_4_partitions(tansu):
    topic = f"events-{uuid.uuid4().hex[:8]}"
    tansu.create_topic(topic, partitions=4, configs={"retention.ms": "3600000"})
    assert tansu.topic_configs(topic)["retention.ms"] == "3600000"

    events = [{"type": "vote", "forum": f"f{i % 7}", "id": i, "ts": 1_700_000_000_000 + i}
              for i in range(1000)]
    producer = KafkaProducer(bootstrap_servers=tansu.bootstrap, acks="all", linger_ms=5,
                             key_serializer=str.encode,
                             value_serializer=lambda v: json.dumps(v, sort_keys=True).encode())
    try:
        futures = [producer.send(topic, key=e["forum"], value=e) for e in events]
        producer.flush(timeout=30)
        partitions_used = {f.get(timeout=10).partition for f in futures}
    finally:
        producer.close(timeout=10)
    assert partitions_used == {0, 1, 2, 3}

    consumer = KafkaConsumer(
        bootstrap_servers=tansu.bootstrap, group_id=f"g-{topic}",
        auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=6000, heartbeat_interval_ms=1000, max_poll_interval_ms=10000,
        request_timeout_ms=15000, fetch_max_wait_ms=200, metadata_max_age_ms=5000,
        value_deserializer=json.loads)
    received = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 45
        # Stop on the count: Tansu's ListOffsets (end_offsets) may lag the real end.
        while len(received) < len(events) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(r.value for r in records)
        consumer.commit()
        committed = {p: consumer.committed(TopicPartition(topic, p)) for p in range(4)}
    finally:
        consumer.close()

    key = lambda e: json.dumps(e, sort_keys=True)  # noqa: E731
    assert Counter(map(key, received)) == Counter(map(key, events))
    assert sum(committed.values()) == len(events)


def test_tansu_on_seaweed_keeps_records_across_a_restart(seaweed, tmp_path):
    bucket = seaweed.create_bucket(f"tansu-{uuid.uuid4().hex[:12]}")
    with TansuBroker.on_seaweed(seaweed, bucket, tmp_path / "tansu") as broker:
        port = broker.port
        broker.create_topic("kept", partitions=2, configs={"retention.ms": "600000"})
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        try:
            for i in range(20):
                producer.send("kept", value=f"v{i}".encode(), partition=i % 2)
            producer.flush(timeout=30)
        finally:
            producer.close(timeout=10)

        broker.restart()
        assert broker.port == port
        assert broker.topic_configs("kept") == {"retention.ms": "600000"}
        consumer = KafkaConsumer("kept", bootstrap_servers=broker.bootstrap,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=200)
        values: list[bytes] = []
        try:
            deadline = time.monotonic() + 20
            while len(values) < 20 and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    values.extend(record.value for record in records)
        finally:
            consumer.close()
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(20))
