"""KafkaEventSpout run as Storm runs it: ``streamparse_run spouts.kafka_events.KafkaEventSpout``
in a subprocess, driven over the multi-lang protocol by ``tests.components.multilang``.

The spout reads the built-in generator (``forumstats.source = generator``) so that what it
must emit can be recomputed here from the same seeded records: per-bucket partial counts that
add up to the accepted events, dead letters carrying the raw bytes, and Storm's reliability
contract (one message id per part, whole-batch replay on any failure, stale acks ignored).

Launch as on a worker: argv ``[streamparse_run, "spouts.kafka_events.KafkaEventSpout"]``, the
working directory a ``resources`` folder holding the contents of ``src/``, the conf the topology
conf (config.json's ``local`` options) plus the component's ``json_conf``, and an environment
without the test process's FORUMSTATS_*/AWS_* variables: a component learns its settings from
the Storm conf only.
"""

from __future__ import annotations

import base64
import re
from collections import Counter

import pytest
from tests.components.multilang import STREAMPARSE_RUN, ShellSpout
from tests.components.project import CONFIG, worker_env

from forumstats.batching import bucket_of
from forumstats.counting import END_OF_INPUT
from forumstats.events import Event, parse_event
from forumstats.settings import EventContract, Settings
from forumstats.sources import GeneratorSource
from forumstats.topology_config import topology_options

SCRIPT = "spouts.kafka_events.KafkaEventSpout"
SOURCE = "generator-0"  # the local source's topic "generator", pseudo-partition 0
ID_RE = re.compile(
    r"^generator:0:(?P<first>\d+)-(?P<last>\d+)"  # the batch: topic:partition:range
    r"\|(?P<attempt>\d+)\|(?P<part>\d+|dead)$")
SEED = 11
BATCH_SIZE = 500


# --------------------------------------------------------------------------- helpers






def generator_conf(events: int, **extra) -> dict:
    conf = dict(topology_options(str(CONFIG), "local").options)
    conf.update({
        "forumstats.source": "generator",
        "forumstats.generator.events": events,
        "forumstats.generator.seed": SEED,
        "forumstats.kafka.batch_size": BATCH_SIZE,
    })
    conf.update(extra)
    return conf


def expected_records(events: int) -> list[tuple[bytes, int]]:
    """The records the spout's generator source reads: (raw bytes, offset)."""
    return list(GeneratorSource(events=events, seed=SEED).records())


def end_markers(spout: ShellSpout) -> list:
    return [e for e in spout.emits if e.msg_id is None and e.values[4] == END_OF_INPUT]


def parse_id(msg_id: str) -> dict:
    match = ID_RE.match(msg_id)
    assert match, f"tuple id {msg_id!r} does not name batch|attempt|bucket"
    return match.groupdict()






@pytest.fixture
def run_spout(topology, resources, tmp_path):
    started: list[ShellSpout] = []

    def start(conf: dict, **kwargs) -> ShellSpout:
        kwargs.setdefault("workdir", tmp_path / f"spout{len(started)}")
        spout = ShellSpout.from_topology(topology, "events", cwd=resources, conf=conf,
                                         env=worker_env(), **kwargs)
        started.append(spout)
        return spout

    yield start
    for spout in started:
        spout.close()


# --------------------------------------------------------------------------- tests


def test_handshake_and_every_command_ends_in_sync(run_spout, tmp_path):
    spout = run_spout(generator_conf(1000))

    assert spout.argv == [STREAMPARSE_RUN, SCRIPT]
    pid_file = tmp_path / "spout0" / "pids" / str(spout.pid)
    assert pid_file.is_file() and pid_file.stat().st_size == 0
    assert spout.context["componentid"] == "events"
    assert spout.context["stream->target->grouping"] == {
        "batches": {"counts": {"type": "FIELDS", "fields": ["bucket"]}},
        "dead_letters": {"sink": {"type": "SHUFFLE"}},
    }

    steps = [spout.activate()]
    steps.append(spout.next())
    first = steps[-1].msg_ids
    steps.append(spout.deactivate())  # commits the source
    steps.append(spout.activate())
    steps.append(spout.ack(first[0]))
    steps.append(spout.fail(first[1]))
    steps.append(spout.next())  # the replay
    steps.append(spout.next())  # the second batch

    assert [s.command for s in steps] == [
        "activate", "next", "deactivate", "activate", "ack", "fail", "next", "next"]
    assert spout.sync_count == len(steps)  # each command answered by exactly one sync
    assert spout.received_commands[-1] == "sync"
    assert all(not s.emits for s in steps if s.command not in ("next",))
    assert all(s.elapsed < 5 for s in steps)
    assert spout.errors == []
    assert [r.msg for r in spout.logs if r.level >= 3] == []  # no warnings, no errors
    assert spout.alive


