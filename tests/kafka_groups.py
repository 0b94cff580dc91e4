"""What a consumer group has committed, read with a fresh kafka-python consumer (shared by the
Kafka source tests and the chaos suite; tests/ is on sys.path under pytest)."""

from __future__ import annotations


def committed(bootstrap: str, topic: str, group: str, partitions: int) -> dict[int, int | None]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close()
