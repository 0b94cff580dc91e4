"""LocalBatchSource: cuts of batch_size (larger after resize), identical replays, committable
contiguous prefix, NDJSON."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from forumstats.local_source import LocalBatchSource
from forumstats.sources import GeneratorSource, NdjsonSource

STARTED = 1_767_225_600_000


def ndjson(tmp_path, lines: list[str], name: str = "in.ndjson"):
    path = tmp_path / name
    path.write_bytes("".join(line + "\n" for line in lines).encode())
    return NdjsonSource(path)


def source_of(src, batch_size=4, max_in_flight=100) -> LocalBatchSource:
    return LocalBatchSource(src, batch_size=batch_size, max_in_flight=max_in_flight,
                            started_ms=STARTED)


def poll_all(source: LocalBatchSource) -> list:
    out = []
    while batch := source.poll():
        out += batch
    return out


def test_cuts_at_multiples_of_batch_size(tmp_path):
    src = source_of(ndjson(tmp_path, [f'{{"n": {i}}}' for i in range(10)]), batch_size=4)
    batches = poll_all(src)
    assert [(b.first_offset, b.last_offset) for b in batches] == [(0, 3), (4, 7), (8, 9)]
    for b in batches:
        assert [pos for pos, _raw, _ts in b.records] == list(range(b.first_offset,
                                                                  b.last_offset + 1))
        assert all(ts == STARTED for _pos, _raw, ts in b.records)
        assert b.batch_id == f"file:0:{b.first_offset}-{b.last_offset}" and b.attempt == 0
        assert (b.topic, b.partition) == ("file", 0)
    assert batches[0].records[1][1] == b'{"n": 1}'
    assert src.exhausted() and not src.finished() and src.in_flight == 3
    # the rest of the KafkaBatchSource interface: nothing durable, nothing to pace
    assert src.commit() is True
    src.note_event_time(("file", 0), STARTED)
    src.close()


def test_ndjson_blank_lines_are_not_records_but_cuts_stay_aligned(tmp_path):
    lines = ['{"n": 0}', "", '{"n": 2}', "   ", '{"n": 4}', "", "", "",
             '{"n": 8}', "\r", "", '{"n": 11}', ""]
    src = source_of(ndjson(tmp_path, lines), batch_size=4)
    batches = poll_all(src)
    spans = [(b.first_offset, b.last_offset) for b in batches]
    assert spans == [(0, 3), (4, 7), (8, 11)]  # contiguous, aligned: blanks are covered
    assert [[pos for pos, _r, _t in b.records] for b in batches] == [[0, 2], [4], [8, 11]]
    assert all(raw.strip() for b in batches for _p, raw, _t in b.records)


def test_a_batch_of_only_blank_lines_is_still_cut(tmp_path):
    lines = ["{}", "{}", "", "", "{}"]
    src = source_of(ndjson(tmp_path, lines), batch_size=2)
    batches = poll_all(src)
    assert [(b.first_offset, b.last_offset, len(b.records)) for b in batches] == [
        (0, 1, 2), (2, 3, 0), (4, 4, 1)]


def test_max_in_flight_holds_new_batches_back(tmp_path):
    src = source_of(ndjson(tmp_path, ["{}"] * 20), batch_size=2, max_in_flight=3)
    batches = poll_all(src)
    assert len(batches) == 3 and src.poll() == []
    assert src.ack(batches[1].batch_id)
    assert [b.first_offset for b in src.poll()] == [6] and src.poll() == []


def test_replay_is_identical_and_comes_first_even_at_the_in_flight_cap(tmp_path):
    src = source_of(ndjson(tmp_path, [f'{{"n": {i}}}' for i in range(9)]), batch_size=3,
                    max_in_flight=2)
    a, b = poll_all(src)
    assert src.fail(a.batch_id)
    replay, = src.poll()
    assert (replay.batch_id, replay.first_offset, replay.last_offset, replay.records) == (
        a.batch_id, a.first_offset, a.last_offset, a.records)
    assert replay.attempt == 1
    assert src.fail(replay.batch_id)
    assert src.poll()[0].attempt == 2
    assert src.poll() == []  # still two in flight: nothing new
    assert src.ack(a.batch_id) and src.ack(b.batch_id)
    assert [x.first_offset for x in poll_all(src)] == [6]


def test_unknown_and_settled_ids_are_ignored(tmp_path):
    src = source_of(ndjson(tmp_path, ["{}"] * 4), batch_size=2)
    a, _b = poll_all(src)
    assert not src.ack("file:0:99-100") and not src.fail("nope")
    assert src.ack(a.batch_id)
    assert not src.ack(a.batch_id) and not src.fail(a.batch_id)
    assert src.committable() == {("file", 0): 2}


def test_a_batch_waiting_for_its_replay_ignores_further_fails_and_acks(tmp_path):
    """As KafkaBatchSource: only an in-flight batch can be acked or failed. A second fail before
    the replay went out must not hand the batch out twice, and an ack of a batch queued for
    replay must not commit past it."""
    src = source_of(ndjson(tmp_path, ["{}"] * 4), batch_size=2)
    a, b = poll_all(src)
    assert src.fail(a.batch_id)
    assert not src.fail(a.batch_id)
    assert not src.ack(a.batch_id)
    assert src.committable() == {("file", 0): 0}
    assert [x.batch_id for x in poll_all(src)] == [a.batch_id]  # handed out once
    assert src.ack(a.batch_id) and src.ack(b.batch_id)
    assert src.finished() and src.committable() == {("file", 0): 4}


def test_committable_prefix_stops_at_the_first_unacked_batch(tmp_path):
    src = source_of(ndjson(tmp_path, ["{}"] * 10), batch_size=2)
    batches = poll_all(src)  # 0-1, 2-3, 4-5, 6-7, 8-9
    key = ("file", 0)
    assert src.committable() == {key: 0}
    src.ack(batches[1].batch_id)
    src.ack(batches[3].batch_id)
    assert src.committable() == {key: 0}
    src.ack(batches[0].batch_id)
    assert src.committable() == {key: 4}
    src.fail(batches[2].batch_id)
    assert src.committable() == {key: 4}
    replay, = src.poll()
    src.ack(replay.batch_id)
    assert src.committable() == {key: 8}
    src.ack(batches[4].batch_id)
    assert src.committable() == {key: 10} and src.finished()


class ListSource:
    """The source interface LocalBatchSource uses (``name``, ``records``), over a list of
    positions; missing positions play blank NDJSON lines."""

    name = "list"

    def __init__(self, positions: list[int], read_size: int) -> None:
        self.positions = positions
        self.read_size = read_size  # kept for the test's parameters; records are one stream

    def records(self):
        for p in self.positions:
            yield f'{{"p": {p}}}'.encode(), p


@settings(max_examples=150, deadline=None)
@given(st.lists(st.booleans(), max_size=40), st.integers(1, 7), st.integers(1, 5),
       st.integers(1, 9), st.integers(0, 2**32))
def test_random_acks_and_fails_deliver_every_record_and_commit_everything(
        present, size, cap, read_size, seed):
    """Any order of acks and fails: every record is delivered once per attempt, replays are
    identical, cuts stay aligned and contiguous, the committable offset is the contiguous
    acked prefix, and at the end everything is committed."""
    rnd = random.Random(seed)
    positions = [p for p, keep in enumerate(present) if keep]
    src = source_of(ListSource(positions, read_size), batch_size=size, max_in_flight=cap)
    first_seen: dict[str, object] = {}
    out: list = []
    acked_spans: list[tuple[int, int]] = []
    for _ in range(10 * (len(present) + 5)):
        for batch in src.poll():
            prev = first_seen.setdefault(batch.batch_id, batch)
            assert (prev.first_offset, prev.last_offset, prev.records) == (
                batch.first_offset, batch.last_offset, batch.records)
            assert batch.first_offset % size == 0
            assert batch.last_offset - batch.first_offset < size
            out.append(batch)
        assert src.in_flight <= cap
        if out:
            batch = out.pop(rnd.randrange(len(out)))
            if rnd.random() < 0.3:
                assert src.fail(batch.batch_id)
            else:
                assert src.ack(batch.batch_id)
                acked_spans.append((batch.first_offset, batch.last_offset))
        prefix = 0
        for first, last in sorted(acked_spans):
            if first != prefix:
                break
            prefix = last + 1
        assert src.committable() == {("list", 0): prefix}
        if src.finished():
            break
    assert src.finished()
    records = sorted(pos for b in first_seen.values() for pos, _r, _t in b.records)
    assert records == positions
    spans = sorted((b.first_offset, b.last_offset) for b in first_seen.values())
    assert all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:], strict=False))
    end = spans[-1][1] + 1 if spans else 0
    assert end == (positions[-1] + 1 if positions else 0)  # trailing blanks: not cut
    assert src.committable() == {("list", 0): end}


def test_generator_source_is_cut_the_same_way_on_every_run():
    def cut():
        src = source_of(GeneratorSource(events=50, seed=3), batch_size=8)
        return [(b.batch_id, b.records) for b in poll_all(src)]
    assert cut() == cut()
    assert [bid for bid, _r in cut()][:2] == ["generator:0:0-7", "generator:0:8-15"]


def test_resize_cuts_larger_batches_from_where_it_is_and_limits_those_in_flight(tmp_path):
    src = source_of(ndjson(tmp_path, [f'{{"n": {i}}}' for i in range(40)]), batch_size=4,
                    max_in_flight=5)
    first = src.poll()
    src.resize(10, max_in_flight=2)
    second = src.poll()
    assert src.poll() == []  # two in flight: the new limit
    src.ack(first[0].batch_id)
    third = src.poll()
    src.resize(3, max_in_flight=50)  # never smaller batches, never above the start's limit
    assert src.batch_size == 10
    rest = []
    while batch := src.poll():
        rest += batch
    cuts = [(b.first_offset, b.last_offset) for b in first + second + third + rest]
    assert cuts == [(0, 3), (4, 13), (14, 23), (24, 33), (34, 39)]
    assert src.in_flight == 4  # the limit is back to the 5 set at the start