def test_batches_count_every_accepted_event_once_with_named_ids(run_spout):
    events = 2000
    spout = run_spout(generator_conf(events))
    buckets = Settings.from_options(spout.conf).buckets
    spout.next_until(lambda: len(end_markers(spout)) == buckets, timeout=20)
    assert spout.next().emits == []  # exhausted: nothing more, and no second end marker

    # What the spout should have seen, recomputed from the same seeded records.
    contract = EventContract()
    accepted: Counter = Counter()
    named_users: dict[tuple, set] = {}
    rejected: dict[int, tuple[str, bytes]] = {}
    batch_max_ts: dict[int, int] = {}
    for raw, offset in expected_records(events):
        ev = parse_event(raw, contract)
        if type(ev) is Event:
            key = (bucket_of(ev.forum, buckets), ev.ts_ms - ev.ts_ms % 60_000, ev.forum,
                   ev.thread, ev.type)
            accepted[key] += 1
            if ev.user is not None:
                named_users.setdefault(key[:4], set()).add(ev.user)
            first = offset - offset % BATCH_SIZE
            batch_max_ts[first] = max(batch_max_ts.get(first, ev.ts_ms), ev.ts_ms)
        else:
            rejected[offset] = (ev.reason, raw)
    assert rejected, "the seed should produce some malformed records"

    counted: Counter = Counter()
    users_seen: dict[tuple, set] = {}
    parts_per_batch: dict[str, set] = {}
    dead_seen: dict[int, list] = {}
    batch_emits = [e for e in spout.emits if e.msg_id is not None]
    for emit in batch_emits:
        ident = parse_id(emit.msg_id)
        assert ident["attempt"] == "0"
        first, last = int(ident["first"]), int(ident["last"])
        batch = f"generator:0:{first}-{last}"
        parts_per_batch.setdefault(batch, set()).add(ident["part"])
        if emit.stream == "batches":
            bucket, source, v_first, v_last, max_ts, rows, users, span = emit.values
            assert ident["part"] == str(bucket)
            assert (source, v_first, v_last) == (SOURCE, first, last)
            assert span == [0, first, last + 1]  # nothing acked yet: the floor stays at 0
            assert max_ts == batch_max_ts[first]
            for start, forum, thread, kind, n in rows:
                assert bucket_of(forum, buckets) == bucket  # fields grouping on "bucket"
                assert start % 60_000 == 0 and n > 0
                counted[(bucket, start, forum, thread, kind)] += n
            for start, forum, thread, names in users:
                assert bucket_of(forum, buckets) == bucket and names == sorted(set(names))
                users_seen.setdefault((bucket, start, forum, thread), set()).update(names)
        else:
            assert emit.stream == "dead_letters" and ident["part"] == "dead"
            source, v_first, v_last, origin, records = emit.values
            assert (source, v_first, v_last, origin) == (SOURCE, first, last, "spout")
            for record in records:
                dead_seen[record[6]] = record

    assert sum(counted.values()) == sum(accepted.values()) == events - len(rejected)
    assert counted == accepted
    assert users_seen == named_users  # every named user travels with its window and thread
    assert set(parts_per_batch) == {
        f"generator:0:{f}-{f + BATCH_SIZE - 1}" for f in range(0, events, BATCH_SIZE)}
    for batch, parts in parts_per_batch.items():
        has_dead = any(int(batch.rsplit(":", 1)[1].split("-")[0]) <= o
                       <= int(batch.rsplit("-", 1)[1]) for o in rejected)
        assert parts == {str(b) for b in range(buckets)} | ({"dead"} if has_dead else set())

    # Dead letters: the raw bytes travel as base64 and decode to exactly the record.
    assert sorted(dead_seen) == sorted(rejected)
    for offset, record in dead_seen.items():
        reason, _detail, raw_b64, source_kind, topic, partition, rec_offset = record[:7]
        assert reason == rejected[offset][0]
        assert base64.b64decode(raw_b64, validate=True) == rejected[offset][1]
        assert (source_kind, topic, partition, rec_offset) == ("generator", None, None, offset)

    # Every bucket hears of the input before any of its data (so an input that has sent
    # nothing yet holds the watermark back), and of its end after all of its batches: one
    # unreliable marker per bucket each time.
    unreliable = [e for e in spout.emits if e.msg_id is None and e.stream != "status"]
    assert all(e.stream == "batches" for e in unreliable)
    announcement = [[b, SOURCE, -1, -1, None, [], [], None] for b in range(buckets)]
    assert [e.values for e in spout.emits[:buckets]] == announcement
    markers = end_markers(spout)
    assert [e.values for e in markers] == [
        [b, SOURCE, -1, -1, END_OF_INPUT, [], [], None] for b in range(buckets)]
    assert [e for e in spout.emits if e.stream != "status"][-buckets:] == markers
    # in between, only the once-a-second liveness repeats of the announcement
    assert all(e.values in announcement for e in unreliable if e not in markers)
    assert len(spout.emits) < events / 50  # batched: far fewer tuples than events
    assert spout.errors == []


