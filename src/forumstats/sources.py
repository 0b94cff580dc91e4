"""Bounded local sources for the runner: the built-in generator and NDJSON files.

A source yields records ``(raw_bytes, position)``; position is the 0-based record number.
forumstats.local_source cuts them into batches; the Kafka source is forumstats.kafka_source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import SourceError
from .generator import generate


@dataclass(frozen=True)
class GeneratorSource:
    events: int = 300_000
    seed: int = 7
    events_per_second: float = 50.0
    name: str = "generator"

    def records(self) -> Iterator[tuple[bytes, int]]:
        for pos, raw in enumerate(generate(self.events, seed=self.seed,
                                           events_per_second=self.events_per_second)):
            yield raw, pos


@dataclass(frozen=True)
class NdjsonSource:
    path: Path
    limit: int | None = None
    name: str = "file"

    def records(self) -> Iterator[tuple[bytes, int]]:
        try:
            handle = open(self.path, "rb")
        except OSError as exc:
            raise SourceError(f"cannot open NDJSON input {self.path}: {exc.strerror}; "
                              "pass an existing file to --source") from exc
        with handle:
            for pos, line in enumerate(handle):
                if self.limit is not None and pos >= self.limit:
                    break
                line = line.rstrip(b"\r\n")
                if line.strip():  # blank lines are separators, not records
                    yield line, pos
