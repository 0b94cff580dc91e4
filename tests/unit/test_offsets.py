"""Pure offset bookkeeping, cut log and pacing (forumstats.offsets, forumstats.pacing)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forumstats.errors import ConfigError
from forumstats.kafka_settings import KafkaSourceSettings
from forumstats.offsets import (
    ACKED,
    AckTracker,
    CutLog,
    PartitionLedger,
    backoff_ms,
    boundary_after,
    format_batch_id,
    parse_batch_id,
)
from forumstats.pacing import Pacer

KEY = ("events", 0)


def emit_all(ledger: PartitionLedger, offsets, position, *, tail_ok=True, limit=1000, now=0,
             store=None):
    """Plan, persist (into ``store`` if given) and emit; returns the emitted batches."""
    cuts = ledger.plan(offsets, position, tail_ok=tail_ok, limit=limit)
    if ledger.record(cuts) or (store is not None and ledger.dirty):
        persist(ledger, store)
    out, i = [], 0
    for cut in cuts:
        recs = offsets[i:i + cut.count]
        i += cut.count
        out.append(ledger.emit(cut, recs[0], recs[-1], now))
    return out


def persist(ledger: PartitionLedger, store: dict | None = None) -> None:
    log = ledger.cut_log()
    if store is not None:
        store["offset"] = ledger.committable
        store["metadata"] = log.encode(ledger.committable)
    ledger.mark_persisted(ledger.committable, log)


# ------------------------------------------------------------------------------ basics


def test_backoff_is_exponential_and_capped():
    assert [backoff_ms(n, 100, 1_000) for n in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]
    assert backoff_ms(500, 100, 1_000) == 1_000
    with pytest.raises(ValueError):
        backoff_ms(0, 100, 1_000)


def test_boundaries_are_multiples_cuts_and_regime_edges():
    assert boundary_after(0, 10) == 10
    assert boundary_after(9, 10) == 10
    assert boundary_after(10, 10) == 20
    assert boundary_after(12, 10, cuts=[13, 17]) == 13
    assert boundary_after(13, 10, cuts=[13, 17]) == 17
    # below 35 offsets were cut with size 4: 4, 8, ..., 32, then the edge 35, then size 10
    assert boundary_after(30, 10, regimes=[(4, 35)]) == 32
    assert boundary_after(33, 10, regimes=[(4, 35)]) == 35
    assert boundary_after(35, 10, regimes=[(4, 35)]) == 40


def test_batch_ids_round_trip_and_reject_garbage():
    bid = format_batch_id("forum.events_v2-x", 3, 1000, 1042, 7)
    ref = parse_batch_id(bid)
    assert ref is not None and ref.key == ("forum.events_v2-x", 3)
    assert (ref.first, ref.last, ref.epoch) == (1000, 1042, 7)
    for bad in ("", "a/b/c", "t/x/1-2/3", "t/1/1_2/3", "t/1/1-2/x", None, 5):
        assert parse_batch_id(bad) is None


def test_pure_modules_import_no_adapters():
    code = ("import sys, forumstats.offsets, forumstats.pacing, forumstats.kafka_settings\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('kafka', 'streamparse', 'pystorm', 'boto3'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ------------------------------------------------------------------------------ cut log


def test_cut_log_encoding_is_relative_and_small():
    log = CutLog(500, 12_000, (10_043, 10_501), ((1000, 10_000),), "topo-1")
    text = log.encode(9_000)
    assert text == "fs1;s=500;h=3000;c=1043.458;r=1000@1000;d=topo-1"
    assert CutLog.decode(text, 9_000) == log
    # committed past the first cut and the regime: both dropped
    assert log.encode(10_100) == "fs1;s=500;h=1900;c=401;d=topo-1"


@given(
    committed=st.integers(0, 2**40),
    size=st.integers(1, 10**6),
    deltas=st.lists(st.integers(1, 10**6), max_size=30),
    regime=st.lists(st.tuples(st.integers(1, 10**5), st.integers(1, 10**6)), max_size=3),
    lease_extra=st.integers(0, 10**7),
    deployment=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True)),
)
def test_cut_log_round_trips(committed, size, deltas, regime, lease_extra, deployment):
    cuts, pos = [], committed
    for d in deltas:
        pos += d
        cuts.append(pos)
    regimes, edge = [], committed
    for s, d in regime:
        edge += d
        regimes.append((s, edge))
    lease = max([committed, *cuts, *[u for _, u in regimes]]) + lease_extra
    log = CutLog(size, lease, tuple(cuts), tuple(regimes), deployment)
    assert CutLog.decode(log.encode(committed), committed) == log


@pytest.mark.parametrize("text", [
    "", "fs0;s=5;h=0", "fs1", "fs1;s=0;h=1", "fs1;s=5", "fs1;s=5;h=-1", "fs1;s=5;h=1;c=0",
    "fs1;s=5;h=1;c=x", "fs1;s=5;h=9;r=5", "fs1;s=5;h=1;r=5@2", "fs1;s=5;s=6;h=1",
    "fs1;s=5;h=9;r=4@5.3@5", "fs1;s=5;h=1;d=a b", "some other tool's metadata",
])
def test_cut_log_rejects_foreign_or_broken_metadata(text):
    with pytest.raises(ValueError):
        CutLog.decode(text, 100)


def test_cut_log_ignores_unknown_fields():
    assert CutLog.decode("fs1;s=5;h=10;x=future", 0) == CutLog(5, 10)


# ------------------------------------------------------------------------------ ledger


def test_plan_cuts_at_multiples_and_absorbs_gaps():
    ledger = PartitionLedger(0, 10)
    offsets = [0, 1, 2, 9, 10, 11, 25, 26, 37]  # 12..24 and 27..36 are gaps
    batches = emit_all(ledger, offsets, position=40, tail_ok=False)
    assert [(b.start, b.end, b.first, b.last, b.count) for b in batches] == [
        (0, 10, 0, 9, 4), (10, 20, 10, 11, 2), (20, 30, 25, 26, 2), (30, 40, 37, 37, 1)]
    # a block is complete only once the position passed its end
    ledger = PartitionLedger(0, 10)
    assert ledger.plan([0, 1, 2], position=3, tail_ok=False, limit=5) == []
    cuts = ledger.plan([0, 1, 2], position=3, tail_ok=True, limit=5)
    assert [(c.start, c.end, c.count, c.tail) for c in cuts] == [(0, 3, 3, True)]


def test_tail_must_be_stored_before_it_is_handed_out():
    ledger = PartitionLedger(0, 10)
    cut, = ledger.plan([0, 1, 2], position=3, tail_ok=True, limit=5)
    with pytest.raises(ValueError):
        ledger.emit(cut, 0, 2, 0)  # not even recorded
    assert ledger.record([cut]) is True
    with pytest.raises(ValueError):
        ledger.emit(cut, 0, 2, 0)  # recorded but not yet in Kafka
    persist(ledger)
    ledger.emit(cut, 0, 2, 0)
    # the next records of the same block form the next batch; no commit is needed for it
    cuts = ledger.plan([3, 4, 9], position=10, tail_ok=False, limit=5)
    assert [(c.start, c.end) for c in cuts] == [(3, 10)]
    assert ledger.record(cuts) is False


def test_lease_is_extended_in_blocks():
    ledger = PartitionLedger(0, 10, lease_blocks=4)
    assert ledger.record(ledger.plan([0], position=10, tail_ok=False, limit=5)) is True
    persist(ledger)
    assert ledger.lease == 40
    for start in (10, 20, 30):  # inside the lease: no commit needed
        assert ledger.record(ledger.plan([start], position=start + 10, tail_ok=False,
                                         limit=5)) is False
    assert ledger.record(ledger.plan([40], position=50, tail_ok=False, limit=5)) is True


def test_commit_advances_only_over_the_acked_prefix_and_backoff_schedules_replays():
    ledger = PartitionLedger(100, 10)
    batches = emit_all(ledger, list(range(100, 140)), position=140)
    assert [b.start for b in batches] == [100, 110, 120, 130]
    assert ledger.ack(120, 129) and ledger.ack(130, 139)
    assert ledger.committable == 100  # 100..119 not acked yet
    assert ledger.ack(100, 109)
    assert ledger.committable == 110
    assert ledger.fail(110, 119, now_ms=1_000, base_ms=100, cap_ms=1_000)
    assert not ledger.ack(110, 119)  # a failed batch awaits its replay; stale acks ignored
    assert ledger.due(1_099) == [] and len(ledger.due(1_100)) == 1
    seek = ledger.begin_replay(ledger.due(1_100))
    assert seek == 110 and ledger.locate(115).state == "replaying"
    ledger.replayed(ledger.locate(115), now_ms=1_100)
    assert ledger.fail(110, 119, now_ms=2_000, base_ms=100, cap_ms=1_000)
    assert ledger.locate(110).eligible_ms == 2_200  # second failure: 200 ms
    ledger.begin_replay(ledger.due(2_200))
    ledger.replayed(ledger.locate(110), 2_200)
    assert ledger.ack(110, 119)
    assert ledger.committable == 140 and ledger.uncommitted == 0


def test_batch_timeout_fails_old_batches():
    ledger = PartitionLedger(0, 10)
    emit_all(ledger, [0, 10], position=20, now=0)
    emit_all(ledger, [20], position=30, now=500)
    expired = ledger.expire(now_ms=1_000, timeout_ms=1_000, base_ms=10, cap_ms=10)
    assert [b.first for b in expired] == [0, 10]


def test_uncommitted_cap_limits_planning():
    ledger = PartitionLedger(0, 10, max_uncommitted=2)
    assert len(emit_all(ledger, list(range(0, 50)), position=50)) == 2
    assert ledger.plan(list(range(20, 50)), 50, tail_ok=True, limit=10) == []


def test_cut_log_size_is_bounded():
    ledger = PartitionLedger(0, 10**6, metadata_max_bytes=64)
    emitted = 0
    for pos in range(1, 100):
        emitted += len(emit_all(ledger, [pos - 1], position=pos))
        assert len(ledger.metadata()) <= 64
    assert 0 < emitted < 99  # tails stop once the cut log is full


def test_restart_reproduces_tail_cuts():
    store: dict = {}
    a = PartitionLedger(0, 10)
    emit_all(a, [0, 1, 2], position=3, store=store)      # tail 0..2 (cut at 3)
    emit_all(a, [3, 4], position=5, store=store)         # tail 3..4 (cut at 5)
    emit_all(a, list(range(5, 17)), position=17, tail_ok=False, store=store)  # 5..9
    assert a.ack(0, 2)
    persist(a, store)
    # crash; the new owner starts from the committed offset with the stored cut log
    b = PartitionLedger(store["offset"], 10,
                        restored=CutLog.decode(store["metadata"], store["offset"]))
    again = emit_all(b, list(range(3, 17)), position=17, tail_ok=False)
    assert [(x.first, x.last) for x in again] == [(3, 4), (5, 9)]


def test_restart_with_other_batch_size_keeps_old_cuts_below_the_lease():
    store: dict = {}
    a = PartitionLedger(0, 10, lease_blocks=3)
    emit_all(a, list(range(0, 25)), position=25, tail_ok=False, store=store)
    assert store["metadata"].startswith("fs1;s=10;h=30")
    b = PartitionLedger(0, 7, restored=CutLog.decode(store["metadata"], 0))
    again = emit_all(b, list(range(0, 60)), position=60, tail_ok=False)
    assert [(x.first, x.last) for x in again][:5] == [
        (0, 9), (10, 19), (20, 29), (30, 34), (35, 41)]
    assert b.metadata().endswith("r=10@30") or "r=10@30" in b.metadata()


# ------------------------------------------------------------------------------ properties


@st.composite
def histories(draw):
    """A partition's records and several owners each consuming part of it, then crashing."""
    offsets = sorted(draw(st.sets(st.integers(0, 150), min_size=1, max_size=80)))
    owners = draw(st.lists(st.tuples(
        st.integers(1, 12),                                     # batch size of this owner
        st.lists(st.tuples(st.integers(1, 40), st.booleans(),   # fetch step, tail allowed
                           st.booleans(), st.booleans()),       # ack something, persist fails
                 min_size=1, max_size=12)),
        min_size=2, max_size=4))
    return offsets, owners


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.randoms(use_true_random=False))
def test_replays_cut_exactly_like_the_first_hand_out(history, rnd):
    """Whatever owners with whatever batch sizes did before crashing, a range handed out once
    is cut into the same batches every time it is handed out again."""
    offsets, owners = history
    seen: dict[int, int] = {}  # first offset -> last offset of every batch ever handed out
    store = {"offset": 0, "metadata": None}
    log_end = 0  # the high watermark: at least as far as anyone has read
    for size, steps in owners:
        restored = (CutLog.decode(store["metadata"], store["offset"])
                    if store["metadata"] else None)
        ledger = PartitionLedger(store["offset"], size, restored=restored, lease_blocks=2)
        position = store["offset"]
        for step, tail_ok, ack, persist_fails in steps:
            position = min(position + step, offsets[-1] + 1)
            log_end = max(log_end, position)
            pending = [o for o in offsets if ledger.next_emit <= o < position]
            # a tail is only cut when caught up with the end (as the adapter does)
            cuts = ledger.plan(pending, position, tail_ok=tail_ok and position >= log_end,
                               limit=100)
            if ledger.record(cuts):
                if persist_fails:
                    continue  # nothing handed out; the recorded cut stays in memory
                persist(ledger, store)
            i = 0
            for cut in cuts:
                recs = pending[i:i + cut.count]
                i += cut.count
                batch = ledger.emit(cut, recs[0], recs[-1], 0)
                if batch.first in seen:
                    assert seen[batch.first] == batch.last, "range re-cut differently"
                seen[batch.first] = batch.last
            if ack and ledger.batches:
                victim = rnd.choice(list(ledger.batches.values()))
                ledger.ack(victim.first, victim.last)
                if rnd.random() < 0.5:
                    persist(ledger, store)
        # crash: whatever was not persisted is lost