def test_failed_part_replays_the_whole_batch_and_stale_acks_are_ignored(run_spout):
    spout = run_spout(generator_conf(1500))

    def by_part(step) -> dict[str, object]:
        return {parse_id(e.msg_id)["part"]: e for e in step.emits if e.msg_id is not None}

    first = spout.next()
    attempt0 = by_part(first)
    assert {parse_id(i)["attempt"] for i in first.msg_ids} == {"0"}
    assert "dead" in attempt0, "pick a seed whose first batch has a malformed record"

    spout.fail(attempt0["1"].msg_id)
    replay = spout.next()
    attempt1 = by_part(replay)
    # The whole batch again, every part, with a new attempt and the very same content.
    assert attempt1.keys() == attempt0.keys()
    for part, emit in attempt1.items():
        ident = parse_id(emit.msg_id)
        assert ident["attempt"] == "1"
        assert (ident["first"], ident["last"]) == ("0", "499")
        assert emit.stream == attempt0[part].stream
        assert emit.values == attempt0[part].values

    # Acks of the failed attempt's other parts arrive late: they must not complete the batch.
    for part in ("0", "2", "dead"):
        assert spout.ack(attempt0[part].msg_id).emits == []
    spout.fail(attempt1["2"].msg_id)
    again = spout.next()
    attempt2 = by_part(again)
    assert {parse_id(i)["attempt"] for i in again.msg_ids} == {"2"}
    assert attempt2.keys() == attempt0.keys()
    assert all(attempt2[p].values == attempt0[p].values for p in attempt0)

    # A late fail of an old attempt's part is ignored too: no fourth attempt.
    spout.fail(attempt0["3"].msg_id)
    for part in ("0", "1", "3", "dead"):
        spout.ack(attempt1[part].msg_id)
    for emit in attempt2.values():
        assert spout.ack(emit.msg_id).emits == []

    following = spout.next()
    ids = [parse_id(i) for i in following.msg_ids]
    assert ids and {(i["first"], i["attempt"]) for i in ids} == {("500", "0")}
    assert spout.pending_ids == following.msg_ids
    assert spout.errors == []


def test_the_spout_stays_below_max_spout_pending_counting_stale_tuples_of_failed_batches(
        run_spout):
    """Storm stops calling nextTuple at topology.max.spout.pending, and a Kafka consumer that
    is not polled loses its group: the spout keeps below the cap itself, counting the tuples
    of a failed batch that Storm has not acked or failed yet."""
    spout = run_spout(generator_conf(5000, **{"topology.max.spout.pending": 10}))
    per_batch = Settings.from_options(spout.conf).buckets + 1  # up to one dead-letter tuple

    def data(step):
        return [e for e in step.emits if e.msg_id is not None]

    out = []
    for _ in range(10):
        out += data(spout.next())
    assert 0 < len(out) <= 10  # two batches at most, never a third
    batches = sorted({parse_id(e.msg_id)["first"] for e in out})
    assert len(batches) == 10 // per_batch
    first = [e for e in out if parse_id(e.msg_id)["first"] == batches[0]]
    spout.fail(first[0].msg_id)  # the batch will be replayed whole ...
    assert all(data(spout.next()) == [] for _ in range(5))  # ... but its stale parts count
    for e in first[1:]:
        spout.ack(e.msg_id)  # Storm settles the stale parts
    replay = data(spout.next())
    assert {parse_id(e.msg_id)["attempt"] for e in replay} == {"1"}
    assert len(out) - len(first) + len(replay) <= 10
    assert spout.errors == []
