"""KafkaEventSpout: Kafka micro-batches -> per-bucket partial counts, acked batch by batch.

Thin: reading, cutting and committing is forumstats.kafka_source; validation and
pre-aggregation is forumstats.batching. Each batch becomes one tuple per key bucket (every
bucket hears of every batch, so each counting task learns each partition's event-time progress)
plus one dead-letter tuple if the batch had bad records. The batch is acked to Kafka when all
of its tuples are acked, and failed (replayed whole, same cut) when any of them fails.
"""

from __future__ import annotations

import base64
import time

from streamparse import Spout, Stream

from forumstats.batch_sources import open_batch_source
from forumstats.batching import prepare_batch
from forumstats.counting import END_OF_INPUT, INPUT_IDLE
from forumstats.inflight import EventDensity, batch_size_needed, batches_to_span
from forumstats.settings import Settings
from forumstats.stdio_guard import protect_protocol_stream

# span: [floor (committed offset), start, end] of the batch's offset range (None on markers)
BATCH_FIELDS = ["bucket", "source", "first", "last", "max_ts", "rows", "users", "span"]
DEAD_FIELDS = ["source", "first", "last", "origin", "records"]
COMMIT_EVERY_S = 1.0
MIN_LOCAL_IN_FLIGHT = 64  # batches a local source keeps in flight however sparse the stream
# All batches in flight and none acked for window + out-of-orderness + flush interval + this:
# say why. On a live tail a healthy topology at its cap acks at least once a window.
STALL_MARGIN_S = 30.0


