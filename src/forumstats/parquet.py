"""Parquet encoding of window results and dead letters (bytes in memory; storing is elsewhere).

Files are zstd-compressed, rows sorted by forum, thread and type, statistics on. Key-value
metadata carries what a reader or a restarted writer needs: revision, finality, window, and the
input offset ranges folded into the window (``forumstats.offsets``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from .deadletters import DeadLetter
from .durations import duration_label
from .engine import WindowResult
from .schemas import schema

ROW_GROUP_ROWS = 256 * 1024
META_PREFIX = "forumstats."


def encode_table(table: pa.Table, metadata: Mapping[str, Any] | None = None) -> bytes:
    if metadata:
        extra = {f"{META_PREFIX}{k}".encode(): orjson.dumps(v) for k, v in metadata.items()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True,
                   row_group_size=ROW_GROUP_ROWS)
    return sink.getvalue()


def read_metadata(data: bytes) -> dict[str, Any]:
    """The ``forumstats.*`` key-value metadata of an encoded file."""
    meta = pq.read_schema(io.BytesIO(data)).metadata or {}
    return {k.decode()[len(META_PREFIX):]: orjson.loads(v)
            for k, v in meta.items() if k.decode().startswith(META_PREFIX)}


def thread_table(result: WindowResult) -> pa.Table:
    rows = sorted(result.counts.items())
    n = len(rows)
    return pa.table({
        "window_start": pa.array([result.start_ms] * n, pa.int64()).cast(schema("thread_counts")
                                                                         .field(0).type),
        "window_end": pa.array([result.end_ms] * n, pa.int64()).cast(schema("thread_counts")
                                                                     .field(1).type),
        "forum": [k[0] for k, _ in rows],
        "thread": [k[1] for k, _ in rows],
        "type": [k[2] for k, _ in rows],
        "count": pa.array([c for _, c in rows], pa.int64()),
    }, schema=schema("thread_counts"))


def forum_table(result: WindowResult) -> pa.Table:
    totals: dict[tuple[str, str], int] = {}
    for (forum, _thread, kind), n in result.counts.items():
        totals[(forum, kind)] = totals.get((forum, kind), 0) + n
    rows = sorted(totals.items())
    n = len(rows)
    ts_type = schema("forum_counts").field(0).type
    return pa.table({
        "window_start": pa.array([result.start_ms] * n, pa.int64()).cast(ts_type),
        "window_end": pa.array([result.end_ms] * n, pa.int64()).cast(ts_type),
        "forum": [k[0] for k, _ in rows],
        "type": [k[1] for k, _ in rows],
        "count": pa.array([c for _, c in rows], pa.int64()),
    }, schema=schema("forum_counts"))


def window_metadata(result: WindowResult, offsets: Mapping[str, list] | None = None) -> dict:
    return {"window": duration_label(result.size_ms), "window_start_ms": result.start_ms,
            "revision": result.revision, "final": result.final, "offsets": offsets or {}}


def encode_window(result: WindowResult, offsets: Mapping[str, list] | None = None
                  ) -> dict[str, bytes]:
    """Both datasets' files for one window result: {"thread_counts": ..., "forum_counts": ...}."""
    meta = window_metadata(result, offsets)
    return {"thread_counts": encode_table(thread_table(result), meta),
            "forum_counts": encode_table(forum_table(result), meta)}


def dead_letters_table(records: Iterable[DeadLetter]) -> pa.Table:
    records = list(records)
    return pa.table({
        "received_at": pa.array([r.received_ms for r in records], pa.int64())
        .cast(schema("dead_letters").field(0).type),
        "reason": [r.reason for r in records],
        "detail": [r.detail for r in records],
        "source": [r.source for r in records],
        "topic": pa.array([r.topic for r in records], pa.string()),
        "partition": pa.array([r.partition for r in records], pa.int32()),
        "offset": pa.array([r.offset for r in records], pa.int64()),
        "raw": pa.array([r.raw for r in records], pa.binary()),
    }, schema=schema("dead_letters"))


# A distinct-users row: (forum, thread or None, estimate, lower, upper, sketch bytes).
UsersRow = tuple


def encode_users(size_ms: int, start_ms: int, revision: int, threads: list[UsersRow],
                 forums: list[UsersRow]) -> dict[str, bytes]:
    """The ``thread_users`` and ``forum_users`` files of one window (rows sorted by key)."""
    meta = {"window": duration_label(size_ms), "window_start_ms": start_ms,
            "revision": revision, "final": True}
    return {"thread_users": encode_table(_users_table("thread_users", size_ms, start_ms,
                                                      sorted(threads)), meta),
            "forum_users": encode_table(_users_table("forum_users", size_ms, start_ms,
                                                     sorted(forums)), meta)}


def _users_table(dataset: str, size_ms: int, start_ms: int, rows: list[UsersRow]) -> pa.Table:
    target = schema(dataset)
    n = len(rows)
    ts_type = target.field(0).type
    columns = {"window_start": pa.array([start_ms] * n, pa.int64()).cast(ts_type),
               "window_end": pa.array([start_ms + size_ms] * n, pa.int64()).cast(ts_type),
               "forum": [r[0] for r in rows]}
    if dataset == "thread_users":
        columns["thread"] = [r[1] for r in rows]
    for i, name in enumerate(("users_estimate", "users_lower", "users_upper"), start=2):
        columns[name] = pa.array([float(r[i]) for r in rows], pa.float64())
    columns["users_sketch"] = pa.array([r[5] for r in rows], pa.binary())
    return pa.table(columns, schema=target)