OPS = st.lists(st.tuples(st.sampled_from(["emit", "ack", "fail", "replay", "revoke",
                                          "commit", "stale"]),
                         st.integers(0, 2), st.integers(0, 10**6)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(1, 6))
def test_committed_offset_is_the_contiguous_acked_prefix(ops, cap):
    """Random emit/ack/fail/replay/revoke/commit interleavings against a brute-force oracle."""
    tracker = AckTracker(max_in_flight=cap, backoff_base_ms=1, backoff_cap_ms=4)
    kafka = {p: 0 for p in range(3)}          # committed offsets stored "in Kafka"
    oracle: dict[int, list[list]] = {}        # partition -> [[first, last, end, acked, id]]
    issued: list[str] = []
    now = 0

    def attach(p):
        tracker.attach(("t", p), PartitionLedger(kafka[p], 5))
        oracle[p] = []

    for p in range(3):
        attach(p)
    for op, p, n in ops:
        now += 1
        ledger = tracker.ledgers[("t", p)]
        if op == "emit":
            if tracker.room() == 0:
                continue
            size = 1 + n % 7
            offsets = list(range(ledger.next_emit, ledger.next_emit + size))
            batches = emit_all(ledger, offsets, offsets[-1] + 1, limit=1)
            for b in batches:
                bid = tracker.batch_id(("t", p), b)
                issued.append(bid)
                oracle[p].append([b.first, b.last, b.end, False, bid])
        elif op in ("ack", "stale") and issued:
            bid = issued[n % len(issued)]
            entry = next((e for q in oracle.values() for e in q if e[4] == bid), None)
            state = None
            if entry is not None:
                ref = parse_batch_id(bid)
                batch = tracker.ledgers[ref.key].find(ref.first, ref.last)
                state = batch.state if batch else ACKED
            counted = tracker.ack(bid)
            assert counted == (entry is not None and state == "inflight")
            if counted:
                entry[3] = True
        elif op == "fail" and issued:
            bid = issued[n % len(issued)]
            tracker.fail(bid, now)
        elif op == "replay":
            due = ledger.due(now + 10)
            ledger.begin_replay(due)
            for b in due:
                ledger.replayed(b, now)
        elif op == "revoke":
            tracker.revoke(("t", p))
            attach(p)  # assigned again: starts over from what Kafka holds
        elif op == "commit":
            kafka[p] = ledger.committable
            persist(ledger)
        # the oracle: committable = end of the contiguous acked prefix from the start
        for q, entries in oracle.items():
            expected = tracker.ledgers[("t", q)].base
            for e in entries:
                if not e[3]:
                    break
                expected = e[2]
            got = tracker.ledgers[("t", q)].committable
            assert got == expected
            unacked = [e[0] for e in entries if not e[3]]
            assert not unacked or got <= min(unacked)
            assert kafka[q] <= got
        assert tracker.in_flight <= cap


def test_tracker_ignores_acks_of_revoked_partitions_and_old_epochs():
    tracker = AckTracker(max_in_flight=10)
    tracker.attach(KEY, PartitionLedger(0, 10))
    batch, = emit_all(tracker.ledgers[KEY], [0, 1], 10)
    old_id = tracker.batch_id(KEY, batch)
    tracker.revoke(KEY)
    assert tracker.ack(old_id) is False and tracker.fail(old_id, 0) is False
    tracker.attach(KEY, PartitionLedger(0, 10))  # re-assigned: same range, new epoch
    batch2, = emit_all(tracker.ledgers[KEY], [0, 1], 10)
    new_id = tracker.batch_id(KEY, batch2)
    assert new_id != old_id
    assert tracker.ack(old_id) is False
    assert tracker.ack(new_id) is True
    assert tracker.committable() == {KEY: 10}


def test_suspended_partitions_commit_nothing_until_restored():
    tracker = AckTracker(max_in_flight=10)
    tracker.attach(KEY, PartitionLedger(0, 10))
    batch, = emit_all(tracker.ledgers[KEY], [0], 10)
    tracker.suspend(KEY)
    assert tracker.ack(tracker.batch_id(KEY, batch))  # counted, but not committable now
    assert tracker.committable() == {}
    assert tracker.restore(KEY)
    assert tracker.committable() == {KEY: 10}


def test_in_flight_cap():
    tracker = AckTracker(max_in_flight=2)
    tracker.attach(KEY, PartitionLedger(0, 1))
    ledger = tracker.ledgers[KEY]
    batches = emit_all(ledger, [0, 1, 2], 3, limit=tracker.room())
    assert len(batches) == 2 and tracker.room() == 0
    tracker.ack(tracker.batch_id(KEY, batches[0]))
    assert tracker.room() == 1


# ------------------------------------------------------------------------------ pacing


def test_pacer_holds_partitions_far_ahead_of_the_slowest_live_one():
    pacer = Pacer(bound_ms=60_000, idle_timeout_ms=30_000)
    for p in "abc":
        pacer.track(p, now_ms=0)
    pacer.note_event_time("a", 1_000_000)
    pacer.note_event_time("b", 1_050_000)
    pacer.note_event_time("c", 1_200_000)  # 200 s ahead of a
    assert pacer.decide(now_ms=1_000) == {"c"}
    pacer.note_event_time("a", 1_150_000)
    assert pacer.decide(now_ms=2_000) == {"a", "c"}  # now b is the slowest
    pacer.note_event_time("b", 1_150_000)
    assert pacer.decide(now_ms=3_000) == set()  # everyone within the bound


def test_pacer_ignores_idle_partitions_and_unknown_event_times():
    pacer = Pacer(bound_ms=60_000, idle_timeout_ms=30_000)
    for p in "abc":
        pacer.track(p, now_ms=0)
    pacer.note_event_time("a", 0)
    pacer.note_event_time("b", 500_000)
    assert pacer.decide(now_ms=10_000) == {"b"}
    pacer.note_activity("b", 40_000)  # b is held, so still live; a went quiet at 0
    assert pacer.decide(now_ms=40_000) == set()  # a idle: no longer the slowest
    pacer.note_activity("a", 41_000)  # a gets records again
    assert pacer.decide(now_ms=41_000) == {"b"}
    pacer.forget("a")
    assert pacer.decide(now_ms=41_000) == set()
    assert Pacer(None, 1).decide(0) == set()


def test_pacer_holds_everyone_while_a_partition_with_data_has_not_reported():
    pacer = Pacer(bound_ms=60_000, idle_timeout_ms=30_000)
    for p in "ab":
        pacer.track(p, now_ms=0)
    pacer.note_event_time("a", 5_000_000)
    pacer.set_waiting("b", True)  # b has a backlog but no batch out yet
    assert pacer.decide(now_ms=1_000) == {"a"}
    pacer.note_event_time("b", 1_000_000)  # b reports: it is far behind
    assert pacer.decide(now_ms=2_000) == {"a"}
    pacer.note_event_time("b", 4_990_000)
    assert pacer.decide(now_ms=3_000) == set()
    # a waiting partition that receives nothing stops holding the others
    pacer.track("c", now_ms=3_000)
    pacer.set_waiting("c", True)
    assert pacer.decide(now_ms=4_000) == {"a", "b"}
    assert pacer.decide(now_ms=40_000) == set()


def test_pacer_event_time_only_moves_forward():
    pacer = Pacer(bound_ms=10, idle_timeout_ms=10)
    pacer.track("a", 0)
    pacer.note_event_time("a", 100)
    pacer.note_event_time("a", 50)
    assert pacer.event_time["a"] == 100
    pacer.note_event_time("untracked", 5)
    assert "untracked" not in pacer.event_time


# ------------------------------------------------------------------------------ settings


def test_settings_from_config_options():
    s = KafkaSourceSettings.from_options({
        "forumstats.idle_timeout": "45s",
        "forumstats.window": "1m",
        "forumstats.kafka.topics": ["a", "b"],
        "forumstats.kafka.bootstrap_servers": ["h1:9092", "h2:9092"],
        "forumstats.kafka.group_id": "g",
        "forumstats.kafka.first_poll": "committed-else-latest",
        "forumstats.kafka.batch_size": 200,
        "forumstats.kafka.retry_backoff": "2s",
        "forumstats.kafka.pacing_bound": "off",
        "forumstats.kafka.tail_linger": "250ms",
    })
    assert s.topics == ("a", "b") and s.bootstrap_list == ["h1:9092", "h2:9092"]
    assert s.idle_timeout_ms == 45_000 and s.backoff_base_ms == 2_000
    assert s.pacing_bound_ms is None and s.tail_linger_ms == 250
    assert s.auto_offset_reset == "latest" and not s.ignores_foreign_commits
    assert KafkaSourceSettings.from_options({}, batch_size=7).batch_size == 7


@pytest.mark.parametrize("options", [
    {"forumstats.kafka.nope": 1},
    {"forumstats.kafka.first_poll": "sometimes"},
    {"forumstats.kafka.topics": ["bad topic"]},
    {"forumstats.kafka.batch_size": 0},
    {"forumstats.kafka.max_uncommitted": 10_000},
    {"forumstats.kafka.retry_backoff": "1m", "forumstats.kafka.retry_backoff_max": "1s"},
    {"forumstats.kafka.heartbeat_interval": "10s", "forumstats.kafka.session_timeout": "6s"},
    {"forumstats.kafka.deployment_id": "has space"},
    {"forumstats.kafka.cut_log": "somewhere"},
    {"forumstats.kafka.retry_backoff": "soon"},
])
def test_bad_settings_are_rejected_with_the_option_name(options):
    with pytest.raises(ConfigError, match="forumstats.kafka."):
        KafkaSourceSettings.from_options(options)


def test_each_partition_gets_an_equal_share_so_the_slowest_always_has_room():
    tracker = AckTracker(max_in_flight=7)
    keys = [("t", p) for p in range(3)]
    for key in keys:
        tracker.attach(key, PartitionLedger(0, 1))
    assert tracker.share() == 2  # 7 // 3
    fast, slow = keys[0], keys[2]
    emitted = emit_all(tracker.ledgers[fast], list(range(10)), 10,
                       limit=tracker.room_for(fast))
    assert len(emitted) == 2 and tracker.room_for(fast) == 0
    emit_all(tracker.ledgers[keys[1]], list(range(10)), 10, limit=tracker.room_for(keys[1]))
    assert tracker.room() == 3 and tracker.room_for(slow) == 2  # kept free for the slowest
    tracker.ack(tracker.batch_id(fast, emitted[0]))
    assert tracker.room_for(fast) == 1
    tracker.revoke(keys[1])  # fewer partitions: bigger shares
    assert tracker.share() == 3 and tracker.room_for(keys[1]) == 0