class KafkaEventSpout(Spout):
    outputs = [Stream(fields=BATCH_FIELDS, name="batches"),
               Stream(fields=DEAD_FIELDS, name="dead_letters"),
               # Unsubscribed: says when a bounded source is completely read AND acked, so a
               # local runner (which sees every emit, also over multi-lang) knows it is done.
               # state "progress" carries {"lag": records behind the end, or None} once a
               # second, for the progress display.
               Stream(fields=["task", "state", "detail"], name="status")]

    def initialize(self, storm_conf, context):
        protect_protocol_stream()
        self.settings = Settings.from_options(storm_conf)
        self.source = open_batch_source(self.settings, storm_conf)
        self.poll_records = int(storm_conf.get("forumstats.spout.poll_records", 5000))
        self.pending: dict[str, set[str]] = {}  # batch id -> tuple ids not yet acked
        # batch id -> when its records were first received, so that a replay carries the
        # very same dead letters (received_at included) and rewrites identical content
        self.received_ms: dict[str, int] = {}
        self.emitted_events = 0
        self.ended: set[str] = set()  # inputs this task sent END_OF_INPUT for
        self.finished_sent = False
        self.announced: set[str] = set()
        # Every tuple id Storm has not acked or failed yet, stale ones of failed batches too:
        # Storm stops calling nextTuple at max.spout.pending, and a Kafka consumer that is not
        # polled loses its group membership, so the spout keeps below that cap itself.
        self.outstanding: set[str] = set()
        self.max_pending = int(storm_conf.get("topology.max.spout.pending") or 0) or None
        self._last_commit = time.monotonic()
        self.density = EventDensity()
        self._logged_size = getattr(self.source, "batch_size", 0)  # local sources only
        self._last_ack = time.monotonic()
        self._stall_reported = 0.0
        windows = self.settings.windows
        self.stall_after_s = STALL_MARGIN_S + (windows.size_ms + windows.out_of_orderness_ms
                                               + self.settings.flush_interval_ms) / 1000

    def next_tuple(self):
        budget = None
        if self.max_pending is not None:
            per_batch = self.settings.buckets + 1
            budget = max(0, self.max_pending - len(self.outstanding)) // per_batch
        batches = self.source.poll(max_records=self.poll_records, timeout_ms=0,
                                   max_batches=budget)
        if batches:
            self._announce_inputs()  # before any data; also once a second, below
        for batch in batches:
            self._emit_batch(batch)
        if getattr(self.source, "exhausted", lambda: False)():
            self._emit_end_of_input()  # again after a rebalance brought more partitions
            if not self.finished_sent and self._finished():
                self.emit([self.task_id, "finished", {}], stream="status")
                self.finished_sent = True
        now = time.monotonic()
        if now - self._last_commit >= COMMIT_EVERY_S:
            self.source.commit()
            self._last_commit = now
            self.emit([self.task_id, "progress", {"lag": self._lag()}], stream="status")
            self._announce_inputs()
            self._announce_liveness()
            self._check_stall(now)

    def _batches_allowed(self) -> int | None:
        if self.max_pending is None:
            return None
        return self.max_pending // (self.settings.buckets + 1)

    def _size_batches(self) -> None:
        """A local source cuts larger batches when the stream is too dense for the batches
        in flight to span a window, and hands out no more than span it twice
        (forumstats.inflight). Kafka's cuts are fixed by forumstats.kafka.batch_size, so
        there only a stall is reported (_check_stall)."""
        resize = getattr(self.source, "resize", None)
        allowed = self._batches_allowed()
        per_ms = self.density.per_ms()
        if resize is None or allowed is None or per_ms is None:
            return
        size = max(self.source.batch_size, self._batch_size_needed(allowed))
        if size > 1.25 * self._logged_size:
            self._logged_size = size
            self.logger.info("events are dense (%.0f per second of event time): cutting "
                             "batches of %d records so that %d in flight span a window",
                             per_ms * 1000, size, allowed)
        windows = self.settings.windows
        resize(size, batches_to_span(per_ms, window_ms=windows.size_ms,
                                     out_of_orderness_ms=windows.out_of_orderness_ms,
                                     batch_size=size, at_least=MIN_LOCAL_IN_FLIGHT))

    def _batch_size_needed(self, allowed: int) -> int | None:
        windows = self.settings.windows
        return batch_size_needed(self.density.per_ms(), window_ms=windows.size_ms,
                                 out_of_orderness_ms=windows.out_of_orderness_ms,
                                 batches_in_flight=allowed)

    def _check_stall(self, now: float) -> None:
        """Every batch Storm lets us have is out and none was acked for stall_after_s: say
        what to change, once a minute, instead of waiting silently."""
        allowed = self._batches_allowed()
        if (allowed is None or len(self.outstanding) < allowed * self.settings.buckets
                or now - self._last_ack < self.stall_after_s or now - self._stall_reported < 60):
            return
        self._stall_reported = now
        needed = self._batch_size_needed(allowed)
        advice = ("" if needed is None else
                  f" At {self.density.per_ms() * 1000:.0f} events per second of event time, "
                  f"{allowed} batches span a window + out-of-orderness twice only with "
                  f"forumstats.kafka.batch_size >= {needed}.")
        message = (f"no batch acked for {now - self._last_ack:.0f} s with all {allowed} "
                   f"batches topology.max.spout.pending allows in flight: either the sink is "
                   f"not writing (see its errors), or the batches in flight span less event "
                   f"time than a window needs to close, so the counting tasks hold every one "
                   f"of them. Raise topology.max.spout.pending or forumstats.kafka.batch_size."
                   f"{advice}")
        self.logger.error(message)
        self.emit([self.task_id, "stalled", {"message": message}], stream="status")

    def _lag(self) -> int | None:
        """Consumer lag: records between the committed offsets and the partitions' ends."""
        lag = getattr(self.source, "lag", None)
        return lag() if lag is not None else None

    def _finished(self) -> bool:
        """A bounded source is done: all read, nothing of ours pending, nothing failed and
        waiting for its replay. (Normally also all committed; a batch whose ack the source
        no longer takes, after a rebalance, is left to the next run, which replays it.)"""
        if self.pending or self.source.awaiting_replay():
            return False
        if not self.source.finished():
            self.logger.warning("input read and acked, but not all of it committed: the next "
                                "run of this group replays the rest (nothing is lost)")
        return True

    def _announce_inputs(self) -> None:
        """Tell every bucket about each input (partition) before any of its data, so a
        partition that has sent nothing yet holds the watermark back (until idle) instead of
        letting a faster partition close windows it still has events for.

        Every partition of the topics, not only this task's: with several spout tasks, the
        counting tasks would otherwise hear of another task's partitions only once that task
        has set them up, which can be seconds after this one began handing out its backlog,
        and the windows of that backlog would close before the other partitions' events."""
        for name in self._all_input_names():
            if name not in self.announced:
                self.announced.add(name)
                for bucket in range(self.settings.buckets):
                    self.emit([bucket, name, -1, -1, None, [], [], None], stream="batches")

    def _announce_liveness(self) -> None:
        """Once a second, every input again: idle (caught up and quiet, so the counting tasks
        stop waiting for it) or not. The counting tasks never take silence for idleness: an
        input held back by max.spout.pending, by pacing or by a stalled sink is silent with a
        backlog. Repeating it also informs a counting task that was restarted."""
        idle = self.source.idle_inputs()
        for name in self._input_names():
            # idle: first/last carry the committed offset and the end of what was handed out
            floor, end = idle.get(name, (-1, -1))
            max_ts = INPUT_IDLE if name in idle else None
            for bucket in range(self.settings.buckets):
                self.emit([bucket, name, floor, end, max_ts, [], [], None], stream="batches")

    def _all_input_names(self) -> list[str]:
        """This task's inputs and, for Kafka, every other partition of its topics."""
        every = getattr(self.source, "all_partitions", None)
        if every is None:
            return self._input_names()
        return [f"{t}-{p}" for t, p in sorted(every())]

    def _input_names(self) -> list[str]:
        if hasattr(self.source, "assignment"):
            return [f"{t}-{p}" for t, p in sorted(self.source.assignment())]
        return self.source.input_names()

    def _emit_batch(self, batch) -> None:
        name = f"{batch.topic}-{batch.partition}"
        prepared = prepare_batch(
            ((offset, raw) for offset, raw, _ts in batch.records),
            contract=self.settings.contract, size_ms=self.settings.windows.size_ms,
            buckets=self.settings.buckets, source=_source_kind(self.settings),
            topic=batch.topic if self.settings.source == "kafka" else None,
            partition=batch.partition if self.settings.source == "kafka" else None,
            received_ms=self.received_ms.setdefault(batch.batch_id, int(time.time() * 1000)))
        if prepared.max_ts is not None:
            self.source.note_event_time(batch.key, prepared.max_ts)
        if batch.attempt == 0:
            self.density.add(prepared.accepted, prepared.max_ts)
            self._size_batches()
        prefix = f"{batch.batch_id}|{batch.attempt}"
        ids = set()
        for bucket in range(self.settings.buckets):
            tup_id = f"{prefix}|{bucket}"
            ids.add(tup_id)
            self.emit([bucket, name, batch.first_offset, batch.last_offset, prepared.max_ts,
                       prepared.rows_by_bucket.get(bucket, []),
                       prepared.users_by_bucket.get(bucket, []),
                       list(batch.span) if batch.span else None],
                      tup_id=tup_id, stream="batches")
        if prepared.dead:
            tup_id = f"{prefix}|dead"
            ids.add(tup_id)
            first_ts = batch.records[0][2] if batch.records else 0
            self.emit([name, batch.first_offset, batch.last_offset, "spout",
                       [_dead_json(d, first_ts) for d in prepared.dead]],
                      tup_id=tup_id, stream="dead_letters")
        self.pending[batch.batch_id] = ids
        self.outstanding |= ids
        self.emitted_events += prepared.accepted

    def _emit_end_of_input(self) -> None:
        """A bounded source is exhausted: tell every bucket, so all windows close."""
        for name in self.source.input_names():
            if name in self.ended:
                continue
            self.ended.add(name)
            for bucket in range(self.settings.buckets):
                self.emit([bucket, name, -1, -1, END_OF_INPUT, [], [], None], stream="batches")

    def ack(self, tup_id):
        self.outstanding.discard(tup_id)
        self._last_ack = time.monotonic()
        batch_id = tup_id.split("|", 1)[0]
        ids = self.pending.get(batch_id)
        if ids is None or tup_id not in ids:
            return  # a tuple of an earlier attempt, already failed and replayed
        ids.discard(tup_id)
        if not ids:
            del self.pending[batch_id]
            self.received_ms.pop(batch_id, None)
            self.source.ack(batch_id)

    def fail(self, tup_id):
        self.outstanding.discard(tup_id)
        batch_id = tup_id.split("|", 1)[0]
        ids = self.pending.get(batch_id)
        if ids is None or tup_id not in ids:
            return
        del self.pending[batch_id]
        self.source.fail(batch_id)

    def deactivate(self):
        self.source.commit()

    def close(self):
        """Not called by Storm (it kills the process); the local runner calls it on exit."""
        self.source.close()


def _source_kind(settings: Settings) -> str:
    return settings.source if settings.source in ("kafka", "generator") else "file"


def _dead_json(d, source_ts: int) -> list:
    """A dead letter as JSON-safe values; the raw bytes travel as base64."""
    return [d.reason, d.detail, base64.b64encode(d.raw).decode("ascii"), d.source, d.topic,
            d.partition, d.offset, d.received_ms, source_ts]
