"""Acceptance of the Kafka path: Tansu topic -> forumstats run --stop-at-end -> SeaweedFS S3,
every final window equal to a DuckDB group-by of the produced events, offsets committed to the
end. In one process and with every task a multi-lang subprocess."""

import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from batch_truth import truth
from forumstats.cli import main
from forumstats.generator import generate

pytestmark = pytest.mark.integration

EVENTS = 6000


@pytest.fixture(scope="module")
def produced(tansu, tmp_path_factory):
    topic = "forum-events-acceptance"
    tansu.create_topic(topic, partitions=4)
    lines = list(generate(EVENTS, seed=23, events_per_second=20.0))
    producer = KafkaProducer(bootstrap_servers=tansu.bootstrap, linger_ms=5)
    for i, raw in enumerate(lines):
        producer.send(topic, value=raw, partition=i % 4)
    producer.flush()
    producer.close()
    path = tmp_path_factory.mktemp("kafka") / "produced.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return topic, path


@pytest.mark.parametrize("mode", ["in-process", "multilang"])
def test_kafka_backfill_to_s3_equals_batch_truth(mode, tansu, seaweed, s3_bucket, produced,
                                                  tmp_path):
    topic, ndjson = produced
    group = f"acceptance-{mode}"
    args = ["run", "--quiet", "--source", f"kafka://{tansu.bootstrap}/{topic}",
            "--stop-at-end", "--group", group, "--output", f"s3://{s3_bucket}/stats",
            "--endpoint-url", seaweed.endpoint_url]
    if mode == "multilang":
        args.append("--multilang")
    assert main(args) == 0

    fs = pafs.S3FileSystem(endpoint_override=seaweed.endpoint_url, scheme="http",
                           access_key=seaweed.access_key, secret_key=seaweed.secret_key,
                           region=seaweed.region)
    dead = ds.dataset(f"{s3_bucket}/stats/dead_letters", filesystem=fs, format="parquet",
                      partitioning="hive").to_table().to_pylist()
    rejected = {(d["partition"], d["offset"]) for d in dead}
    assert len(rejected) == len(dead) > 0  # each bad record once
    assert {d["topic"] for d in dead} == {topic}
    lines = ndjson.read_bytes().splitlines()
    good = tmp_path / "accepted.ndjson"
    good.write_bytes(b"\n".join(line for i, line in enumerate(lines)
                                if (i % 4, i // 4) not in rejected))

    con = duckdb.connect()
    written = ds.dataset(f"{s3_bucket}/stats/thread_counts/window=1m", filesystem=fs,
                         format="parquet", partitioning="hive").to_table()
    con.register("written", written)
    got = con.execute("""SELECT epoch_ms(window_start) AS ws, forum, thread, type,
                         sum(count) AS n FROM written GROUP BY ALL ORDER BY ALL""").fetchall()
    assert got == truth(con, good)
    assert sum(row[4] for row in got) == EVENTS - len(dead)

    consumer = KafkaConsumer(bootstrap_servers=tansu.bootstrap, group_id=group,
                             enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in range(4)]
    committed = {tp.partition: consumer.committed(tp) for tp in parts}
    consumer.close()
    assert committed == {p: EVENTS // 4 for p in range(4)}


@pytest.mark.timeout(150)
def test_full_replay_into_existing_output_counts_nothing_twice(tansu, seaweed, s3_bucket,
                                                                produced):
    """A second consumer group replays the whole topic into the same output, as after losing
    every committed offset: windows are restored from their files, replayed ranges are
    recognised, and the output is unchanged (not doubled)."""
    topic, _ndjson = produced
    out = f"s3://{s3_bucket}/stats"
    fs = pafs.S3FileSystem(endpoint_override=seaweed.endpoint_url, scheme="http",
                           access_key=seaweed.access_key, secret_key=seaweed.secret_key,
                           region=seaweed.region)

    def counts():
        table = ds.dataset(f"{s3_bucket}/stats/thread_counts/window=1m", filesystem=fs,
                           format="parquet", partitioning="hive").to_table()
        return sorted(zip(table["window_start"].to_pylist(), table["forum"].to_pylist(),
                          table["thread"].to_pylist(), table["type"].to_pylist(),
                          table["count"].to_pylist(), strict=True))

    for group in ("replay-a", "replay-b"):
        assert main(["run", "--quiet", "--source", f"kafka://{tansu.bootstrap}/{topic}",
                     "--stop-at-end", "--group", group, "--output", out,
                     "--endpoint-url", seaweed.endpoint_url]) == 0
        if group == "replay-a":
            first = counts()
    assert counts() == first
    assert sum(row[4] for row in first) > 0
