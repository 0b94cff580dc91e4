"""Column schemas of every dataset we write: the single source for writers, readers and README.

All timestamps are UTC with millisecond precision. Counts are int64 numbers of events.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.name in NULLABLE)


NULLABLE = {"topic", "partition", "offset", "source"}

_WINDOW = [
    Column("window_start", TS, "first instant of the event-time window (inclusive), UTC"),
    Column("window_end", TS, "end of the window (exclusive), UTC"),
]
_COUNT = Column("count", pa.int64(), "number of accepted events")
_USERS = [
    Column("users_estimate", pa.float64(), "distinct users (events with a `user` field), HLL "
           "estimate"),
    Column("users_lower", pa.float64(), "lower bound of the estimate, 2 standard deviations"),
    Column("users_upper", pa.float64(), "upper bound of the estimate, 2 standard deviations"),
    Column("users_sketch", pa.binary(), "the Apache DataSketches HLL sketch (HLL_8, compact): "
           "merge any rows' sketches for the distinct users of that whole range"),
]

DATASET_COLUMNS: dict[str, list[Column]] = {
    "thread_counts": _WINDOW + [
        Column("forum", pa.string(), "forum name, as sent"),
        Column("thread", pa.string(), "thread id, as sent (integers rendered as decimal)"),
        Column("type", pa.string(), "event type: comment, vote, pageview, reaction"),
        _COUNT,
    ],
    "forum_counts": _WINDOW + [
        Column("forum", pa.string(), "forum name, as sent"),
        Column("type", pa.string(), "event type"),
        _COUNT,
    ],
    "thread_users": _WINDOW + [
        Column("forum", pa.string(), "forum name, as sent"),
        Column("thread", pa.string(), "thread id, as sent"),
        *_USERS,
    ],
    "forum_users": _WINDOW + [
        Column("forum", pa.string(), "forum name, as sent"),
        *_USERS,
    ],
    "dead_letters": [
        Column("received_at", TS, "when forumstats received the record, UTC"),
        Column("reason", pa.string(), "machine-readable reason, e.g. bad_json, missing:forum"),
        Column("detail", pa.string(), "human-readable explanation"),
        Column("source", pa.string(), "input the record came from (kafka, file, generator)"),
        Column("topic", pa.string(), "Kafka topic (null for other sources)"),
        Column("partition", pa.int32(), "Kafka partition, or null"),
        Column("offset", pa.int64(), "Kafka offset or line/sequence number, or null"),
        Column("raw", pa.binary(), "the record's bytes exactly as received"),
    ],
}

# Hive partition columns added by readers from the key path (see forumstats.keys).
PARTITION_COLUMNS = [
    Column("window", pa.string(), "window size: 1m, 1h or 1d (not in dead_letters)"),
    Column("date", pa.string(),
           "UTC date of window_start (dead_letters: of the batch's first Kafka record timestamp,"
           " or of the run's start for local sources), YYYY-MM-DD"),
    Column("hour", pa.string(), "UTC hour of that instant, 00-23"),
]


def schema(dataset: str) -> pa.Schema:
    return pa.schema([c.field() for c in DATASET_COLUMNS[dataset]])


def markdown_table(dataset: str) -> str:
    """The README's schema table for one dataset, generated so the two cannot drift."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for col in DATASET_COLUMNS[dataset]:
        lines.append(f"| `{col.name}` | {_type_name(col.type)} | {col.doc} |")
    return "\n".join(lines)


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamp(ms, UTC)"
    return str(t)
