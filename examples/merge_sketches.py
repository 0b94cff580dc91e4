"""Distinct users over ANY range of windows, from the HLL sketch bytes kept in the output.

Every distinct-user row carries the window's Apache DataSketches HLL sketch as bytes
(``hll_sketch.serialize_compact``). Distinct counts do not add up (a user active in two minutes
is one user, not two), but sketches merge: the union of the sketches of any set of rows is the
distinct-user estimate of all of them together. Typical questions:

* distinct users of a thread between 12:05 and 12:40 (merge its minute rows);
* distinct users of a forum over a week (merge its daily rows);
* distinct users across several forums (merge their rows).

This script is self-contained: it pushes synthetic events through the real engine, writes the
distinct-user results as a Hive-partitioned Parquet dataset into a temporary directory (the
columns are illustrative: ``window_start``, ``window_end``, ``forum``, ``thread``,
``users_estimate``, ``users_sketch``), reads it back with ``pyarrow.dataset`` as an analyst
would, and merges ranges. Run it with ``.venv/bin/python examples/merge_sketches.py``.

The merge itself is three lines with the ``datasketches`` package (pip install datasketches)::

    union = hll_union(12)                      # lg_k of the stored sketches (12 by default)
    for blob in rows["users_sketch"]:
        union.update(hll_sketch.deserialize(blob))
    union.get_estimate(), union.get_lower_bound(2), union.get_upper_bound(2)

The same works from Java, C++ or Go DataSketches libraries (the bytes are the standard
cross-language format), and from ``forumstats.distinct.merge_sketches``.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from datasketches import hll_sketch, hll_union

from forumstats.distinct import DistinctResult
from forumstats.durations import duration_label
from forumstats.engine import WindowEngine
from forumstats.events import Event
from forumstats.settings import WindowSettings
from forumstats.windows import preaggregate_with_users

START = 1_767_268_800_000  # 2026-01-01T12:00:00Z
MINUTE = 60_000
TS = pa.timestamp("ms", tz="UTC")


def simulate(minutes: int = 90, seed: int = 1) -> tuple[list[DistinctResult], list[Event]]:
    """Events over ``minutes`` minutes through the engine; returns final distinct results."""
    rnd = random.Random(seed)
    engine = WindowEngine(WindowSettings())
    events, results = [], []
    for minute in range(minutes):
        batch = [Event("pageview", rnd.choice(["help", "gaming"]), f"t-{rnd.randrange(5)}",
                       START + minute * MINUTE + rnd.randrange(MINUTE), None,
                       f"user-{rnd.randrange(3_000)}") for _ in range(200)]
        events += batch
        counts, users, max_ts = preaggregate_with_users(batch, MINUTE)
        engine.add_partial(counts)
        engine.add_users(users)
        engine.watermarks.observe("demo", max_ts, 0)
        engine.advance(0)
        results += engine.drain_distinct()
    engine.watermarks.end("demo")
    engine.advance(0)
    results += engine.drain_distinct()
    return results, events


def thread_users_table(result: DistinctResult) -> pa.Table:
    rows = list(result.threads.items())
    return pa.table({
        "window_start": pa.array([result.start_ms] * len(rows), pa.int64()).cast(TS),
        "window_end": pa.array([result.end_ms] * len(rows), pa.int64()).cast(TS),
        "forum": [forum for (forum, _), _ in rows],
        "thread": [thread for (_, thread), _ in rows],
        "users_estimate": [d.estimate for _, d in rows],
        "users_sketch": pa.array([d.sketch for _, d in rows], pa.binary()),
    })


def write_dataset(results: list[DistinctResult], root: Path) -> None:
    """One file per window (a restatement would overwrite it: keep only the last revision)."""
    for result in results:
        part = root / f"window={duration_label(result.size_ms)}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(thread_users_table(result), part / f"{result.start_ms}.parquet")


def merged(blobs: list[bytes], lg_k: int = 12) -> hll_union:
    union = hll_union(lg_k)
    for blob in blobs:
        union.update(hll_sketch.deserialize(blob))
    return union


def main() -> None:
    results, events = simulate()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "thread_users"
        write_dataset(results, root)
        table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
        print(f"{table.num_rows} thread rows in {root} (windows: "
              f"{sorted(set(table['window'].to_pylist()))})\n")

        def question(label: str, mask, lo: int, hi: int, forum: str | None,
                     thread: str | None) -> None:
            rows = table.filter(mask)
            union = merged(rows["users_sketch"].to_pylist())
            truth = {e.user for e in events if lo <= e.ts_ms < hi
                     and (forum is None or e.forum == forum)
                     and (thread is None or e.thread == thread)}
            summed = sum(rows["users_estimate"].to_pylist())
            print(f"{label}\n  merged {rows.num_rows} sketches: {union.get_estimate():,.1f} "
                  f"(95%: {union.get_lower_bound(2):,.0f}..{union.get_upper_bound(2):,.0f}); "
                  f"exact {len(truth):,}; naive sum of estimates {summed:,.0f} (wrong)")

        def between(lo: int, hi: int):
            return ((pc.field("window_start") >= pa.scalar(lo, TS))
                    & (pc.field("window_end") <= pa.scalar(hi, TS)))

        window = pc.field("window")
        lo, hi = START + 5 * MINUTE, START + 40 * MINUTE
        question("distinct users of help/t-1, 12:05-12:40, from 35 minute rows",
                 between(lo, hi) & (window == "1m") & (pc.field("forum") == "help")
                 & (pc.field("thread") == "t-1"), lo, hi, "help", "t-1")
        lo, hi = START, START + 120 * MINUTE
        question("distinct users of all of 'gaming', 12:00-14:00, from its hourly rows",
                 between(lo, hi) & (window == "1h") & (pc.field("forum") == "gaming"),
                 lo, hi, "gaming", None)
        question("distinct users of everything that day, from the daily rows",
                 window == "1d", START - 12 * 60 * MINUTE, START + 12 * 60 * MINUTE, None,
                 None)


if __name__ == "__main__":
    main()
