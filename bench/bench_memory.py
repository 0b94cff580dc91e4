"""Benchmark 6: peak resident memory at 10M events over ~1M distinct threads.

    .venv/bin/python bench/bench_memory.py [--quick] [--events 10000000] [--threads 1000000]

``forumstats run --source generator --events N`` (in-process runner, the deployed topology,
output to a local directory) with the generator widened to ``--threads`` thread ids
(40 forums x threads/40 threads each, Zipf popularity), in a fresh child process; the figure is
the child's peak resident set (VmHWM). Baseline in the same run: the same command with 10,000
events on the default 16,000 threads (the runner's fixed start-up footprint), so the ratio is
the growth factor over an almost empty run. The number of distinct threads the events really
touched is counted afterwards from the same seeded generator (not inside the measured child).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_file import ROOT, bench_main, run_forumstats  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))

TARGET_MB = 300.0
FORUMS = 40


def distinct_threads(n: int, threads: int, seed: int = 7) -> int:
    from forumstats.generator import generate

    tpf = max(1, threads // FORUMS)
    seen = set()
    for raw in generate(n, seed=seed, events_per_second=50.0, threads_per_forum=tpf):
        i = raw.find(b'"thread":')
        if i >= 0:
            j = raw.find(b",", i)
            seen.add(raw[raw.find(b'"forum":'):i] + raw[i:j])
    return len(seen)


def run(quick: bool = False, events: int | None = None, threads: int | None = None,
        count_distinct: bool = True) -> list[dict]:
    n = events or (300_000 if quick else 10_000_000)
    m = threads or 1_000_000
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        base = run_forumstats(["--events", "10000", "--output", str(work / "base")])
        big = run_forumstats(["--events", str(n), "--output", str(work / "big")],
                             generator_kwargs={"threads_per_forum": max(1, m // FORUMS)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seen = distinct_threads(n, m) if count_distinct else None
    peak = big["peak_rss_mb"]
    return [{
        "id": "memory_peak_rss",
        "figure": f"peak RSS MB, {n:,} events / {m:,} thread ids (in-process)",
        "value": peak, "baseline_name": "same runner, 10k events", "baseline": base["peak_rss_mb"],
        "ratio": peak / base["peak_rss_mb"], "target": f"<= {TARGET_MB:.0f} MB",
        "pass": peak <= TARGET_MB,
        "details": {"events": n, "thread_ids": m, "distinct_threads_seen": seen,
                    "seconds": big["elapsed_s"], "accepted": big["records_accepted"],
                    "events_per_s": n / big["elapsed_s"], "baseline_mb": base["peak_rss_mb"]}}]


def main() -> None:
    bench_main(__doc__, run, ("--events", {"type": int}), ("--threads", {"type": int}))


if __name__ == "__main__":
    main()
