"""Dead letters: every record we could not count, kept losslessly with why and where from."""

from __future__ import annotations

from typing import NamedTuple


class DeadLetter(NamedTuple):
    reason: str  # machine-readable, see forumstats.events
    detail: str  # human-readable
    raw: bytes  # the record exactly as received
    source: str  # "kafka", "file", "generator"
    topic: str | None
    partition: int | None
    offset: int | None  # Kafka offset, or line / sequence number for other sources
    received_ms: int
