"""WindowCountBolt: per-bucket event-time windows over the spout's partial counts.

Thin over forumstats.counting. Inputs are held (not acked) until every window they touched is
emitted to the sink anchored to them; tick tuples drive idle watermarks and emission.
"""

from __future__ import annotations

import base64
import time

import orjson
from streamparse import Bolt, Stream

from forumstats.counting import END_OF_INPUT, BucketCounter, Emission
from forumstats.errors import StoreError
from forumstats.settings import Settings
from forumstats.sink import load_written_window
from forumstats.stdio_guard import protect_protocol_stream
from forumstats.stores import open_store

WINDOW_FIELDS = ["bucket", "window"]
DEAD_FIELDS = ["source", "first", "last", "origin", "records"]


class WindowCountBolt(Bolt):
    outputs = [Stream(fields=WINDOW_FIELDS, name="windows"),
               Stream(fields=DEAD_FIELDS, name="dead_letters"),
               Stream(fields=["bucket", "partials"], name="partials")]
    auto_ack = False
    auto_anchor = False

    def initialize(self, storm_conf, context):
        protect_protocol_stream()
        self.settings = Settings.from_options(storm_conf)
        self.counters: dict[int, BucketCounter] = {}
        # Keep closed windows' folded ranges for two message timeouts of wall-clock time, so
        # that a timed-out tuple replayed after event time raced ahead is still recognised.
        self.retain_ms = 2 * 1000 * int(storm_conf.get("topology.message.timeout.secs", 30))
        # Kafka offsets name the same records in every run, so after a restart a window's
        # written state (with the offsets folded in) is restored before replays reach it.
        # A local generator/file run starts over and overwrites the windows it produces.
        # The reads run on the protocol loop: one retry at most, so that a store outage
        # costs a failed tuple (replayed later), never a heartbeat timeout.
        self.store = (open_store(self.settings.output,
                                 endpoint_url=storm_conf.get("forumstats.s3.endpoint_url"),
                                 retries=1)
                      if self.settings.source == "kafka" else None)

    def _loader(self, bucket: int):
        if self.store is None:
            return None
        size = self.settings.windows.size_ms
        return lambda start: load_written_window(self.store, size, start, bucket)

    def process(self, tup):
        bucket, source, first, last, max_ts, rows, users, *more = tup.values
        span = more[0] if more else None
        counter = self.counters.get(bucket)
        if counter is None:
            counter = self.counters[bucket] = BucketCounter(self.settings.windows,
                                                            load=self._loader(bucket),
                                                            retain_ms=self.retain_ms,
                                                            idle_by_silence=False)
        try:
            outcome = counter.add(tup.id, source, first, last, max_ts, rows, _now_ms(), users,
                                  span)
        except StoreError as exc:
            # A window's written state could not be read: counting now could count a replay
            # twice. Nothing was changed; fail the tuple so that Storm replays the batch.
            self.logger.warning("tuple %s failed for replay: cannot restore its windows: %s",
                                tup.id, exc)
            self.fail(tup)
            return
        if outcome.too_late:
            records = _too_late_records(outcome.too_late, source, first, counter.engine.watermark)
            self.emit([source, first, last, f"late{bucket}", records], stream="dead_letters",
                      anchors=[tup.id])
        if outcome.ack_now:
            self.ack(tup)
        self._advance(bucket, counter, restate=False)
        if max_ts is not None and max_ts >= END_OF_INPUT:
            self._emit_partials(bucket, counter)  # tell the dashboards' view at once

    def process_tick(self, tup):
        for bucket, counter in self.counters.items():
            self._advance(bucket, counter)
            self._emit_partials(bucket, counter)
        self.ack(tup)  # auto_ack is off: Storm's ShellBolt keeps an un-acked tick forever

    def _advance(self, bucket: int, counter: BucketCounter, restate: bool = True) -> None:
        # Restatements wait for the tick: a window getting late events batch after batch is
        # re-sent whole once per tick, not once per batch.
        emissions, acks = counter.advance(_now_ms(), restate)
        for emission in emissions:
            self.emit([bucket, window_payload(emission)], stream="windows",
                      anchors=emission.anchors)
        for tuple_id in acks:
            self.ack(tuple_id)

    def _emit_partials(self, bucket: int, counter: BucketCounter) -> None:
        """Open windows per forum and type, for the dashboards' view (unanchored: a view)."""
        rows: dict[tuple[int, str, str], int] = {}
        for result in counter.engine.partials():
            for (forum, _thread, kind), n in result.counts.items():
                key = (result.start_ms, forum, kind)
                rows[key] = rows.get(key, 0) + n
        self.emit([bucket, {"watermark": counter.engine.watermark,
                            "rows": [[*key, n] for key, n in sorted(rows.items())]}],
                  stream="partials", anchors=[])


def window_payload(emission: Emission) -> dict:
    result = emission.result
    return {"size": result.size_ms, "start": result.start_ms, "revision": result.revision,
            "final": result.final, "watermark": emission.watermark,
            "rows": [[f, t, k, n] for (f, t, k), n in sorted(result.counts.items())],
            "offsets": {src: [list(r) for r in spans] for src, spans in emission.offsets.items()},
            "users": _users_payload(emission.distinct)}


def _users_payload(distinct) -> dict | None:
    """Distinct users as JSON: [forum, (thread,) estimate, lower, upper, base64 sketch]."""
    if distinct is None:
        return None
    b64 = base64.b64encode
    return {"revision": distinct.revision, "lg_k": distinct.lg_k,
            "threads": [[f, t, d.estimate, d.lower_bound, d.upper_bound,
                         b64(d.sketch).decode("ascii")]
                        for (f, t), d in sorted(distinct.threads.items())],
            "forums": [[f, d.estimate, d.lower_bound, d.upper_bound,
                        b64(d.sketch).decode("ascii")]
                       for f, d in sorted(distinct.forums.items())]}


def _too_late_records(rows, source: str, first: int, watermark: int) -> list:
    now = _now_ms()
    key_ts = min(row[0] for row in rows)  # deterministic, so a replay rewrites the same key
    records = []
    for start, forum, thread, kind, n in rows:
        raw = orjson.dumps({"window_start": start, "forum": forum, "thread": thread,
                            "type": kind, "count": n, "source": source})
        records.append(["too_late", f"{n} events of a window closed for good (watermark "
                        f"{watermark}); counted by the spout, raw events not kept",
                        base64.b64encode(raw).decode("ascii"), "aggregate", None, None, first,
                        now, key_ts])
    return records


def _now_ms() -> int:
    return int(time.time() * 1000)
