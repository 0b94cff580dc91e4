"""LatestSnapshotBolt: keeps ``latest/`` fresh for dashboards (one task, global grouping).

Thin over forumstats.latest: final windows and open-window counts come in from the counting
tasks; every flush interval it writes new immutable snapshot objects, then the manifest that
names them, then removes snapshots older than the grace period. ``latest/`` is a view, not
part of the exactness guarantee, so inputs are acked at once.
"""

from __future__ import annotations

import base64
import sys
import sysconfig
import time

import orjson
from streamparse import Bolt

from forumstats import keys
from forumstats.background_writer import BackgroundWriter
from forumstats.counting import END_OF_INPUT
from forumstats.engine import WindowResult
from forumstats.latest import LatestView
from forumstats.settings import Settings
from forumstats.sink import put_all
from forumstats.stdio_guard import protect_protocol_stream
from forumstats.stores import open_store

# sys.intern'd strings are immortal on early CPython 3.12 releases (fixed in a 3.12 patch
# release; all of 3.12 is skipped to be safe) and on free-threaded builds: there a topology
# running for months would keep every thread id it ever saw.
_share = (str if sys.version_info[:2] == (3, 12) or sysconfig.get_config_var("Py_GIL_DISABLED")
          else sys.intern)


class LatestSnapshotBolt(Bolt):
    outputs = []
    auto_ack = True

    def initialize(self, storm_conf, context):
        protect_protocol_stream()
        self.settings = Settings.from_options(storm_conf)
        self.store = open_store(self.settings.output,
                                endpoint_url=storm_conf.get("forumstats.s3.endpoint_url"))
        self.view = LatestView(self.settings)
        self.writer = BackgroundWriter(self._publish)
        self.sequence = 0
        self.dirty = False
        self.last_flush = 0.0
        self.final_through: int | None = None
        self.final_through_at_ms: int | None = None  # wall clock when it took its value

    def process(self, tup):
        bucket, payload = tup.values
        was_ended = self.view.watermark >= END_OF_INPUT
        if tup.stream == "windows":
            if payload["size"] == self.settings.windows.size_ms:
                # Shared strings: the rolling views keep a thread's key for 25 hours of
                # windows; one copy of each id, not one per window row that brought it.
                counts = {(_share(f), _share(t), _share(k)): n for f, t, k, n in payload["rows"]}
                result = WindowResult(payload["size"], payload["start"], payload["revision"],
                                      True, counts)
                users = payload.get("users") or {}
                sketches = {row[0]: base64.b64decode(row[4]) for row in users.get("forums", [])}
                self.view.on_window(bucket, result, payload["watermark"], sketches)
        elif tup.stream == "partials":
            self.view.on_partials(bucket, payload["watermark"], payload["rows"])
        self.dirty = True
        self._note_final_through()
        if not was_ended and self.view.watermark >= END_OF_INPUT:
            self.last_flush = 0.0  # every input ended: publish the final state now
        self._maybe_flush()

    def process_tick(self, tup):
        self._maybe_flush()
        self.writer.done()
        for _token, exc in self.writer.failed():
            self.logger.error("publishing latest/ failed: %r", exc)
            self.send_message({"command": "error", "msg": f"latest/ not published: {exc!r}"})

    def _note_final_through(self) -> None:
        final_through = self.view.final_through()
        if final_through != self.final_through:
            self.final_through, self.final_through_at_ms = final_through, int(time.time() * 1000)

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if not self.dirty or now - self.last_flush < self.settings.flush_interval_ms / 1000:
            return
        self.last_flush, self.dirty = now, False
        self.sequence += 1
        made_ms = int(time.time() * 1000)
        # documents and manifest from one state of the view, taken on the protocol thread
        documents = self.view.documents()
        names = {kind: keys.snapshot_key(kind, made_ms, self.sequence, self.task_id or 0)
                 for kind in documents}
        manifest = self.view.manifest(made_ms, names, self.settings.snapshot_grace_ms,
                                      self.final_through_at_ms)
        self.writer.submit("latest", (made_ms, {names[kind]: doc for kind, doc
                                                in documents.items()}, manifest), None)

    def _publish(self, job) -> None:
        """Snapshots first, then the manifest naming them, then expired snapshots."""
        made_ms, documents, manifest = job
        put_all(self.store, {key: orjson.dumps(doc) for key, doc in documents.items()},
                "application/json")
        self.store.put(keys.MANIFEST_KEY, orjson.dumps(manifest, option=orjson.OPT_INDENT_2),
                       "application/json")
        self._expire(made_ms, set(documents))

    def _expire(self, now_ms: int, current: set[str]) -> None:
        for key in self.store.list(keys.SNAPSHOTS_PREFIX):
            made = keys.snapshot_made_ms(key)
            if key not in current and made is not None and \
                    made < now_ms - self.settings.snapshot_grace_ms:
                self.store.delete(key)
