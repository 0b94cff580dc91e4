"""The analyst read side: datasets of the output layout as pyarrow datasets and DataFrames."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from . import keys
from .durations import parse_duration
from .schemas import schema
from .stores import Store, open_store


def dataset(store: Store, name: str, window: str = "1m") -> ds.Dataset:
    """One dataset (aggregate x window size) with its hive partitions (date, hour)."""
    filesystem, base = store.arrow_filesystem()
    size = None if name == keys.DEAD_LETTERS else parse_duration(window)
    root = f"{base.rstrip('/')}/{keys.dataset_prefix(name, size).rstrip('/')}"
    partitioning = ds.partitioning(pa.schema([("date", pa.string()), ("hour", pa.string())]),
                                   flavor="hive")
    try:
        return ds.dataset(root, filesystem=filesystem, format="parquet", schema=_full(name),
                          partitioning=partitioning)
    except FileNotFoundError:
        return ds.dataset([], filesystem=filesystem, format="parquet", schema=_full(name))


def _full(name: str) -> pa.Schema:
    return schema(name).append(pa.field("date", pa.string())).append(pa.field("hour", pa.string()))


def load(name: str, start: datetime | None = None, end: datetime | None = None,
         forum: str | None = None, window: str = "1m", source: str | Store = "output",
         endpoint_url: str | None = None) -> pd.DataFrame:
    """Rows of ``name`` whose window starts in [start, end), optionally for one forum."""
    store = source if not isinstance(source, str) else open_store(source, endpoint_url)
    data = dataset(store, name, window)
    condition = None
    time_col = "received_at" if name == keys.DEAD_LETTERS else "window_start"
    for part in (
        pc.field(time_col) >= pa.scalar(start, pa.timestamp("ms", "UTC")) if start else None,
        pc.field(time_col) < pa.scalar(end, pa.timestamp("ms", "UTC")) if end else None,
        pc.field("forum") == forum if forum is not None else None,
    ):
        if part is not None:
            condition = part if condition is None else condition & part
    return data.to_table(filter=condition).to_pandas()


def top_threads(store: Store, n: int = 5, window: str = "1m", forum: str | None = None
                ) -> list[tuple[str, str, int]]:
    """The ``n`` threads with the most events over the whole dataset: (forum, thread, count)."""
    data = dataset(store, "thread_counts", window)
    flt = pc.field("forum") == forum if forum is not None else None
    table = data.to_table(columns=["forum", "thread", "count"], filter=flt)
    if table.num_rows == 0:
        return []
    grouped = table.group_by(["forum", "thread"]).aggregate([("count", "sum")])
    grouped = grouped.sort_by([("count_sum", "descending"), ("forum", "ascending"),
                               ("thread", "ascending")]).slice(0, n)
    return list(zip(grouped["forum"].to_pylist(), grouped["thread"].to_pylist(),
                    grouped["count_sum"].to_pylist(), strict=True))


def recent_top_threads(store: Store, period_ms: int, n: int = 10, forum: str | None = None,
                       window: str = "1m") -> tuple[list[tuple[str, str, int]], int | None,
                                                    int | None]:
    """Top threads over the ``period_ms`` ending at the newest window end in the data (not the
    wall clock: the data may be a backfill). Returns (rows, start_ms, end_ms)."""
    data = dataset(store, "thread_counts", window)
    ends = data.to_table(columns=["window_end"])["window_end"]
    if len(ends) == 0:
        return [], None, None
    end = pc.max(ends).value
    start = end - period_ms
    flt = pc.field("window_start") >= pa.scalar(start, pa.timestamp("ms", "UTC"))
    if forum is not None:
        flt = flt & (pc.field("forum") == forum)
    table = data.to_table(columns=["forum", "thread", "count"], filter=flt)
    if table.num_rows == 0:
        return [], start, end
    grouped = table.group_by(["forum", "thread"]).aggregate([("count", "sum")]).sort_by(
        [("count_sum", "descending"), ("forum", "ascending"), ("thread", "ascending")])
    rows = grouped.slice(0, n).to_pylist()
    return [(r["forum"], r["thread"], r["count_sum"]) for r in rows], start, end
