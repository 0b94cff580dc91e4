"""LatestView's rolling documents against a brute-force oracle.

Random events over up to 30 hours, counted into one-minute windows per key bucket (buckets
hold disjoint forums, as the topology's fields grouping makes them), delivered in time order
with the watermark rising behind them, some first as a partial revision restated one step
later, as late events make the counting tasks do. At random points, and after every input
ended, every period's total, per-forum totals and overall top threads must equal a plain
group-by of the windows delivered so far, inside the range that period says it covers.
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
LATENESS = Settings().windows.allowed_lateness_ms


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
    return events, draw(st.booleans()), rnd.random()


def check(view: LatestView, delivered: dict[tuple[int, int], Counter], end: int) -> None:
    rolling = view.documents()["rolling"]
    assert set(rolling) == {"5m", "1h", "1d"}
    for doc in rolling.values():
        start = _ms(doc["start"])
        assert _ms(doc["end"]) == end
        per_key: Counter = Counter()
        for (_bucket, window), counts in delivered.items():
            if start <= window < end:
                per_key.update(counts)
        forums, per_thread = Counter(), Counter()
        for (forum, thread, _kind), n in per_key.items():
            forums[forum] += n
            per_thread[(forum, thread)] += n
        assert doc["total"] == sum(per_key.values())
        assert doc["forums"] == dict(sorted(forums.items()))
        best = sorted(per_thread.items(), key=lambda kv: (-kv[1], kv[0]))
        best = best[:TOP_THREADS_PER_PERIOD]
        assert [((r["forum"], r["thread"]), r["count"]) for r in doc["top_threads"]] == best
        assert [r["rank"] for r in doc["top_threads"]] == list(range(1, len(best) + 1))


@settings(max_examples=60, deadline=None)
@given(runs())
def test_rolling_totals_and_top_threads_match_a_group_by_of_the_delivered_windows(run):
    events, ended, seed = run
    rnd = random.Random(seed)
    view = LatestView(Settings())
    windows: dict[tuple[int, int], Counter] = {}
    for ts, forum, thread, kind in events:
        windows.setdefault((FORUMS.index(forum) % 2, ts), Counter())[(forum, thread, kind)] += 1
    delivered: dict[tuple[int, int], Counter] = {}
    restate_next: list[tuple[int, int]] = []

    def deliver(key, counts, revision, watermark):
        delivered[key] = counts
        view.on_window(key[0], WindowResult(MINUTE, key[1], revision, True, dict(counts)),
                       watermark)

    watermark = None
    for start in sorted({start for _bucket, start in windows}):
        step = start + MINUTE + 30_000  # the minute ending at start + 1m becomes final
        # Late events restate a window (whole, next revision) only within allowed lateness:
        # after a longer gap, before the watermark moves on.
        late_mark = (step if not restate_next or start - restate_next[0][1] <= LATENESS
                     else watermark)
        for key in restate_next:
            deliver(key, windows[key], 1, late_mark)
        restate_next = []
        watermark = step
        for bucket in (0, 1):
            key = (bucket, start)
            if key not in windows:
                view.on_partials(bucket, watermark, [])
            elif rnd.random() < 0.3 and sum(windows[key].values()) > 1:
                first = Counter(dict(list(windows[key].items())[:-1]))
                deliver(key, first, 0, watermark)
                restate_next.append(key)
            else:
                deliver(key, windows[key], 0, watermark)
        if rnd.random() < 0.15:
            check(view, delivered, start + MINUTE)
    last_end = max(ts for ts, *_ in events) + MINUTE
    watermark = POS_INF if ended else last_end + 30_000
    for key in restate_next:
        deliver(key, windows[key], 1, watermark)
    for bucket in (0, 1):
        view.on_partials(bucket, watermark, [])
    check(view, delivered, last_end)
