"""Opens the spout's batch source from the topology conf: Kafka, or a local generator/file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .errors import SourceError
from .settings import Settings


def open_batch_source(settings: Settings, conf: dict[str, Any]):
    """A KafkaBatchSource, or for local runs a LocalBatchSource with the same interface."""
    batch_size = int(conf.get("forumstats.kafka.batch_size", 2000))
    max_in_flight = batches_in_flight(conf, settings.buckets)
    if settings.source == "kafka":
        from dataclasses import replace

        from .kafka_settings import KafkaSourceSettings
        from .kafka_source import KafkaBatchSource

        kafka = KafkaSourceSettings.from_options(conf)
        w = settings.windows
        kafka = replace(kafka, max_in_flight=min(kafka.max_in_flight, max_in_flight),
                        batch_hold_ms=w.size_ms + w.out_of_orderness_ms
                        + settings.flush_interval_ms)
        source = KafkaBatchSource(kafka)
        return StopAtEnd(source) if conf.get("forumstats.spout.stop_at_end") else source
    from .local_source import LocalBatchSource
    from .sources import GeneratorSource, NdjsonSource

    events = conf.get("forumstats.generator.events")
    if settings.source == "generator":
        source = GeneratorSource(events=int(events or 300_000),
                                 seed=int(conf.get("forumstats.generator.seed", 7)))
    elif Path(settings.source).is_file():
        source = NdjsonSource(Path(settings.source), limit=int(events) if events else None)
    else:
        raise SourceError(f"forumstats.source={settings.source!r} is neither kafka, generator "
                          "nor an existing NDJSON file")
    return LocalBatchSource(source, batch_size=batch_size, max_in_flight=max_in_flight,
                            started_ms=int(time.time() * 1000))


def batches_in_flight(conf: dict[str, Any], buckets: int) -> int:
    """The batches the spout may have out: ``topology.max.spout.pending`` counts tuples, and a
    batch is ``buckets`` tuples plus perhaps a dead-letter one. Capping batches below Storm's
    own cap means Storm never stops calling nextTuple, so the Kafka consumer keeps polling
    (max.poll.interval) and the per-partition shares (see AckTracker.share) decide who waits."""
    pending = int(conf.get("topology.max.spout.pending") or 64 * (buckets + 1))
    return max(1, pending // (buckets + 1))


class StopAtEnd:
    """A Kafka source for backfills: it reads up to the end offsets of its partitions as of
    when it first caught up with them, and then reports itself exhausted.

    The end is the larger of ListOffsets and the fetch high watermark (Tansu's ListOffsets can
    lag the real end). Batches starting at or past the end are held back, never handed out or
    acked, so nothing arrives after the end-of-input marker and the group's committed offsets
    stop at the end.
    """

    def __init__(self, source) -> None:
        self.source = source
        self.ends: dict[tuple[str, int], int] | None = None
        self._held: set[str] = set()

    def __getattr__(self, name: str):
        return getattr(self.source, name)

    def poll(self, max_records: int = 500, timeout_ms: int = 0,
             max_batches: int | None = None) -> list:
        batches = self.source.poll(max_records=max_records, timeout_ms=timeout_ms,
                                   max_batches=max_batches)
        self._learn_ends()
        if self.ends is None:
            return batches
        out = []
        for batch in batches:
            end = self.ends.get(batch.key)
            if end is not None and batch.first_offset >= end:
                self._held.add(batch.batch_id)
            else:
                out.append(batch)
        return out

    def _learn_ends(self) -> None:
        """The end of each partition, taken the first time this consumer has caught up with
        it: partitions that come to it in a rebalance later get theirs then."""
        owned = self.source.assignment()
        if not owned or owned <= set(self.ends or {}) or not self.source.caught_up():
            return
        snapshot = self.source.end_offsets_snapshot()
        self.ends = {**(self.ends or {}),
                     **{key: end for key, end in snapshot.items() if key not in (self.ends or {})}}

    def _owned_ends(self) -> dict[tuple[str, int], int] | None:
        """Ends of the partitions owned now, once the group is settled and each has one."""
        if self.ends is None or not self.source.settled():
            return None
        owned = self.source.assignment()
        if not owned <= set(self.ends):
            return None
        return {key: self.ends[key] for key in owned}

    def exhausted(self) -> bool:
        """Every partition owned now is read up to its end (a rebalance can change which)."""
        ends = self._owned_ends()
        if ends is None:
            return False
        info = self.source.watermark_info()
        return all(info.get(key, {}).get("next_offset", -1) >= end for key, end in ends.items())

    def input_names(self) -> list[str]:
        """The inputs this consumer ends: the partitions it owns (and has read to the end)."""
        return [f"{topic}-{partition}" for topic, partition in sorted(self._owned_ends() or {})]

    def idle_inputs(self) -> dict[str, tuple[int, int]]:
        """Partitions read to their end (records past it are never handed out) and quiet."""
        return self.source.idle_inputs(self.ends)

    def finished(self) -> bool:
        ends = self._owned_ends()
        return ends is not None and self.exhausted() and self.source.reached(ends)
