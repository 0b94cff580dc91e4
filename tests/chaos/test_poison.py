"""Chaos 5: poison records mixed into the stream. Each bad record is dead-lettered exactly
once with its reason and its raw bytes; hostile but valid forum names are counted and cannot
shape an object key; every window equals the batch truth."""

import re
import uuid

import orjson
import pytest
from chaos_helpers import (
    Runner,
    committed,
    end_offsets,
    generated,
    produce,
    run_command,
    s3_filesystem,
    tail,
    verify_exact,
    write_config,
)

pytestmark = pytest.mark.integration

TS = 1_767_225_600_000 + 90_000  # inside the generated stream's event time
OK = {"type": "vote", "thread": "t1", "ts": TS}

POISON = [  # (raw bytes, expected reason)
    (b'{"type": "vote", "forum": "f", "thread": "t", "ts": ', "bad_json"),
    (b"\xff\xfe\x00garbage", "bad_utf8"),
    (b'{"type":"vote","forum":"caf\xe9","thread":"t","ts":1767225690000}', "bad_utf8"),
    (b"[1, 2, 3]", "not_object"),
    (b'"just a string"', "not_object"),
    (orjson.dumps({**OK, "forum": 42}), "bad_type:forum"),
    (orjson.dumps({**OK, "forum": "f", "thread": [1]}), "bad_type:thread"),
    (orjson.dumps({**OK, "forum": "f", "ts": 1.5e12}), "bad_type:ts"),
    (orjson.dumps({**OK, "forum": "f", "type": "delete-all"}), "bad_value:type"),
    (orjson.dumps({k: v for k, v in OK.items() if k != "ts"} | {"forum": "f"}), "missing:ts"),
    (orjson.dumps({**OK, "forum": "f", "pad": "x" * 200_000}), "too_large"),
    (b"[" * 70_000, "too_large"),
    (orjson.dumps({**OK, "forum": "x" * 257}), "bad_value:forum"),
    (orjson.dumps({**OK, "forum": ""}), "bad_value:forum"),
    (orjson.dumps({**OK, "forum": "f", "ts": 0}), "ts_out_of_range"),  # 1970
    (orjson.dumps({**OK, "forum": "f", "ts": 1_767_225_690}), "ts_out_of_range"),  # seconds
    (orjson.dumps({**OK, "forum": "f", "ts": 7_258_118_400_000}), "ts_out_of_range"),  # 2200
    (orjson.dumps({**OK, "forum": "f", "ts": "2999-01-01T00:00:00Z"}), "ts_out_of_range"),
    (orjson.dumps({**OK, "forum": "f", "ts": "1990-06-01T00:00:00+02:00"}), "ts_out_of_range"),
    (orjson.dumps({**OK, "forum": "f", "ts": "2026-01-01T00:01:30"}), "bad_value:ts"),  # no zone
    (b'{"type":"vote","forum":"f","thread":"t1","ts":1000000000000000000000000000000}',
     "bad_type:ts"),  # beyond 64-bit integers: a float
]
HOSTILE_FORUMS = ["../x", "../../etc/passwd", "date=2020-01-01/hour=00", "a/b\\c", "%2e%2e",
                  "名前 ثبت", "x' OR 1=1 --", "null\u0000byte", "\u202eevil", "window=1h"]


def test_poison_records_each_dead_lettered_once(tansu, seaweed, s3_bucket, tmp_path):
    topic, group = f"chaos-poison-{uuid.uuid4().hex[:8]}", "chaos-poison"
    tansu.create_topic(topic, partitions=4)
    lines = generated(2000, seed=83)
    expected_reason = {}
    mixed: list[bytes] = []
    step = len(lines) // (len(POISON) + len(HOSTILE_FORUMS))
    extras = [(raw, reason) for raw, reason in POISON] + [
        (orjson.dumps({**OK, "forum": name, "ts": TS + i}), None)
        for i, name in enumerate(HOSTILE_FORUMS)]
    from forumstats.events import Event, parse_event
    from forumstats.settings import EventContract

    last_ts = TS
    for i, line in enumerate(lines):
        mixed.append(line)
        event = parse_event(line, EventContract())
        if isinstance(event, Event):
            last_ts = event.ts_ms
        if i % step == step - 1 and extras:
            raw, reason = extras.pop(0)
            if reason is None:  # a valid event: keep it at the stream's event time
                raw = orjson.dumps({**orjson.loads(raw), "ts": last_ts})
            if reason:
                expected_reason[len(mixed)] = reason
            mixed.append(raw)
    produced = produce(tansu.bootstrap, topic, mixed)
    position = {}  # index in ``mixed`` -> (partition, offset), round robin as produced
    by_raw_order = sorted(produced.records, key=lambda po: (po[1], po[0]))
    for index, po in enumerate(by_raw_order):
        position[index] = po

    cmd = run_command(tansu.bootstrap, topic, group, f"s3://{s3_bucket}/stats",
                      seaweed.endpoint_url, write_config(tmp_path))
    runner = Runner(cmd, tmp_path / "runner.log")
    assert runner.wait(240) == 0, tail(runner.log)
    verdict = verify_exact(seaweed, s3_bucket, "stats", produced, tmp_path)
    print(f"\npoison ({len(POISON)} bad, {len(HOSTILE_FORUMS)} hostile names): "
          f"{verdict.line()}")

    import pyarrow.dataset as ds

    fs = s3_filesystem(seaweed)
    dead = ds.dataset(f"{s3_bucket}/stats/dead_letters", filesystem=fs, format="parquet",
                      partitioning="hive").to_table().to_pylist()
    reason_at = {(d["partition"], d["offset"]): d["reason"] for d in dead}
    for index, reason in expected_reason.items():
        po = position[index]
        assert produced.records[po] == mixed[index]
        assert reason_at.get(po) == reason, (mixed[index][:80], reason_at.get(po))
    # hostile names were counted, and every object key is made of time and configuration only
    keys = [info.path for info in fs.get_file_info(
        __import__("pyarrow.fs").fs.FileSelector(f"{s3_bucket}/stats", recursive=True))
        if info.type.name == "File"]
    bad_keys = [k for k in keys if ".." in k or "passwd" in k or "evil" in k
                or not re.fullmatch(r"[A-Za-z0-9_./=:-]+", k)]
    assert bad_keys == []
    assert committed(tansu.bootstrap, topic, group) == end_offsets(produced)
