"""Benchmark of the pure windowing core (a script, not a timed test).

    .venv/bin/python bench/bench_core.py [--events 1000000] [--batch 5000]
                                         [--distinct-threads 1000000] [--skip-memory]

1. Throughput: 1M pre-parsed ``Event`` objects (made once from ``forumstats.generator`` +
   ``parse_event``, realistic skewed traffic with some disorder), driven through the core the
   way ``runner.Pipeline.process`` does per batch (too-late split by ``late_cutoff`` ->
   ``preaggregate`` -> ``add_partial`` -> ``observe`` -> ``advance``, then end of input), with
   the default engine (1m windows, 1h/1d rollups, rolling totals). Compared in the same run
   with a plain ``collections.Counter`` loop counting (window, forum, thread, type) over the
   same events: the ratio is core speed / Counter speed. A second core row adds distinct
   users (``preaggregate_with_users`` + HLL sketches).
2. Memory: 1M events on 1M distinct threads (the worst case for state: every event a new key),
   through the default engine, each measurement in a fresh subprocess: peak traced Python
   allocations (tracemalloc, started after the events are built) and the growth of the
   process's resident set: peak (ru_maxrss) minus resident before the run (VmRSS). The
   tracemalloc figure is the precise one; the RSS growth also counts allocator slack.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from forumstats.engine import WindowEngine  # noqa: E402
from forumstats.events import Event, parse_event  # noqa: E402
from forumstats.settings import EventContract, WindowSettings  # noqa: E402
from forumstats.windows import preaggregate, preaggregate_with_users  # noqa: E402

START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
SETTINGS = WindowSettings()


def make_events(n: int) -> list[Event]:
    """Pre-parsed realistic events (the generator, if present; else a seeded fallback)."""
    try:
        from forumstats.generator import generate
    except ImportError:  # pragma: no cover - the generator lives in another module
        return _fallback_events(n)
    contract = EventContract()
    out = []
    for raw in generate(n, seed=7, start_ms=START_MS, malformed_fraction=0.0):
        ev = parse_event(raw, contract)
        if type(ev) is Event:
            out.append(ev)
    return out


def _fallback_events(n: int) -> list[Event]:
    import random

    rnd = random.Random(7)
    kinds = ("pageview", "vote", "comment", "reaction")
    return [Event(kinds[rnd.randrange(4)], f"forum-{int(rnd.paretovariate(1.1)) % 40}",
                  f"t-{int(rnd.paretovariate(1.0)) % 400}",
                  START_MS + i // 2 - (rnd.randrange(90_000) if rnd.random() < 0.03 else 0),
                  None, f"u{int(rnd.paretovariate(0.8)) % 20_000}") for i in range(n)]


def distinct_thread_events(n: int) -> list[Event]:
    """n events, each on its own thread, 2 per ms of event time, in 40 forums."""
    return [Event("pageview", f"forum-{i % 40}", f"t-{i}", START_MS + i // 2, None, f"u{i}")
            for i in range(n)]


def run_core(events: list[Event], batch: int, users: bool = False, rolling: bool = True,
             track_state: bool = False) -> tuple[float, WindowEngine, int, dict]:
    """Drive the engine like the runner; returns (seconds, engine, too_late, peak state)."""
    engine = WindowEngine(SETTINGS, rolling=rolling)
    size = SETTINGS.size_ms
    too_late = 0
    windows_out = 0
    peak_state: dict = {}
    peak_total = 0
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        cutoff = engine.late_cutoff()
        on_time = [e for e in chunk if e.ts_ms - e.ts_ms % size > cutoff]
        too_late += len(chunk) - len(on_time)
        if users:
            partial, user_sets, max_ts = preaggregate_with_users(on_time, size)
            engine.add_partial(partial)
            engine.add_users(user_sets)
        else:
            partial, max_ts = preaggregate(on_time, size)
            engine.add_partial(partial)
        engine.watermarks.observe("p0", max_ts, 0)
        windows_out += len(engine.advance(0))
        engine.drain_distinct()
        if track_state:
            state = engine.state_breakdown()
            if sum(state.values()) > peak_total:
                peak_total, peak_state = sum(state.values()), state
    engine.watermarks.end("p0")
    windows_out += len(engine.advance(0))
    engine.drain_distinct()
    return time.perf_counter() - started, engine, too_late, peak_state


def run_counter(events: list[Event]) -> tuple[float, int]:
    size = SETTINGS.size_ms
    started = time.perf_counter()
    counts: Counter = Counter()
    for e in events:
        ts = e.ts_ms
        counts[(ts - ts % size, e.forum, e.thread, e.type)] += 1
    return time.perf_counter() - started, len(counts)


def memory_child(mode: str, n: int, batch: int, rolling: bool) -> None:
    """Runs in a fresh process; prints one JSON line."""
    events = distinct_thread_events(n)
    gc.collect()
    rss_before = _current_rss_kib()
    if mode == "tracemalloc":
        tracemalloc.start()
    seconds, engine, _late, peak_state = run_core(events, batch, rolling=rolling,
                                                  track_state=True)
    out = {"seconds": seconds, "state": peak_state}
    if mode == "tracemalloc":
        out["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    else:
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
        out["rss_delta_mb"] = (rss_peak - rss_before) / 1024
    print(json.dumps(out))


def _current_rss_kib() -> int:
    """Resident set now (Linux /proc), else the high-water mark so far."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(mode: str, n: int, batch: int, rolling: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--distinct-threads", str(n),
           "--batch", str(batch)] + ([] if rolling else ["--no-rolling"])
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--distinct-threads", type=int, default=1_000_000)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--child", choices=["rss", "tracemalloc"], help=argparse.SUPPRESS)
    ap.add_argument("--no-rolling", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        memory_child(args.child, args.distinct_threads, args.batch, not args.no_rolling)
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    made = time.perf_counter()
    events = make_events(args.events)
    console.print(f"{len(events):,} pre-parsed events made in {time.perf_counter() - made:.1f} s "
                  f"(not timed below); batch size {args.batch:,}")

    counter_s, counter_keys = run_counter(events)
    core_s, engine, too_late, _ = run_core(events, args.batch)
    state = run_core(events, args.batch, track_state=True)[3]
    users_s, _, _, _ = run_core(events, args.batch, users=True)
    n = len(events)
    table = Table(title="core throughput (same events, same run)")
    for col in ("loop", "seconds", "events/s", "vs Counter"):
        table.add_column(col, justify="right" if col != "loop" else "left")
    counter_rate = n / counter_s
    table.add_row("collections.Counter (window, forum, thread, type)", f"{counter_s:.2f}",
                  f"{counter_rate:,.0f}", "1.00x")
    for label, secs in (("core: counts + 1h/1d rollups + rolling totals", core_s),
                        ("core + distinct users (HLL lg_k=12)", users_s)):
        table.add_row(label, f"{secs:.2f}", f"{n / secs:,.0f}",
                      f"{(n / secs) / counter_rate:.2f}x")
    console.print(table)
    console.print(f"Counter keys: {counter_keys:,}; too late: {too_late:,} "
                  f"(generator disorder up to 90 s > 30 s bound: restatements, no loss); "
                  f"peak engine state: {state}")

    if args.skip_memory:
        return
    m = args.distinct_threads
    mem = Table(title=f"peak memory, {m:,} events on {m:,} distinct threads "
                      "(fresh process per row)")
    for col in ("engine", "tracemalloc peak", "ru_maxrss growth", "peak state (counters)",
                "bytes/key"):
        mem.add_column(col, justify="right" if col != "engine" else "left")
    for label, rolling in (("default (rollups + rolling totals)", True),
                           ("counts + rollups only (rolling=False)", False)):
        traced = _child("tracemalloc", m, args.batch, rolling)
        rss = _child("rss", m, args.batch, rolling)
        keys = sum(traced["state"].values())
        mem.add_row(label, f"{traced['traced_peak_mb']:,.0f} MiB",
                    f"{rss['rss_delta_mb']:,.0f} MiB",
                    ", ".join(f"{k} {v:,}" for k, v in traced["state"].items()),
                    f"{traced['traced_peak_mb'] * 2**20 / max(keys, 1):,.0f}")
    console.print(mem)


if __name__ == "__main__":
    main()
