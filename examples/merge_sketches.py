"""Distinct users over ANY range of windows, from the HLL sketch bytes in forumstats' output.

Every row of ``thread_users`` and ``forum_users`` carries its window's Apache DataSketches HLL
sketch (``users_sketch``). Distinct counts do not add up (a user active in two minutes is one
user, not two), but sketches merge: the union of the sketches of any set of rows estimates the
distinct users of all of them together, e.g. a thread between 12:05 and 12:40 (its minute
rows), a forum over a week (its daily rows), or several forums at once.

The merge itself, with the ``datasketches`` package (the bytes are the standard cross-language
format, so Java, C++ and Go DataSketches read them too)::

    union = hll_union(12)                                  # lg_k of the stored sketches
    for blob in rows["users_sketch"]:
        union.update(hll_sketch.deserialize(blob))
    union.get_estimate(), union.get_lower_bound(2), union.get_upper_bound(2)

This script runs ``forumstats run`` on 20,000 generated events into a temporary directory,
reads ``forum_users`` back with pyarrow as an analyst would, merges a few ranges and prints
them next to the exact answer. Run it from the project directory:
``.venv/bin/python examples/merge_sketches.py``.
"""

from __future__ import annotations

import contextlib
import io
import tempfile

import pyarrow.compute as pc
import pyarrow.dataset as ds
from datasketches import hll_sketch, hll_union

from forumstats.cli import main
from forumstats.events import Event, parse_event
from forumstats.generator import generate
from forumstats.settings import EventContract

EVENTS, SEED = 20_000, 7


def merged(rows) -> tuple[float, float, float]:
    union = hll_union(12)
    for blob in rows["users_sketch"].to_pylist():
        union.update(hll_sketch.deserialize(blob))
    return union.get_estimate(), union.get_lower_bound(2), union.get_upper_bound(2)


def exact(forum: str | None, start_ms: int, end_ms: int) -> int:
    users = set()
    for raw in generate(EVENTS, seed=SEED, events_per_second=50.0):
        ev = parse_event(raw, EventContract())
        if (type(ev) is Event and ev.user is not None and (forum is None or ev.forum == forum)
                and start_ms <= ev.ts_ms - ev.ts_ms % 60_000 < end_ms):
            users.add(ev.user)
    return len(users)


def ranges() -> list[tuple[str | None, int, int]]:
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        main(["run", "--quiet", "--events", str(EVENTS), "--seed", str(SEED),
              "--output", out])
        table = ds.dataset(f"{out}/forum_users/window=1m", partitioning="hive").to_table()
    starts = sorted(set(pc.cast(table["window_start"], "int64").to_pylist()))
    first, last = starts[0], starts[-1] + 60_000
    middle = starts[len(starts) // 4], starts[3 * len(starts) // 4]
    results = []
    for forum, lo, hi in ((None, first, last), ("general", first, last),
                          ("general", middle[0], middle[1])):
        ms = pc.cast(table["window_start"], "int64")
        keep = pc.and_(pc.greater_equal(ms, lo), pc.less(ms, hi))
        if forum is not None:
            keep = pc.and_(keep, pc.equal(table["forum"], forum))
        estimate, lower, upper = merged(table.filter(keep))
        results.append((forum, lo, hi, estimate, lower, upper, exact(forum, lo, hi)))
    return results


if __name__ == "__main__":
    for forum, lo, hi, estimate, lower, upper, truth in ranges():
        print(f"{forum or 'all forums':>10}  {(hi - lo) // 60_000:3d} minutes: "
              f"estimate {estimate:8.0f}  [{lower:.0f}, {upper:.0f}]  exact {truth}")
