"""ParquetSinkBolt: writes window files, rollups and dead letters; acks once durable.

Thin over forumstats.sink / rollups. Writes run on a background thread so the protocol loop
keeps answering Storm; finished writes are acked from the protocol thread on the next tuple
or tick. A window tuple is acked only after its file (and any rollup it completes) is written.
"""

from __future__ import annotations

import base64
import traceback

from streamparse import Bolt

from forumstats.background_writer import BackgroundWriter
from forumstats.deadletters import DeadLetter
from forumstats.engine import WindowResult
from forumstats.rollups import COUNT_DATASETS, USER_DATASETS, StoreRollups
from forumstats.settings import Settings
from forumstats.sink import WindowSink
from forumstats.stdio_guard import protect_protocol_stream
from forumstats.stores import open_store


class ParquetSinkBolt(Bolt):
    outputs = []
    auto_ack = False
    auto_anchor = False

    def initialize(self, storm_conf, context):
        protect_protocol_stream()
        self.settings = Settings.from_options(storm_conf)
        self.store = open_store(self.settings.output,
                                endpoint_url=storm_conf.get("forumstats.s3.endpoint_url"))
        self.sinks: dict[int, WindowSink] = {}
        self.rollups: dict[int, StoreRollups] = {}
        self.writer = BackgroundWriter(self._write)

    def process(self, tup):
        if tup.stream == "windows":
            bucket, payload = tup.values
            self.writer.submit(("window", bucket, payload["size"], payload["start"]),
                               ("window", bucket, payload), tup.id)
        elif tup.stream == "dead_letters":
            source, first, last, origin, records = tup.values
            self.writer.submit(("dead", source, first, last, origin),
                               ("dead", source, first, last, origin, records), tup.id)
        self._ack_finished()

    def process_tick(self, tup):
        self._ack_finished()
        self.ack(tup)  # auto_ack is off: Storm's ShellBolt keeps an un-acked tick forever

    def _ack_finished(self) -> None:
        for tuple_id in self.writer.done():
            self.ack(tuple_id)
        for tuple_id, exc in self.writer.failed():
            # Not a store outage (those are retried): bad input or a bug. Report it to Storm
            # (an ``error``, shown in the UI) and fail the tuple, so the batch is replayed
            # instead of blocking every write queued behind it.
            detail = "".join(traceback.format_exception(exc)).rstrip()
            self.send_message({"command": "error",
                               "msg": f"ParquetSinkBolt: write of tuple {tuple_id} failed, "
                                      f"tuple failed for replay:\n{detail}"})
            self.fail(tuple_id)

    # -- runs on the writer thread ------------------------------------------------------
    def _write(self, job) -> list:
        """Returns follow-up jobs: rollups to rebuild because a window they hold changed."""
        if job[0] == "window":
            _kind, bucket, payload = job
            return self._write_window(bucket, payload)
        if job[0] == "rollup":
            _kind, bucket, size_ms, start_ms = job
            return self._rebuilds(bucket, self._rollups(bucket).rebuild(size_ms, start_ms))
        _kind, source, first, last, origin, records = job
        letters = [DeadLetter(r[0], r[1], base64.b64decode(r[2]), r[3], r[4], r[5], r[6], r[7])
                   for r in records]
        self._sink(0).write_dead_letters(letters, source=source, first=first, last=last,
                                         origin=origin, source_ms=records[0][8])
        return []

    def _write_window(self, bucket: int, payload: dict) -> list:
        counts = {(f, t, k): n for f, t, k, n in payload["rows"]}
        result = WindowResult(payload["size"], payload["start"], payload["revision"],
                              payload["final"], counts)
        sink = self._sink(bucket)
        users = payload.get("users")
        if users is not None:  # before the counts: restored with them after a restart
            b64 = base64.b64decode
            sink.write_users(result.size_ms, result.start_ms, users["revision"],
                             [(f, t, e, lo, hi, b64(sk)) for f, t, e, lo, hi, sk
                              in users["threads"]],
                             [(f, None, e, lo, hi, b64(sk)) for f, e, lo, hi, sk
                              in users["forums"]])
        sink.write_windows([result], payload["offsets"])
        rollups = self._rollups(bucket)
        written = COUNT_DATASETS + (USER_DATASETS if users is not None else ())
        rollups.note_written(result.size_ms, result.start_ms, written)
        stale = rollups.on_written(result.size_ms, result.start_ms)
        rollups.advance(payload["watermark"])
        return self._rebuilds(bucket, stale)

    def _rollups(self, bucket: int) -> StoreRollups:
        rollups = self.rollups.get(bucket)
        if rollups is None:
            rollups = self.rollups[bucket] = StoreRollups(
                self.store, bucket, self.settings.windows.size_ms,
                self.settings.windows.rollup_sizes_ms)
        return rollups

    @staticmethod
    def _rebuilds(bucket: int, stale: list[tuple[int, int]]) -> list:
        # queued behind the waiting writes: restatements of one period share one rebuild
        return [(("rollup", bucket, size_ms, start_ms), ("rollup", bucket, size_ms, start_ms))
                for size_ms, start_ms in stale]

    def _sink(self, bucket: int) -> WindowSink:
        sink = self.sinks.get(bucket)
        if sink is None:
            sink = self.sinks[bucket] = WindowSink(self.store, bucket)
        return sink
