"""Batches in flight must span a window (forumstats.inflight): a dense stream read in small
batches would fill topology.max.spout.pending with batches the counting tasks hold until a
window closes, and none would ever be acked (a run of 200k events at 2,000 events per second
of event time with max.spout.pending 250 hung for good before this).

The real spout runs in-process over a real local file source; nothing is acked, as when every
batch is held."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forumstats.generator import generate
from forumstats.inflight import SAFETY, EventDensity, batch_size_needed
from forumstats.localstorm import in_process_component

WINDOW, OOO = 60_000, 30_000


def test_density_is_unknown_until_event_time_moved_200_ms():
    d = EventDensity()
    d.add(500, 1_000)  # the first batch only sets where event time starts
    d.add(400, 1_150)
    assert d.per_ms() is None
    d.add(600, 2_000)
    assert d.per_ms() == 1000 / 1000
    d.add(0, None)  # a batch of dead letters only
    d.add(300, 1_200)  # stragglers: more events, no progress
    assert d.per_ms() == 1300 / 1000


@pytest.mark.parametrize("per_s, allowed, expected", [
    (2_000, 400, 900),      # default pending 2000 and 4 buckets: 2,000 records per batch suffice
    (10_000, 400, 4_500),
    (2_000, 50, 7_200),     # max.spout.pending 250
    (50, 50, 180),
])
def test_batch_size_needed_table(per_s, allowed, expected):
    assert batch_size_needed(per_s / 1000, window_ms=WINDOW, out_of_orderness_ms=OOO,
                             batches_in_flight=allowed) == expected


@given(per_s=st.floats(0.01, 1e6), allowed=st.integers(1, 10_000),
       window=st.integers(1_000, 86_400_000), ooo=st.integers(0, 3_600_000))
def test_needed_batches_span_the_window_twice(per_s, allowed, window, ooo):
    size = batch_size_needed(per_s / 1000, window_ms=window, out_of_orderness_ms=ooo,
                             batches_in_flight=allowed)
    span_ms = allowed * size / (per_s / 1000)
    assert span_ms >= SAFETY * (window + ooo) * (1 - 1e-9)
    smaller = allowed * (size - 1) / (per_s / 1000)
    assert size == 1 or smaller < SAFETY * (window + ooo)


def _spout(tmp_path, events_per_second: float, pending: int, n: int = 60_000):
    from spouts import kafka_events

    src = tmp_path / "events.ndjson"
    src.write_bytes(b"\n".join(generate(n, seed=3, events_per_second=events_per_second,
                                        malformed_fraction=0.0)) + b"\n")
    conf = {"forumstats.source": str(src), "forumstats.output": str(tmp_path / "out"),
            "forumstats.buckets": 4, "topology.max.spout.pending": pending,
            "forumstats.window": "1m", "forumstats.out_of_orderness": "30s"}
    sent: list[dict] = []
    spout = in_process_component(kafka_events.KafkaEventSpout, conf,
                                 {"taskid": 1, "componentid": "events",
                                  "task->component": {"1": "events"}}, sent.append)
    return spout, sent


def _handed_out(sent: list[dict]) -> tuple[int, int, int]:
    """(batches, the first batch's latest event time, the latest event time) so far."""
    data = [m["tuple"] for m in sent if m.get("stream") == "batches"
            and m.get("id") is not None and m["tuple"][0] == 0]
    return len(data), data[0][4], max(t[4] for t in data)


def test_a_dense_local_stream_gets_batches_that_span_a_window(tmp_path):
    spout, sent = _spout(tmp_path, events_per_second=2_000, pending=50, n=300_000)  # 150 s
    for _ in range(200):  # nothing is acked: as when every batch is held by an open window
        spout.next_tuple()
    batches, first, high = _handed_out(sent)
    assert batches == 10  # Storm's cap, in batches
    # what was handed out reaches out-of-orderness past the end of the first batch's latest
    # window, so the counting tasks can close it and ack; 2,000-record batches stop at ~10 s
    assert high >= first - first % WINDOW + WINDOW + OOO
    assert spout.source.batch_size > 2_000


def test_a_sparse_stream_keeps_the_configured_batch_size(tmp_path):
    spout, sent = _spout(tmp_path, events_per_second=50, pending=2_000, n=20_000)
    for _ in range(50):
        spout.next_tuple()
    assert spout.source.batch_size == 2_000


def test_a_spout_with_every_batch_held_says_what_to_change(tmp_path, monkeypatch):
    from spouts import kafka_events

    monkeypatch.setattr(kafka_events, "COMMIT_EVERY_S", 0.0)
    spout, sent = _spout(tmp_path, events_per_second=50, pending=50)
    assert spout.stall_after_s == 30 + 60 + 30 + 5  # margin + window + ooo + flush (default)
    spout.stall_after_s = 0.0
    for _ in range(30):
        spout.next_tuple()
    stalls = [m["tuple"][2]["message"] for m in sent
              if m.get("stream") == "status" and m["tuple"][1] == "stalled"]
    assert len(stalls) == 1  # once a minute, not on every call
    assert "topology.max.spout.pending" in stalls[0]
    assert "forumstats.kafka.batch_size >= " in stalls[0]
    spout.ack(next(iter(spout.outstanding)))  # an ack: no longer stalled
    sent.clear()
    spout._stall_reported = 0.0
    spout.next_tuple()
    assert not [m for m in sent if m.get("stream") == "status" and m["tuple"][1] == "stalled"]
