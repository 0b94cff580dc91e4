"""prepare_batch (the spout's per-batch pre-aggregation) and bucket_of (forum -> key bucket)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import zlib
from collections import Counter

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from forumstats.batching import bucket_of, prepare_batch
from forumstats.settings import EventContract

CONTRACT = EventContract()
SIZE = 60_000
T0 = 1_767_225_600_000
FORUMS = ["python", "rust", "ünïcode", "日本語", "a b", "../x", "😀", "", "x" * 200]


@st.composite
def records(draw):
    """[(offset, raw, expected)], expected None for a record that must be rejected. The bulk
    comes from a drawn seed (drawing every field through Hypothesis is slow)."""
    n = draw(st.integers(0, 60))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    out = []
    for offset in range(n):
        kind = rnd.choice(["ok", "ok", "ok", "ok", "bad_json", "no_forum", "bad_ts",
                           "not_object", "int_thread"])
        forum = rnd.choice([f for f in FORUMS if f])
        ts = T0 + rnd.randint(-200_000, 400_000)
        ts -= ts % rnd.choice((1, 60_000))  # window boundaries are common
        doc = {"type": rnd.choice(["vote", "comment", "pageview", "reaction"]),
               "forum": forum, "thread": rnd.choice(["1", "2", "t-3"]), "ts": ts}
        expected = (ts - ts % SIZE, forum, doc["thread"], doc["type"], ts)
        if kind == "bad_json":
            raw, expected = b'{"type": "vote", "forum": ', None
        elif kind == "no_forum":
            del doc["forum"]
            raw, expected = orjson.dumps(doc), None
        elif kind == "bad_ts":
            doc["ts"] = 5  # 1970: outside the contract's range
            raw, expected = orjson.dumps(doc), None
        elif kind == "not_object":
            raw, expected = b"[1, 2]", None
        elif kind == "int_thread":
            doc["thread"] = 42
            raw = orjson.dumps(doc)
            expected = (expected[0], forum, "42", doc["type"], ts)
        else:
            raw = orjson.dumps(doc)
        out.append((offset + 100, raw, expected))
    return out


@settings(max_examples=200, deadline=None)
@given(records(), st.integers(1, 8))
def test_counts_per_bucket_sum_to_accepted_and_match_a_group_by(recs, buckets):
    prepared = prepare_batch([(o, raw) for o, raw, _e in recs], contract=CONTRACT, size_ms=SIZE,
                             buckets=buckets, source="kafka", topic="events", partition=3,
                             received_ms=T0)
    good = [e for _o, _r, e in recs if e is not None]
    bad_offsets = [o for o, _r, e in recs if e is None]
    rows = [row for rows in prepared.rows_by_bucket.values() for row in rows]
    assert prepared.accepted == len(good) == sum(row[4] for row in rows)
    assert prepared.accepted + len(prepared.dead) == len(recs)
    assert [d.offset for d in prepared.dead] == bad_offsets
    assert all((d.source, d.topic, d.partition, d.received_ms) == ("kafka", "events", 3, T0)
               for d in prepared.dead)
    assert {bytes(d.raw) for d in prepared.dead} == {r for _o, r, e in recs if e is None}
    assert prepared.max_ts == (max(e[4] for e in good) if good else None)
    # the rows are exactly the group-by of the accepted events, one row per key
    want = Counter(e[:4] for e in good)
    got = {tuple(row[:4]): row[4] for row in rows}
    assert len(got) == len(rows) and got == dict(want)
    for bucket, bucket_rows in prepared.rows_by_bucket.items():
        assert 0 <= bucket < buckets and bucket_rows
        for start, forum, _thread, _kind, n in bucket_rows:
            assert bucket == bucket_of(forum, buckets) and n > 0 and start % SIZE == 0
    # a forum lives in exactly one bucket
    homes: dict[str, set] = {}
    for bucket, bucket_rows in prepared.rows_by_bucket.items():
        for row in bucket_rows:
            homes.setdefault(row[1], set()).add(bucket)
    assert all(len(b) == 1 for b in homes.values())


def test_rows_travel_as_json_unchanged():
    recs = [(i, orjson.dumps({"type": "vote", "forum": "f", "thread": "t", "ts": T0 + i}))
            for i in range(5)]
    prepared = prepare_batch(recs, contract=CONTRACT, size_ms=SIZE, buckets=4, source="file",
                             topic=None, partition=None, received_ms=T0)
    assert json.loads(json.dumps(prepared.rows_by_bucket[bucket_of("f", 4)])) == [
        [T0, "f", "t", "vote", 5]]


@given(st.text(max_size=30), st.integers(1, 64))
def test_bucket_of_is_in_range_and_is_crc32_of_the_utf8_name(forum, buckets):
    b = bucket_of(forum, buckets)
    assert 0 <= b < buckets
    assert b == zlib.crc32(forum.encode("utf-8")) % buckets


def test_bucket_of_is_the_same_in_another_process_with_another_hash_seed():
    forums = FORUMS + [f"forum-{i}" for i in range(50)]
    here = {f: [bucket_of(f, n) for n in (1, 2, 3, 4, 7, 16)] for f in forums}
    code = ("import json, sys\n"
            "from forumstats.batching import bucket_of\n"
            "forums = json.load(sys.stdin)\n"
            "print(json.dumps({f: [bucket_of(f, n) for n in (1, 2, 3, 4, 7, 16)] "
            "for f in forums}))\n")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(src), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(forums), env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == here
    assert len({b[3] for b in here.values()}) == 4  # the buckets are all used


def test_bucket_of_known_values():
    # CRC32 ("123456789") = 0xCBF43926, the standard check value
    assert bucket_of("123456789", 2**32) == 0xCBF43926
    assert bucket_of("123456789", 7) == 0xCBF43926 % 7
