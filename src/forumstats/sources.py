"""Bounded local sources for the runner: the built-in generator and NDJSON files.

A source yields batches of ``(raw_bytes, position)``; position is the 0-based record number.
(The Kafka source lives in forumstats.kafka_source.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from .errors import SourceError
from .generator import generate

Batch = list[tuple[bytes, int]]


@dataclass(frozen=True)
class GeneratorSource:
    events: int = 300_000
    seed: int = 7
    events_per_second: float = 50.0
    name: str = "generator"

    def batches(self, batch_size: int) -> Iterator[Batch]:
        stream = enumerate(generate(self.events, seed=self.seed,
                                    events_per_second=self.events_per_second))
        while batch := [(raw, pos) for pos, raw in islice(stream, batch_size)]:
            yield batch


@dataclass(frozen=True)
class NdjsonSource:
    path: Path
    limit: int | None = None
    name: str = "file"

    def batches(self, batch_size: int) -> Iterator[Batch]:
        try:
            handle = open(self.path, "rb")
        except OSError as exc:
            raise SourceError(f"cannot open NDJSON input {self.path}: {exc.strerror}; "
                              "pass an existing file to --source") from exc
        with handle:
            batch: Batch = []
            for pos, line in enumerate(handle):
                if self.limit is not None and pos >= self.limit:
                    break
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue  # blank lines are separators, not records
                batch.append((line, pos))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
