"""Writes window results and dead letters to a store under the keys of forumstats.keys."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from . import keys
from .counting import WrittenWindow
from .deadletters import DeadLetter
from .engine import WindowResult
from .parquet import dead_letters_table, encode_table, encode_users, encode_window, read_metadata
from .stores import Store, StoreNotFound


class WindowSink:
    """Writes one key bucket's (``part``) objects. Keys are deterministic, so a rewrite replaces
    an object instead of adding one."""

    def __init__(self, store: Store, part: int = 0) -> None:
        self.store = store
        self.part = part

    def write_windows(self, results: Iterable[WindowResult],
                      offsets: Mapping[str, list] | None = None) -> None:
        for result in results:
            put_all(self.store, {
                keys.window_key(dataset, result.size_ms, result.start_ms, self.part): data
                for dataset, data in encode_window(result, offsets).items()})

    def write_users(self, size_ms: int, start_ms: int, revision: int,
                    threads: list, forums: list) -> None:
        """Distinct users of one window: rows (forum, thread|None, est, lower, upper, sketch)."""
        put_all(self.store, {
            keys.window_key(dataset, size_ms, start_ms, self.part): data
            for dataset, data in encode_users(size_ms, start_ms, revision, threads,
                                              forums).items()})

    def write_dead_letters(self, records: list[DeadLetter], *, source: str, first: int,
                           last: int, origin: str, source_ms: int) -> None:
        """Dead letters of the input range [first, last]; one object per range and origin."""
        if not records:
            return
        key = keys.dead_letters_key(source_ms, source, first, last, origin)
        self.store.put(key, encode_table(dead_letters_table(records)))


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def put_all(store: Store, objects: Mapping[str, bytes],
            content_type: str = "application/octet-stream") -> None:
    """Put independent objects concurrently (an S3 PUT is mostly waiting); returns once all
    are stored, or raises the first failure once none is still running."""
    _all([(store.put, (key, data, content_type)) for key, data in objects.items()])


def get_all(store: Store, keys_: list[str]) -> list[bytes]:
    """The objects' bytes, fetched concurrently, in the order of ``keys_``."""
    return _all([(store.get, (key,)) for key in keys_])


def _all(calls: list) -> list:
    global _pool
    if len(calls) <= 1:
        return [fn(*args) for fn, args in calls]
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="forumstats-store")
    futures = [_pool.submit(fn, *args) for fn, args in calls]
    errors = [f.exception() for f in futures]  # waits for every call
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]


def load_written_window(store: Store, size_ms: int, start_ms: int, part: int
                        ) -> WrittenWindow | None:
    """What was written for one window of one bucket (counts, revision, folded offset
    ranges), or None if nothing was: the state a restarted counting task restores."""
    try:
        data = store.get(keys.window_key("thread_counts", size_ms, start_ms, part))
    except StoreNotFound:
        return None
    table = pq.ParquetFile(pa.BufferReader(data)).read(columns=["forum", "thread", "type",
                                                                 "count"])
    meta = read_metadata(data)
    counts = dict(zip(zip(table["forum"].to_pylist(), table["thread"].to_pylist(),
                          table["type"].to_pylist(), strict=True),
                      table["count"].to_pylist(), strict=True))
    offsets = {src: [tuple(span) for span in spans]
               for src, spans in (meta.get("offsets") or {}).items()}
    return WrittenWindow(int(meta.get("revision", 1)), counts, offsets,
                         _written_sketches(store, size_ms, start_ms, part))


def _written_sketches(store: Store, size_ms: int, start_ms: int, part: int
                      ) -> dict[tuple[str, str], bytes]:
    try:
        data = store.get(keys.window_key("thread_users", size_ms, start_ms, part))
    except StoreNotFound:
        return {}
    table = pq.ParquetFile(pa.BufferReader(data)).read(columns=["forum", "thread",
                                                                 "users_sketch"])
    return dict(zip(zip(table["forum"].to_pylist(), table["thread"].to_pylist(), strict=True),
                    table["users_sketch"].to_pylist(), strict=True))
