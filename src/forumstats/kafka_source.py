"""Kafka-facing half of the KafkaEventSpout, on kafka-python (adapter; no streamparse).

``KafkaBatchSource`` consumes with a consumer group and hands out micro-batches of raw records;
the caller (a streamparse spout, the local runner, a test) parses them, acks or fails each batch
and calls ``commit()`` now and then. The bookkeeping is pure and lives in
``forumstats.offsets`` (ledgers, cut rule, cut log) and ``forumstats.pacing``.

Guarantees
----------
* A batch is ``(topic, partition, first_offset, last_offset)``; batches never cross a multiple
  of ``batch_size`` and a replay (after ``fail``, a timeout, a restart or a rebalance) cuts a
  range exactly as before. Partial ("tail") batches are only cut when the consumer has caught up
  with the partition's end (fetch high watermark), and their cut is stored in Kafka *before*
  the batch is handed out (see "Cut log" below).
* Offsets are committed per partition only up to the contiguous prefix of acked batches.
* A failed batch is re-read (seek back) after base*2^(n-1) ms (capped) and handed out again
  with the same id, offsets and records.
* At most ``max_in_flight`` batches are out un-acked (like ``topology.max.spout.pending``),
  and at most an equal share of that per owned partition, so the slowest partition always
  has room (``AckTracker.share``).
* Rebalances: batches of partitions that are taken away are forgotten; acks and fails that
  arrive for them later are ignored and nothing is committed for them. Partitions that stay
  with this consumer (an eager rebalance revokes and re-assigns everything) keep their state.
* A broker that goes away: ``poll()`` returns ``[]`` and logs one WARNING, then a reminder now
  and then; ``commit()`` returns False; when it is back an INFO line says so and work resumes.
* Pacing: a partition more than ``pacing_bound`` ahead in event time of the slowest live
  partition is paused; the caller reports event times with ``note_event_time``.

Cut log
-------
``cut_log`` chooses where tail cuts and the lease live (format: ``forumstats.offsets``):

* ``metadata``: in the metadata string of the partition's offset commit (real Apache Kafka
  keeps it; ``offset.metadata.max.bytes`` defaults to 4096).
* ``topic``: in a topic ``forumstats-cuts.<group>.<topic>`` (created on demand, one partition
  per source partition). Each change appends one record ``<committed>|<generation>|<cut log>``
  to the source partition's twin, synchronously, followed by a synchronous offset commit that
  fences a consumer that has lost the partition; a reader takes the record of the highest
  generation among the partition's last 8. Tansu 0.6 drops commit metadata (it answers
  ``metadata=None``), so this is what runs there.
* ``auto`` (default): ``metadata``, verified by reading the first metadata commit back; if the
  broker dropped it, switch to ``topic`` for good (a WARNING says so). At assignment both places
  are read (metadata first).
* ``none``: no tail cuts at all (a partial block waits until it is complete) and no lease, so
  changing ``batch_size`` may re-cut in-flight ranges. For brokers that allow neither.

Tansu quirks met (0.6)
----------------------
* ``ListOffsets`` (``end_offsets``) can report less than the real end (2,000 records: 282 per
  partition instead of 500); the high watermark in fetch responses is right. ``caught_up`` and
  ``end_offsets_snapshot`` therefore rely on the fetch high watermark, and ``latest`` as a first
  poll position may start somewhat before the real end there.
* Commit metadata is not stored (see above).
* Not Tansu but kafka-python 3.0.12: a paused partition that is resumed can stay unfetched
  forever (see ``_unstick_fetcher``); worked around here.
* Group joins take about 3 s with short session timeouts (``session_timeout_ms=6000``,
  ``heartbeat_interval_ms=1000``) and far longer with the defaults.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import MemberState, OffsetAndMetadata

from .errors import SourceError
from .kafka_settings import KafkaSourceSettings
from .offsets import FAILED, REPLAYING, AckTracker, Batch, CutLog, PartitionLedger
from .pacing import Pacer

log = logging.getLogger(__name__)

CUT_TOPIC_PREFIX = "forumstats-cuts."
CUT_TOPIC_SCAN = 8
REMIND_EVERY_MS = 30_000


class Record(NamedTuple):
    offset: int
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True)
class RawBatch:
    """Records of one batch, unparsed. ``attempt`` is 0 for the first hand-out."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    records: list[tuple[int, bytes, int]]
    batch_id: str
    attempt: int = 0
    # (floor, start, end): the partition's committed offset when handed out, and the batch's
    # offset range [start, end). Ranges tile the partition, so downstream can tell whether
    # every batch from the floor up to this one has arrived (see counting.SourceChain).
    span: tuple[int, int, int] | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class _Part:
    """Adapter-side state of one partition: buffers and flags (the ledger is in the tracker)."""

    pending: list[Record] = field(default_factory=list)
    pending_since_ms: int | None = None
    replay: dict[int, list[Record]] = field(default_factory=dict)
    replay_active: bool = False


class _Listener(ConsumerRebalanceListener):
    """Runs on kafka-python's IO loop: only queue events and pause new partitions."""

    def __init__(self, source: KafkaBatchSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked):
        self._source._events.append(("revoked", set(revoked)))

    def on_partitions_assigned(self, assigned):
        consumer = self._source._consumer
        if consumer is not None and assigned:
            consumer.pause(*assigned)  # nothing is fetched until the user thread set them up
        self._source._events.append(("assigned", set(assigned)))

    def on_partitions_lost(self, lost):
        self._source._events.append(("lost", set(lost)))


