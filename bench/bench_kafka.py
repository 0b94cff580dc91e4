"""Benchmark 3: Kafka (Tansu, 4 partitions) -> S3 (SeaweedFS) with --stop-at-end, vs raw
consumption of the same topic with kafka-python and with confluent-kafka.

    .venv/bin/python bench/bench_kafka.py [--quick] [--events 1000000] [--repeats 2]

Starts its own Tansu broker (memory storage) and SeaweedFS on loopback ports, produces
``--events`` generated records (seeded; the generator's ~0.2 % malformed records included,
50 events/s of event time as ``forumstats run``'s generator) round-robin over 4 partitions,
then alternates, ``--repeats`` times:

* kafka-python ``KafkaConsumer``: assign the 4 partitions, seek to the beginning, poll until
  every record has been received (no group, no commits, no parsing: the raw client rate);
* confluent-kafka ``Consumer``: the same with ``consume(10_000)``;
* ``forumstats run --source kafka://.../TOPIC --stop-at-end --group G<i> --output
  s3://BUCKET/P<i> --endpoint-url ...`` (in-process, a fresh group and prefix each time), timed
  around run_topology in a fresh subprocess.

Figures are medians; ratios are forumstats events/s over each raw consume rate.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_file import ROOT, bench_main, median, run_forumstats  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))

TARGET_KAFKA = 0.7
PARTITIONS = 4


def produce(bootstrap: str, topic: str, n: int, seed: int = 13, rate: float = 50.0) -> None:
    """Round-robin over the partitions with confluent-kafka's producer (fast, not measured)."""
    from confluent_kafka import Producer

    from forumstats.generator import generate

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.num.messages": 10_000, "queue.buffering.max.messages": 200_000,
                         "acks": "all", "enable.idempotence": False})
    for i, raw in enumerate(generate(n, seed=seed, events_per_second=rate)):
        while True:
            try:
                producer.produce(topic, value=raw, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("records left unsent after 120 s")


def consume_kafka_python(bootstrap: str, topic: str, n: int) -> float:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, max_poll_records=5_000)
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    got = 0
    started = time.perf_counter()
    deadline = started + 600
    while got < n and time.perf_counter() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got += len(records)
    elapsed = time.perf_counter() - started
    consumer.close()
    if got < n:
        raise RuntimeError(f"kafka-python received {got:,} of {n:,} records")
    return elapsed


def consume_confluent(bootstrap: str, topic: str, n: int) -> float:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-raw-confluent",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got = 0
    started = time.perf_counter()
    deadline = started + 600
    while got < n and time.perf_counter() < deadline:
        for msg in consumer.consume(num_messages=10_000, timeout=0.5):
            if msg.error() is None:
                got += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    if got < n:
        raise RuntimeError(f"confluent-kafka received {got:,} of {n:,} records")
    return elapsed


def run(quick: bool = False, events: int | None = None, repeats: int | None = None,
        profile: Path | None = None) -> list[dict]:
    from forumstats.devservices import SeaweedS3, TansuBroker

    n = events or (30_000 if quick else 1_000_000)
    repeats = repeats or 2
    work = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    with SeaweedS3(work / "seaweed") as s3, TansuBroker(work / "tansu") as kafka:
        bucket = s3.create_bucket("bench")
        topic = "bench-events"
        kafka.create_topic(topic, partitions=PARTITIONS)
        t0 = time.perf_counter()
        produce(kafka.bootstrap, topic, n)
        produce_s = time.perf_counter() - t0
        kp_s, ck_s, fs_s, results = [], [], [], []
        for i in range(repeats):
            kp_s.append(consume_kafka_python(kafka.bootstrap, topic, n))
            ck_s.append(consume_confluent(kafka.bootstrap, topic, n))
            res = run_forumstats(
                ["--source", f"kafka://{kafka.bootstrap}/{topic}", "--stop-at-end",
                 "--group", f"bench-{i}", "--output", f"s3://{bucket}/run{i}",
                 "--endpoint-url", s3.endpoint_url],
                env=s3.env(), profile=profile if i == 0 else None)
            fs_s.append(res["elapsed_s"])
            results.append(res)
    shutil.rmtree(work, ignore_errors=True)
    kp_rate, ck_rate, fs_rate = (n / median(kp_s), n / median(ck_s), n / median(fs_s))
    details = {"events": n, "partitions": PARTITIONS, "repeats": repeats,
               "produce_s": produce_s, "forumstats_s": fs_s, "kafka_python_s": kp_s,
               "confluent_s": ck_s, "accepted": [r["records_accepted"] for r in results],
               "dead_letters": [r["dead_letters"] for r in results],
               "kafka_python_over_confluent": kp_rate / ck_rate}
    return [
        {"id": "kafka_s3_vs_kafka_python",
         "figure": "Kafka (Tansu x4) -> S3 (SeaweedFS) --stop-at-end, events/s",
         "value": fs_rate, "baseline_name": "raw kafka-python consume", "baseline": kp_rate,
         "ratio": fs_rate / kp_rate, "target": f">= {TARGET_KAFKA}x",
         "pass": fs_rate / kp_rate >= TARGET_KAFKA, "details": details},
        {"id": "kafka_s3_vs_confluent",
         "figure": "Kafka -> S3 --stop-at-end, events/s (vs confluent-kafka)",
         "value": fs_rate, "baseline_name": "raw confluent-kafka consume", "baseline": ck_rate,
         "ratio": fs_rate / ck_rate, "target": "info (client cost)", "pass": None},
        {"id": "kafka_python_vs_confluent",
         "figure": "raw kafka-python consume, events/s",
         "value": kp_rate, "baseline_name": "raw confluent-kafka consume", "baseline": ck_rate,
         "ratio": kp_rate / ck_rate, "target": "info (client cost)", "pass": None},
    ]


def main() -> None:
    bench_main(__doc__, run, ("--events", {"type": int}), ("--repeats", {"type": int}),
               ("--profile", {"type": Path,
                              "help": "py-spy raw profile of the first forumstats run"}))


if __name__ == "__main__":
    main()
