"""The generator and NDJSON sources behind the same batch interface as KafkaBatchSource.

So the spout runs unchanged on a laptop: one pseudo-partition, offsets = record numbers,
batches of ``batch_size`` records (the spout makes it larger for a dense stream), failed
batches handed out again with the same id and records, acked batches forgotten. ``received``
timestamps are the run's start.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from .kafka_source import RawBatch
from .sources import GeneratorSource, NdjsonSource


class LocalBatchSource:
    def __init__(self, source: GeneratorSource | NdjsonSource, *, batch_size: int,
                 max_in_flight: int, started_ms: int) -> None:
        self.topic = source.name
        self.partition = 0
        self._records: Iterator[tuple[bytes, int]] = source.records()
        self._batch_size = batch_size
        self._max_in_flight = self._max_in_flight_cap = max_in_flight
        self._started_ms = started_ms
        self._in_flight: dict[str, RawBatch] = {}
        self._replay: deque[RawBatch] = deque()
        self._queued: set[str] = set()  # failed batches waiting in _replay: not in flight
        self._acked: dict[int, int] = {}  # acked batches above the prefix: first -> end
        self._committed = 0
        self._next_first = 0
        self._exhausted = False
        self._lookahead: tuple[bytes, int] | None = None

    def poll(self, max_records: int = 500, timeout_ms: int = 0,
             max_batches: int | None = None) -> list[RawBatch]:
        if max_batches is not None and max_batches <= 0:
            return []
        if self._replay:
            batch = self._replay.popleft()
            self._queued.discard(batch.batch_id)
            return [batch]
        if self._exhausted or len(self._in_flight) >= self._max_in_flight:
            return []
        batch = self._cut()
        return [batch] if batch else []

    def _cut(self) -> RawBatch | None:
        first = self._next_first
        end = first + self._batch_size  # starts at 0: multiples of a batch size never resized
        records = []
        while True:
            item = self._lookahead or next(self._records, None)
            self._lookahead = None
            if item is None:
                self._exhausted = True
                break
            raw, pos = item
            if pos >= end:
                self._lookahead = item
                break
            records.append((pos, raw, self._started_ms))
        if not records and self._exhausted:
            return None
        # Blank NDJSON lines have no record, but the batch still spans up to the cut.
        last = records[-1][0] if self._exhausted else end - 1
        self._next_first = last + 1
        batch = RawBatch(self.topic, self.partition, first, last, records,
                         f"{self.topic}:{self.partition}:{first}-{last}",
                         span=(self._committed, first, last + 1))
        self._in_flight[batch.batch_id] = batch
        return batch

    def ack(self, batch_id: str) -> bool:
        # As KafkaBatchSource: only a batch in flight can be acked or failed; one failed and
        # waiting for its replay ignores both (no second replay, no commit past it).
        if batch_id in self._queued:
            return False
        batch = self._in_flight.pop(batch_id, None)
        if batch is None:
            return False
        self._acked[batch.first_offset] = batch.last_offset + 1
        while self._committed in self._acked:
            self._committed = self._acked.pop(self._committed)
        return True

    def fail(self, batch_id: str) -> bool:
        batch = self._in_flight.get(batch_id)
        if batch is None or batch_id in self._queued:
            return False
        self._queued.add(batch_id)
        self._replay.append(RawBatch(batch.topic, batch.partition, batch.first_offset,
                                     batch.last_offset, batch.records, batch.batch_id,
                                     batch.attempt + 1,
                                     (self._committed, batch.first_offset,
                                      batch.last_offset + 1)))
        self._in_flight[batch_id] = self._replay[-1]
        return True

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def resize(self, batch_size: int, max_in_flight: int) -> None:
        """Cut later batches larger (never smaller), and hand out at most ``max_in_flight``
        (never more than set at the start). A local run starts over every time, so, unlike
        Kafka's, its cut points need not be the same from one run to the next."""
        self._batch_size = max(self._batch_size, batch_size)
        self._max_in_flight = min(self._max_in_flight_cap, max_in_flight)

    def commit(self) -> bool:
        return True  # nothing durable to commit to: a local run starts from the beginning

    def note_event_time(self, tp, max_ts_ms: int) -> None:
        pass  # one partition: nothing to pace against

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def exhausted(self) -> bool:
        """Every record has been read and cut into a batch (some may still be in flight)."""
        return self._exhausted and not self._replay

    def awaiting_replay(self) -> int:
        return len(self._replay)

    def input_names(self) -> list[str]:
        return [f"{self.topic}-{self.partition}"]

    def idle_inputs(self) -> dict[str, tuple[int, int]]:
        """Never idle: a file or the generator is read to its end, then ended."""
        return {}

    def finished(self) -> bool:
        """Everything read and every batch acked."""
        return self._exhausted and not self._in_flight and not self._replay

    def committable(self) -> dict[tuple[str, int], int]:
        return {(self.topic, self.partition): self._committed}

    def close(self, commit: bool = True) -> None:
        pass