class KafkaBatchSource:
    """Micro-batches from a Kafka consumer group, with acks, replays and exact cuts.

    ``clock`` returns seconds (``time.monotonic`` by default); inject a fake one in tests.
    ``consumer_config`` adds or overrides kafka-python ``KafkaConsumer`` settings.
    """

    def __init__(self, settings: KafkaSourceSettings, *,
                 clock: Callable[[], float] = time.monotonic, commit_timeout_ms: int = 5_000,
                 health_interval_ms: int = 2_000,
                 consumer_config: dict[str, Any] | None = None) -> None:
        cut_log = settings.cut_log
        self.settings = settings
        self._clock = clock
        self._mode = cut_log
        self._metadata_verified = cut_log != "auto"
        self._commit_timeout_ms = commit_timeout_ms
        self._health_interval_ms = health_interval_ms
        self._lock = threading.RLock()
        self._events: deque[tuple[str, set[TopicPartition]]] = deque()
        self._tracker = AckTracker(settings.max_in_flight, settings.backoff_base_ms,
                                   settings.backoff_cap_ms)
        self._pacer = Pacer(settings.pacing_bound_ms, settings.idle_timeout_ms)
        self._parts: dict[TopicPartition, _Part] = {}
        self._uninitialized: set[TopicPartition] = set()
        self._reset_done: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._rotation = 0
        self._down_since_ms: int | None = None
        self._last_remind_ms = 0
        self._last_contact_ms = self._now_ms()
        self._producer: KafkaProducer | None = None
        self._cut_reader: KafkaConsumer | None = None
        self._admin = None
        self._cut_topics_ready: dict[str, int] = {}
        self._closed = False
        self.stats = {"emitted": 0, "replayed": 0, "acked": 0, "failed": 0, "ignored": 0,
                      "commits": 0, "sync_commits": 0}
        config: dict[str, Any] = {
            "bootstrap_servers": settings.bootstrap_list,
            "group_id": settings.group_id,
            "client_id": settings.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": settings.auto_offset_reset,
            "session_timeout_ms": settings.session_timeout_ms,
            "heartbeat_interval_ms": settings.heartbeat_interval_ms,
            "max_poll_interval_ms": settings.max_poll_interval_ms,
            "request_timeout_ms": settings.request_timeout_ms,
            "connections_max_idle_ms": max(540_000, settings.request_timeout_ms + 1),
        }
        config.update(consumer_config or {})
        self._consumer_config = config
        self._consumer: KafkaConsumer | None = None
        try:
            self._consumer = KafkaConsumer(**config)
        except KafkaError as exc:
            raise SourceError(
                f"cannot connect to Kafka at {settings.bootstrap_servers}: {exc}; check "
                "forumstats.kafka.bootstrap_servers and that the brokers are up") from exc
        _keep_finished_joins(self._consumer)
        self._consumer.subscribe(list(settings.topics), listener=_Listener(self))

    # ------------------------------------------------------------------ public API
    def poll(self, max_records: int = 500, timeout_ms: int = 0,
             max_batches: int | None = None) -> list[RawBatch]:
        """Fetch and return batches ready to hand out (possibly none), at most ``max_batches``
        (the caller's own room; 0 still polls, which keeps the group membership alive).
        Never raises KafkaError."""
        with self._lock:
            self._check_open()
            now = self._now_ms()
            self._expire(now)
            self._start_replays(now)
            self._apply_pauses(now)
            self._unstick_fetcher()
            try:
                fetched = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
            except KafkaError as exc:
                self._trouble("poll", exc)
                self._handle_events()
                return []
            now = self._now_ms()
            self._handle_events()
            self._init_partitions(now)
            for tp, records in fetched.items():
                self._route(tp, records, now)
            out = self._finish_replays(now, max_batches)
            out += self._cut_new(now, None if max_batches is None else max_batches - len(out))
            if fetched or out:
                self._contact(now)
            else:
                self._maybe_probe(now)
            return out

    def ack(self, batch_id: str) -> bool:
        """Mark a batch done. False (and nothing happens) for stale or unknown ids."""
        with self._lock:
            ok = self._tracker.ack(batch_id)
            self.stats["acked" if ok else "ignored"] += 1
            if not ok:
                log.debug("ignoring ack of %s (revoked, replaced or unknown)", batch_id)
            return ok

    def fail(self, batch_id: str) -> bool:
        """Schedule a batch for replay after its backoff. False for stale or unknown ids."""
        with self._lock:
            ok = self._tracker.fail(batch_id, self._now_ms())
            self.stats["failed" if ok else "ignored"] += 1
            if not ok:
                log.debug("ignoring fail of %s (revoked, replaced or unknown)", batch_id)
            return ok

    def commit(self) -> bool:
        """Commit the acked prefix of every partition (with its cut log).

        True when Kafka holds everything committable (also when nothing changed), False when a
        commit failed (broker away, rebalance in progress); nothing is lost, call it again.
        """
        with self._lock:
            self._check_open()
            keys = [tp for tp, ledger in self._tracker.active().items() if ledger.dirty]
            if not keys:
                return True
            ok = self._persist(keys, why="commit")
            if ok:
                self.stats["commits"] += 1
            return ok

    def note_event_time(self, tp: Any, max_ts_ms: int) -> None:
        """Report the highest event time the caller saw in a batch of ``tp`` (for pacing).

        ``tp`` is a ``(topic, partition)`` pair, a TopicPartition or a RawBatch.
        """
        key = _key(tp)
        with self._lock:
            self._pacer.note_event_time(key, int(max_ts_ms))

    def watermark_info(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Per assigned partition: event time reported, liveness, pacing and offset progress."""
        with self._lock:
            now = self._now_ms()
            info = {}
            for tp, ledger in self._tracker.ledgers.items():
                info[(tp.topic, tp.partition)] = {
                    "event_time_ms": self._pacer.event_time.get(tp),
                    "live": self._pacer.is_live(tp, now),
                    "held": tp in self._pacer.held,
                    "paused": tp in self._paused,
                    "committable": ledger.committable,
                    "next_offset": ledger.next_emit,
                    "in_flight": ledger.in_flight,
                    "highwater": self._highwater(tp),
                }
            return info

    def lag(self) -> int | None:
        """Records between the committed prefix and the fetch high watermark, summed over the
        owned partitions (None until every one has a high watermark)."""
        with self._lock:
            total = 0
            for tp, ledger in self._tracker.active().items():
                highwater = self._highwater(tp)
                if highwater is None:
                    return None
                total += max(0, highwater - ledger.committable)
            return total if self._tracker.ledgers else None

    def idle_inputs(self, ends: dict[tuple[str, int], int] | None = None
                    ) -> dict[str, tuple[int, int]]:
        """Owned partitions that are idle, as ``topic-partition`` -> (floor, end): everything
        below the high watermark (or below ``ends`` where given) handed out, nothing failed
        and waiting for a replay, and no record fetched for ``idle_timeout``. ``floor`` is the
        committed offset and ``end`` where the handed-out batches end: downstream stops waiting
        for the partition only once it holds every batch in between. A partition held back by
        the in-flight cap, by pacing or by a slow sink is silent, but not idle."""
        with self._lock:
            now = self._now_ms()
            out = {}
            for tp, ledger in sorted(self._tracker.active().items()):
                limit = (ends or {}).get((tp.topic, tp.partition))
                end = limit if limit is not None else self._highwater(tp)
                waiting = any(b.state in (FAILED, REPLAYING) for b in ledger.batches.values())
                if (end is not None and ledger.next_emit >= end and not waiting
                        and not self._pacer.is_live(tp, now)):
                    out[f"{tp.topic}-{tp.partition}"] = (
                        ledger.committable, end if limit is not None else ledger.next_emit)
            return out

    def assignment(self) -> set[tuple[str, int]]:
        """Partitions set up and owned right now."""
        with self._lock:
            return {(tp.topic, tp.partition) for tp in self._tracker.active()}

    def all_partitions(self) -> set[tuple[str, int]]:
        """Every partition of the subscribed topics, owned by this consumer or by another
        member of the group: the owned ones plus those in the client's metadata cache (never
        a request, so it never blocks). Known before the first record: fetching a partition
        needs its topic's metadata, which lists all of the topic's partitions."""
        with self._lock:
            out = {(tp.topic, tp.partition) for tp in self._tracker.active()}
            cluster = getattr(self._consumer, "_cluster", None)  # kafka-python's cache
            for topic in self.settings.topics:
                known = cluster.partitions_for_topic(topic) if cluster is not None else None
                out |= {(topic, p) for p in known or ()}
            return out

    def committable(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return {(tp.topic, tp.partition): offset
                    for tp, offset in self._tracker.committable().items()}

    @property
    def in_flight(self) -> int:
        return self._tracker.in_flight

    def awaiting_replay(self) -> int:
        """Batches failed (or timed out) and not yet handed out again."""
        with self._lock:
            return sum(1 for ledger in self._tracker.ledgers.values()
                       for batch in ledger.batches.values() if batch.state == FAILED)

    @property
    def cut_log_mode(self) -> str:
        """``metadata``, ``topic`` or ``none``; ``auto`` until the first metadata commit."""
        return self._mode

    @property
    def broker_down(self) -> bool:
        return self._down_since_ms is not None

    def settled(self) -> bool:
        """The group is stable and every partition it gave this consumer is set up."""
        with self._lock:
            return self._group_stable() and not self._uninitialized and not self._events

    def caught_up(self) -> bool:
        """Every owned partition has been fetched up to its fetch high watermark and nothing
        fetched is still waiting to be handed out (Tansu-safe: does not trust end_offsets)."""
        with self._lock:
            if self._uninitialized or not self._tracker.ledgers:
                return False
            for tp in self._tracker.active():
                hw = self._highwater(tp)
                part = self._parts[tp]
                if hw is None or self._position(tp) is None or self._position(tp) < hw:
                    return False
                if part.pending or part.replay:
                    return False
            return True

    def end_offsets_snapshot(self) -> dict[tuple[str, int], int]:
        """End offset per owned partition for a "stop at the end" backfill.

        The larger of ListOffsets (``end_offsets``) and the fetch high watermark: Tansu's
        ListOffsets can be lower than the real end, the high watermark is right but only known
        after a fetch. Take the snapshot once ``caught_up()`` was true (or after a few polls);
        the backfill is done when ``committable()`` reaches it for every partition.
        """
        with self._lock:
            tps = list(self._tracker.active())
            ends: dict[TopicPartition, int] = {}
            if tps:
                try:
                    ends = self._consumer.end_offsets(tps, timeout_ms=self._commit_timeout_ms)
                except KafkaError as exc:
                    log.warning("end_offsets failed (%s); using fetch high watermarks only", exc)
            out = {}
            for tp in tps:
                hw = self._highwater(tp)
                candidates = [v for v in (ends.get(tp), hw) if v is not None]
                if candidates:
                    out[(tp.topic, tp.partition)] = max(candidates)
            return out

    def reached(self, snapshot: dict[tuple[str, int], int]) -> bool:
        """True when every partition of ``snapshot`` is owned and committable up to its end."""
        done = self.committable()
        return all(done.get(key, -1) >= end for key, end in snapshot.items())

    def close(self, commit: bool = True) -> None:
        """Commit the acked prefix (if asked) and leave the group."""
        with self._lock:
            if self._closed:
                return
            if commit and not self.broker_down:
                try:
                    self.commit()
                except Exception:  # noqa: BLE001 - closing must not fail
                    log.exception("final commit failed")
            self._closed = True
            for client in (self._consumer, self._cut_reader, self._producer, self._admin):
                if client is None:
                    continue
                try:
                    if isinstance(client, KafkaProducer):
                        client.close(timeout=2)
                    elif isinstance(client, KafkaConsumer):
                        client.close(autocommit=False, timeout_ms=self._commit_timeout_ms)
                    else:
                        client.close()
                except Exception:  # noqa: BLE001
                    log.debug("error closing %r", client, exc_info=True)

    def __enter__(self) -> KafkaBatchSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals: time/health
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _check_open(self) -> None:
        if self._closed:
            raise SourceError("the Kafka source is closed")

    def _contact(self, now: int) -> None:
        self._last_contact_ms = now
        if self._down_since_ms is not None:
            log.info("Kafka at %s is reachable again after %.1f s; resuming",
                     self.settings.bootstrap_servers, (now - self._down_since_ms) / 1000)
            self._down_since_ms = None

    def _trouble(self, what: str, exc: BaseException) -> None:
        now = self._now_ms()
        if self._down_since_ms is None:
            self._down_since_ms = now
            self._last_remind_ms = now
            log.warning("Kafka at %s unreachable (%s: %s); handing out nothing and retrying "
                        "until it is back", self.settings.bootstrap_servers, what,
                        _describe(exc))
        elif now - self._last_remind_ms >= REMIND_EVERY_MS:
            self._last_remind_ms = now
            log.warning("Kafka at %s still unreachable after %.0f s (%s: %s)",
                        self.settings.bootstrap_servers, (now - self._down_since_ms) / 1000,
                        what, _describe(exc))
        else:
            log.debug("Kafka %s failed: %s", what, _describe(exc))

    def _group_stable(self) -> bool:
        try:
            return self._consumer.group_metadata().state == MemberState.STABLE
        except Exception:  # noqa: BLE001 - no group yet
            return False

    def _maybe_probe(self, now: int) -> None:
        """No records: check with a real request now and then that the broker answers."""
        if now - self._last_contact_ms < self._health_interval_ms:
            return
        self._last_contact_ms = now
        try:
            if self._group_stable():
                tp = TopicPartition(self.settings.topics[0], 0)
                self._consumer.committed(tp, timeout_ms=min(self._commit_timeout_ms, 1_000))
            else:
                # joining a group can take longer than any short request: just check that
                # some broker accepts connections
                _tcp_probe(self.settings.bootstrap_list)
        except (KafkaError, OSError) as exc:
            self._trouble("health check", exc)
            return
        self._contact(now)

    # ------------------------------------------------------------------ internals: rebalances
    def _handle_events(self) -> None:
        while self._events:
            kind, tps = self._events.popleft()
            if kind == "revoked":
                for tp in tps:
                    self._tracker.suspend(tp)
                    self._uninitialized.discard(tp)
                if tps:
                    log.info("partitions revoked: %s", _names(tps))
            elif kind == "lost":
                for tp in tps:
                    self._forget(tp)
                log.warning("partitions lost (group membership expired): %s", _names(tps))
            elif kind == "assigned":
                kept = {tp for tp in tps if self._tracker.restore(tp)}
                for tp in list(self._tracker.suspended):
                    self._forget(tp)  # revoked and not given back
                for tp in tps - kept:
                    self._forget(tp)
                    self._uninitialized.add(tp)
                for tp in kept:
                    # an eager rebalance resets the consumer's position: continue where we are
                    self._parts[tp] = _Part()
                    ledger = self._tracker.ledgers[tp]
                    ledger.abort_replays(self._now_ms())
                    self._seek(tp, ledger.next_emit)
                self._paused |= tps  # the listener paused them all
                log.info("partitions assigned: %s (kept %d)", _names(tps), len(kept))
        # drop suspended partitions the consumer no longer owns (cooperative revoke)
        owned = self._consumer.assignment()
        for tp in list(self._tracker.suspended):
            if tp not in owned:
                self._forget(tp)
        self._paused &= owned

    def _forget(self, tp: TopicPartition) -> None:
        if self._tracker.revoke(tp) is not None:
            log.debug("forgetting batches of %s", tp)
        self._parts.pop(tp, None)
        self._pacer.forget(tp)
        self._uninitialized.discard(tp)

    def _init_partitions(self, now: int) -> None:
        for tp in sorted(self._uninitialized):
            try:
                self._init_partition(tp, now)
            except KafkaError as exc:
                self._trouble(f"setting up {tp.topic}[{tp.partition}]", exc)
                return
            except _NotYet as exc:
                log.info("%s[%d]: not ready yet (%s); retrying", tp.topic, tp.partition, exc)
                return
            self._uninitialized.discard(tp)

    def _init_partition(self, tp: TopicPartition, now: int) -> None:
        s = self.settings
        committed = self._consumer.committed(tp, metadata=True, timeout_ms=self._commit_timeout_ms)
        offset = committed.offset if committed is not None and committed.offset >= 0 else None
        restored = None
        if offset is not None:
            restored = self._read_cut_log(tp, offset, committed.metadata)
        own = (not s.ignores_foreign_commits
               or (s.deployment_id is not None and restored is not None
                   and restored.deployment == s.deployment_id)
               or (s.deployment_id is None and tp in self._reset_done))
        if offset is not None and own:
            self._consumer.seek(tp, offset)
            base, how = offset, "committed offset"
        else:
            restored = None
            if s.auto_offset_reset == "earliest":
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek_to_end(tp)
            base = self._consumer.position(tp, timeout_ms=self._commit_timeout_ms)
            if base is None:
                raise _NotYet(f"no start position for {tp} yet")
            how = f"{s.auto_offset_reset} ({s.first_poll})"
            self._reset_done.add(tp)
        ledger = PartitionLedger(
            base, s.batch_size, restored=restored, max_uncommitted=s.max_uncommitted,
            metadata_max_bytes=s.metadata_max_bytes, deployment=s.deployment_id,
            lease_blocks=None if self._mode == "none" else 16)
        self._tracker.attach(tp, ledger)
        self._parts[tp] = _Part()
        self._pacer.track(tp, now)
        log.info("%s[%d]: starting at offset %d (%s%s)", tp.topic, tp.partition, base, how,
                 f", {len(ledger.cuts)} recorded cut(s)" if ledger.cuts else "")

    # ------------------------------------------------------------------ internals: fetching
    def _apply_pauses(self, now: int) -> None:
        owned = self._consumer.assignment()
        for tp, ledger in self._tracker.active().items():
            highwater, position = self._highwater(tp), self._position(tp)
            fresh = not ledger.batches and ledger.next_emit == ledger.base
            has_data = highwater is None or position is None or position < highwater or bool(
                self._parts[tp].pending)
            self._pacer.set_waiting(tp, fresh and has_data)
        held = self._pacer.decide(now) if self._tracker.ledgers else set()
        full = self._tracker.room() == 0
        want: set[TopicPartition] = set()
        for tp in owned:
            part = self._parts.get(tp)
            if tp in self._uninitialized or tp in self._tracker.suspended or part is None:
                want.add(tp)
            elif part.replay_active:
                continue  # re-reading failed batches needs no room
            elif tp in held or full or self._tracker.room_for(tp) == 0:
                want.add(tp)
            elif len(part.pending) >= 4 * self.settings.batch_size:
                want.add(tp)  # enough buffered (cannot hand out: cut log full or uncommitted cap)
        current = self._consumer.paused()
        pause, resume = want - current, current - want
        if pause:
            self._consumer.pause(*pause)
        if resume:
            self._consumer.resume(*resume)
        self._paused = want

    def _route(self, tp: TopicPartition, records: list, now: int) -> None:
        part = self._parts.get(tp)
        ledger = self._tracker.ledgers.get(tp)
        if part is None or ledger is None or tp in self._tracker.suspended:
            return
        self._pacer.note_activity(tp, now)
        for r in records:
            rec = Record(r.offset, r.value if r.value is not None else b"", r.timestamp)
            if rec.offset >= ledger.next_emit:
                if part.pending and rec.offset <= part.pending[-1].offset:
                    continue  # re-delivered after a seek: already buffered
                if not part.pending:
                    part.pending_since_ms = now
                part.pending.append(rec)
            elif rec.offset >= ledger.committable:
                batch = ledger.locate(rec.offset)
                if batch is not None and batch.state == "replaying":
                    buf = part.replay.setdefault(batch.start, [])
                    if not buf or rec.offset > buf[-1].offset:
                        buf.append(rec)

    def _start_replays(self, now: int) -> None:
        for tp, ledger in self._tracker.active().items():
            due = ledger.due(now)
            if not due:
                continue
            part = self._parts[tp]
            ledger.begin_replay(due)
            replaying = ledger.replaying()
            target = min(b.first for b in replaying)
            part.replay = {}
            part.pending = []
            part.pending_since_ms = None
            part.replay_active = True
            self._seek(tp, target)
            log.info("%s[%d]: replaying %d batch(es) from offset %d", tp.topic, tp.partition,
                     len(due), target)

    def _finish_replays(self, now: int, budget: int | None = None) -> list[RawBatch]:
        out: list[RawBatch] = []
        for tp, ledger in self._tracker.active().items():
            part = self._parts[tp]
            if not part.replay_active:
                continue
            position = self._position(tp)
            for batch in ledger.replaying():
                if budget is not None and len(out) >= budget:
                    break  # stays replaying, its records buffered: handed out on a later poll
                buf = part.replay.get(batch.start, [])
                complete = (buf and buf[-1].offset >= batch.last) or (
                    position is not None and position >= batch.end)
                if not complete:
                    continue
                part.replay.pop(batch.start, None)
                recs = [r for r in buf if batch.first <= r.offset <= batch.last]
                ledger.replayed(batch, now)
                if not recs:
                    log.error("%s[%d]: records %d..%d of a failed batch are gone from Kafka "
                              "(retention?); counting the batch as done", tp.topic,
                              tp.partition, batch.first, batch.last)
                    ledger.ack(batch.first, batch.last)
                    continue
                if len(recs) != batch.count or recs[0].offset != batch.first:
                    log.warning("%s[%d]: replay of %d..%d found %d records, first hand-out had "
                                "%d", tp.topic, tp.partition, batch.first, batch.last,
                                len(recs), batch.count)
                out.append(self._raw(tp, batch, recs))
                self.stats["replayed"] += 1
            if not ledger.replaying():
                part.replay_active = False
                part.replay = {}
                if position is None or position < ledger.next_emit:
                    self._seek(tp, ledger.next_emit)
        return out

    def _cut_new(self, now: int, budget: int | None = None) -> list[RawBatch]:
        held = self._pacer.held
        active = [tp for tp in self._tracker.active() if self._parts[tp].pending
                  and not self._parts[tp].replay_active and tp not in held]
        if not active:
            return []
        self._rotation = (self._rotation + 1) % len(active)
        active = active[self._rotation:] + active[:self._rotation]
        room = self._tracker.room() if budget is None else min(self._tracker.room(), budget)
        linger = self.settings.tail_linger_for(self._tracker.share())
        plans: dict[TopicPartition, list] = {}
        for tp in active:
            if room <= 0:
                break
            share = self._tracker.room_for(tp)
            if share <= 0:
                continue
            part, ledger = self._parts[tp], self._tracker.ledgers[tp]
            position = self._position(tp)
            if position is None:
                continue
            highwater = self._highwater(tp)
            tail_ok = (self._mode != "none" and highwater is not None and position >= highwater
                       and now - (part.pending_since_ms or now) >= linger)
            cuts = ledger.plan([r.offset for r in part.pending], position, tail_ok=tail_ok,
                               limit=min(room, share))
            if cuts:
                plans[tp] = cuts
                room -= len(cuts)
        if not plans:
            return []
        need = [tp for tp, cuts in plans.items() if self._tracker.ledgers[tp].record(cuts)]
        if need and not self._persist(need, why="cut"):
            for tp in need:
                plans.pop(tp)
        out: list[RawBatch] = []
        for tp, cuts in plans.items():
            part, ledger = self._parts[tp], self._tracker.ledgers[tp]
            for cut in cuts:
                recs, part.pending = part.pending[:cut.count], part.pending[cut.count:]
                batch = ledger.emit(cut, recs[0].offset, recs[-1].offset, now)
                out.append(self._raw(tp, batch, recs))
                self.stats["emitted"] += 1
            part.pending_since_ms = now if part.pending else None
        return out

    def _expire(self, now: int) -> None:
        timeout = self.settings.batch_timeout_ms
        if timeout is None:
            return
        for tp, ledger in self._tracker.ledgers.items():
            for batch in ledger.expire(now, timeout, self.settings.backoff_base_ms,
                                       self.settings.backoff_cap_ms):
                log.info("%s[%d]: batch %d..%d timed out after %d ms; will replay", tp.topic,
                         tp.partition, batch.first, batch.last, timeout)

    def _raw(self, tp: TopicPartition, batch: Batch, recs: list[Record]) -> RawBatch:
        ledger = self._tracker.ledgers[tp]
        return RawBatch(tp.topic, tp.partition, batch.first, batch.last,
                        [(r.offset, r.value, r.timestamp_ms) for r in recs],
                        self._tracker.batch_id((tp.topic, tp.partition), batch), batch.retries,
                        (ledger.committable, batch.start, batch.end))

    def _unstick_fetcher(self) -> None:
        """Work around a kafka-python 3.0.12 fetcher bug.

        Records fetched for a partition that gets paused are parked; on resume they are only
        restored when the fetcher's in-line slot is ``None``, but a drained in-line entry stays
        there as a falsy object, so the resumed partition is never fetched again (reproduced on
        Tansu: position stuck below the high watermark forever). A drained entry holds no
        records, so replacing it with ``None`` changes nothing else.
        """
        fetcher = getattr(self._consumer, "_fetcher", None)
        current = getattr(fetcher, "_next_partition_records", None)
        if current is not None and not current and getattr(fetcher, "_paused_partition_records",
                                                            None):
            fetcher._next_partition_records = None

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        try:
            self._consumer.seek(tp, offset)
        except (KafkaError, AssertionError, ValueError) as exc:
            log.warning("cannot seek %s to %d: %s", tp, offset, exc)

    def _position(self, tp: TopicPartition) -> int | None:
        try:
            return self._consumer.position(tp, timeout_ms=0)
        except (KafkaError, Exception):  # noqa: BLE001 - not assigned any more, etc.
            return None

    def _highwater(self, tp: TopicPartition) -> int | None:
        try:
            return self._consumer.highwater(tp)
        except Exception:  # noqa: BLE001
            return None

    # ------------------------------------------------------------------ internals: commits
    def _persist(self, keys: Iterable[TopicPartition], why: str) -> bool:
        """Commit offsets (and the cut log) of ``keys``; True if Kafka has them."""
        keys = [tp for tp in keys if tp in self._tracker.active()]
        if not keys:
            return True
        if self.broker_down:
            return False  # the health check in poll() notices when it is back
        if self._mode == "topic":
            return self._persist_topic(keys, why)
        logs = {tp: self._tracker.ledgers[tp].cut_log() for tp in keys}
        offsets = {tp: OffsetAndMetadata(
            self._tracker.ledgers[tp].committable,
            logs[tp].encode(self._tracker.ledgers[tp].committable) if self._mode != "none"
            else "", -1) for tp in keys}
        if not self._commit(offsets, why):
            return False
        if self._mode == "auto" and not self._metadata_verified:
            tp = keys[0]
            try:
                back = self._consumer.committed(tp, metadata=True,
                                                timeout_ms=self._commit_timeout_ms)
            except KafkaError as exc:
                self._trouble("reading back commit metadata", exc)
                return False
            if back is not None and back.metadata == offsets[tp].metadata:
                self._metadata_verified = True
                self._mode = "metadata"
                log.info("the broker keeps commit metadata: cut log stored there")
            else:
                log.warning("the broker dropped the commit metadata (got %r): storing the cut "
                            "log in topics %s<group>.<topic> instead", getattr(back, "metadata",
                                                                                None),
                            CUT_TOPIC_PREFIX)
                self._mode = "topic"
                return self._persist_topic(keys, why)
        for tp in keys:
            ledger = self._tracker.ledgers[tp]
            ledger.mark_persisted(offsets[tp].offset, logs[tp])
        return True

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], why: str) -> bool:
        try:
            self._consumer.commit(offsets, timeout_ms=self._commit_timeout_ms)
        except KafkaError as exc:
            if _is_rebalance_error(exc):
                log.info("commit (%s) refused during a rebalance: %s", why, _describe(exc))
            else:
                self._trouble(f"commit ({why})", exc)
            return False
        except Exception as exc:  # noqa: BLE001 - e.g. assertion deep in the client
            self._trouble(f"commit ({why})", exc)
            return False
        self.stats["sync_commits"] += 1
        self._contact(self._now_ms())
        return True

    def _persist_topic(self, keys: list[TopicPartition], why: str) -> bool:
        generation = self._generation()
        writes = []
        try:
            producer = self._get_producer()
            for tp in keys:
                ledger = self._tracker.ledgers[tp]
                if not ledger.meta_dirty:
                    continue
                floor = ledger.commit_floor
                cut_topic = self._cut_topic(tp.topic)
                value = f"{floor}|{generation}|{ledger.cut_log().above(floor).encode(floor)}"
                future = producer.send(cut_topic, value=value.encode(), partition=tp.partition)
                writes.append((future, tp, floor))
            for future, _tp, _floor in writes:
                future.get(timeout=self._commit_timeout_ms / 1000)
        except KafkaError as exc:
            self._trouble(f"writing the cut log ({why})", exc)
            return False
        except _NotYet as exc:
            log.warning("cannot store the cut log yet: %s", exc)
            return False
        logs = {tp: self._tracker.ledgers[tp].cut_log() for tp in keys}
        offsets = {tp: OffsetAndMetadata(self._tracker.ledgers[tp].committable, "", -1)
                   for tp in keys}
        if not self._commit(offsets, why):  # also fences a consumer that lost the partition
            return False
        for tp in keys:
            self._tracker.ledgers[tp].mark_persisted(offsets[tp].offset, logs[tp])
        return True

    def _generation(self) -> int:
        try:
            return int(self._consumer.group_metadata().generation_id)
        except Exception:  # noqa: BLE001
            return -1

    def _get_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.settings.bootstrap_list, acks="all", linger_ms=0,
                client_id=f"{self.settings.client_id}-cutlog",
                request_timeout_ms=self._commit_timeout_ms, max_block_ms=self._commit_timeout_ms)
        return self._producer

    def _cut_topic(self, topic: str) -> str:
        """Name of the cut-log topic of ``topic`` for this group; created on first use."""
        name = cut_topic_name(self.settings.group_id, topic)
        partitions = len(self._consumer.partitions_for_topic(topic) or ())
        if self._cut_topics_ready.get(name, 0) >= max(1, partitions):
            return name
        admin = self._get_admin()
        have = self._cut_topic_partitions(name)
        if have == 0:
            try:
                admin.create_topics({name: {"num_partitions": max(1, partitions),
                                            "replication_factor": -1}},
                                    wait_for_metadata=True)
                log.info("created cut-log topic %s with %d partition(s)", name, partitions)
            except TopicAlreadyExistsError:
                pass
            have = self._cut_topic_partitions(name)
        if have < partitions:
            admin.create_partitions({name: partitions})
            log.info("grew cut-log topic %s to %d partitions", name, partitions)
            have = self._cut_topic_partitions(name)
        self._cut_topics_ready[name] = have
        return name

    def _get_admin(self):
        if self._admin is None:
            from kafka import KafkaAdminClient

            self._admin = KafkaAdminClient(
                bootstrap_servers=self.settings.bootstrap_list,
                request_timeout_ms=self._commit_timeout_ms,
                client_id=f"{self.settings.client_id}-cutlog-admin")
        return self._admin

    def _cut_topic_partitions(self, name: str) -> int:
        """Partition count of a topic, 0 if it does not exist."""
        for topic in self._get_admin().describe_topics([name]):
            if topic.get("name") == name and not topic.get("error_code"):
                return len(topic.get("partitions") or ())
        return 0

    def _read_cut_log(self, tp: TopicPartition, committed: int,
                      metadata: str | None) -> CutLog | None:
        """The cut log stored for ``tp``: commit metadata first, then the cut-log topic."""
        if self._mode == "none":
            return None
        if metadata:
            try:
                return CutLog.decode(metadata, committed)
            except ValueError as exc:
                log.warning("%s[%d]: commit metadata is not a cut log (%s); ignoring it",
                            tp.topic, tp.partition, exc)
        if self._mode == "metadata":
            return None
        return self._read_cut_topic(tp)

    def _read_cut_topic(self, tp: TopicPartition) -> CutLog | None:
        name = cut_topic_name(self.settings.group_id, tp.topic)
        if self._cut_reader is None:
            self._cut_reader = KafkaConsumer(
                bootstrap_servers=self.settings.bootstrap_list, group_id=None,
                enable_auto_commit=False, auto_offset_reset="earliest",
                client_id=f"{self.settings.client_id}-cutlog-reader",
                request_timeout_ms=max(self._commit_timeout_ms, 1_000) + 500,
                fetch_max_wait_ms=100)
        reader = self._cut_reader
        if self._cut_topic_partitions(name) <= tp.partition:
            return None
        ctp = TopicPartition(name, tp.partition)
        reader.assign([ctp])
        reader.seek_to_beginning(ctp)
        deadline = self._now_ms() + self._commit_timeout_ms
        highwater = None
        while highwater is None and self._now_ms() < deadline:
            reader.poll(timeout_ms=200, max_records=1)
            highwater = reader.highwater(ctp)
        if highwater is None:
            raise _NotYet(f"no high watermark for {name}[{tp.partition}]")
        if highwater == 0:
            return None
        reader.seek(ctp, max(0, highwater - CUT_TOPIC_SCAN))
        records = []
        while self._now_ms() < deadline:
            got = reader.poll(timeout_ms=200, max_records=CUT_TOPIC_SCAN)
            records += got.get(ctp, [])
            if records and records[-1].offset >= highwater - 1:
                break
        best = None
        for rec in records:
            try:
                floor_text, gen_text, text = rec.value.decode().split("|", 2)
                candidate = (int(gen_text), rec.offset, CutLog.decode(text, int(floor_text)))
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("unreadable cut-log record %s[%d]@%d: %s", name, tp.partition,
                            rec.offset, exc)
                continue
            if best is None or candidate[:2] > best[:2]:
                best = candidate
        return best[2] if best else None


class _JoinTask:
    """kafka-python 3.0.x's group-join task as its join loop ought to see it.

    The loop sends a new JoinGroup when it finds its join task done, also when the task
    *succeeded* between two polls (nobody was waiting for it at that moment): the finished
    join is thrown away and the whole group rebalances again, 3 s a round on Tansu (and on
    Kafka with its default initial rebalance delay). Several consumers polled in turn from one
    thread, as the local runner drives spout tasks, then rebalance forever. Reporting a
    succeeded task as not done makes the loop wait for it, which returns its result at once.
    """

    __slots__ = ("_task",)

    def __init__(self, task: Any) -> None:
        self._task = task

    @property
    def is_done(self) -> bool:
        return self._task.is_done and not self._task.succeeded()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    def __await__(self):
        return self._task.__await__()


def _keep_finished_joins(consumer: KafkaConsumer) -> None:
    """Wrap the join tasks of ``consumer``'s coordinator in ``_JoinTask`` (kafka-python 3.0.x
    internals; other versions are left alone)."""
    coordinator = getattr(consumer, "_coordinator", None)
    manager = getattr(coordinator, "_manager", None)
    join = getattr(coordinator, "_do_join_and_sync_async", None)
    if manager is None or join is None or not hasattr(coordinator, "_join_task"):
        return
    call_soon = manager.call_soon

    def call_soon_keeping_joins(coro: Any, *args: Any) -> Any:
        task = call_soon(coro, *args)
        return _JoinTask(task) if coro == join else task

    manager.call_soon = call_soon_keeping_joins


class _NotYet(Exception):
    """Something needed is not known yet (retry on a later poll)."""


def cut_topic_name(group_id: str, topic: str) -> str:
    """``forumstats-cuts.<group>.<topic>``; unusual characters become '_', long names a hash."""
    group = re.sub(r"[^A-Za-z0-9_-]", "_", group_id)
    name = f"{CUT_TOPIC_PREFIX}{group}.{topic}"
    if len(name) > 249:
        digest = f"{zlib.crc32(f'{group_id}/{topic}'.encode()):08x}"
        name = f"{CUT_TOPIC_PREFIX}{digest}.{topic}"[:249]
    return name


def _tcp_probe(servers: list[str], timeout_s: float = 1.0) -> None:
    """Raise OSError unless one of the ``host:port`` servers accepts a TCP connection."""
    error: OSError = OSError("no bootstrap servers")
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            socket.create_connection((host.strip("[]") or "localhost", int(port)),
                                     timeout=timeout_s).close()
            return
        except (OSError, ValueError) as exc:
            error = exc if isinstance(exc, OSError) else OSError(str(exc))
    raise error


def _key(tp: Any) -> TopicPartition:
    if isinstance(tp, RawBatch):
        return TopicPartition(tp.topic, tp.partition)
    topic, partition = tp
    return TopicPartition(topic, int(partition))


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "none"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_rebalance_error(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name in ("CommitFailedError", "RebalanceInProgressError", "IllegalGenerationError",
                    "UnknownMemberIdError", "FencedInstanceIdError")


def settings_for_tests(**changes: Any) -> KafkaSourceSettings:
    """Short group timings so joins take seconds on Tansu (used by the integration tests)."""
    base = KafkaSourceSettings(session_timeout_ms=6_000, heartbeat_interval_ms=1_000,
                               max_poll_interval_ms=30_000, request_timeout_ms=10_000,
                               tail_linger_ms=0)
    return replace(base, **changes)
