"""LatestView's rolling and trending documents against a brute-force oracle.

Random events over up to 30 hours, counted into final one-minute windows per key bucket
(buckets hold disjoint forums, as the topology's fields grouping makes them), fed to the view
in random order; every period's total, per-forum totals and overall top threads must equal a
plain group-by of the events inside the range that period says it covers.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from forumstats.engine import WindowResult
from forumstats.latest import TOP_THREADS_PER_PERIOD, LatestView
from forumstats.settings import Settings
from forumstats.watermarks import POS_INF

MINUTE = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
FORUMS = ["f0", "f1", "f2", "f3", "f4"]
TYPES = ["comment", "vote", "pageview"]


def _ms(label: str) -> int:
    return round(datetime.fromisoformat(label).timestamp() * 1000)


@st.composite
def runs(draw):
    rnd = random.Random(draw(st.integers(0, 2**32)))
    hours = draw(st.sampled_from([1, 3, 30]))
    threads = draw(st.integers(1, 40))
    events = [(T0 + rnd.randrange(hours * 60) * MINUTE, rnd.choice(FORUMS),
               f"t{rnd.randrange(threads)}", rnd.choice(TYPES))
              for _ in range(draw(st.integers(1, 400)))]
    ended = draw(st.booleans())
    return events, ended, rnd.random()


@settings(max_examples=60, deadline=None)
@given(runs())
def test_rolling_totals_and_top_threads_match_a_group_by_of_the_covered_events(run):
    events, ended, order_seed = run
    view = LatestView(Settings())
    windows: dict[tuple[int, int], Counter] = {}
    for ts, forum, thread, kind in events:
        bucket = FORUMS.index(forum) % 2
        windows.setdefault((bucket, ts), Counter())[(forum, thread, kind)] += 1
    last_end = max(ts for ts, *_ in events) + MINUTE
    watermark = POS_INF if ended else last_end + 30_000  # rounds down to last_end
    feed = sorted(windows.items())
    random.Random(order_seed).shuffle(feed)
    for (bucket, start), counts in feed:
        view.on_window(bucket, WindowResult(MINUTE, start, 0, True, dict(counts)), watermark)

    rolling = view.documents()["rolling"]
    assert set(rolling) == {"5m", "1h", "1d"}
    for doc in rolling.values():
        start, end = _ms(doc["start"]), _ms(doc["end"])
        assert end == last_end  # the end of the data, or the watermark rounded to the minute
        inside = [(f, t) for ts, f, t, _k in events if start <= ts < end]
        forums = Counter(f for f, _t in inside)
        assert doc["total"] == len(inside)
        assert doc["forums"] == dict(sorted(forums.items()))
        per_thread = Counter(inside)
        expected = sorted(per_thread.items(), key=lambda kv: (-kv[1], kv[0]))
        expected = expected[:TOP_THREADS_PER_PERIOD]
        assert [((r["forum"], r["thread"]), r["count"]) for r in doc["top_threads"]] == expected
        assert [r["rank"] for r in doc["top_threads"]] == list(range(1, len(expected) + 1))
