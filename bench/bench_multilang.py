"""Benchmark 4: --multilang (every task a streamparse_run subprocess) vs in-process.

    .venv/bin/python bench/bench_multilang.py [--quick] [--events 1000000] [--repeats 2]

The same ``forumstats run --source generator --events N`` into a local directory, alternated
in-process / --multilang ``--repeats`` times, each in a fresh child timed around
run_topology. Reports the throughput ratio (multilang / in-process, medians) and tuples per
event (spout + bolt tuples emitted / records accepted) of each mode.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_file import bench_main, median, run_forumstats  # noqa: E402

TARGET_RATIO = 0.5
TARGET_TUPLES = 0.01


def run(quick: bool = False, events: int | None = None, repeats: int | None = None) -> list[dict]:
    n = events or (50_000 if quick else 1_000_000)
    repeats = repeats or 2
    work = Path(tempfile.mkdtemp(prefix="bench-multilang-"))
    runs: dict[str, list[dict]] = {"in-process": [], "multilang": []}
    try:
        for i in range(repeats):
            for mode in ("in-process", "multilang"):
                out = work / f"{mode}{i}"
                args = ["--events", str(n), "--output", str(out)]
                runs[mode].append(run_forumstats(args + (["--multilang"]
                                                          if mode == "multilang" else [])))
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = {m: n / median([r["elapsed_s"] for r in rs]) for m, rs in runs.items()}
    tpe = {m: median([r["tuples"] / max(r["records_accepted"], 1) for r in rs])
           for m, rs in runs.items()}
    details = {"events": n, "repeats": repeats,
               "seconds": {m: [r["elapsed_s"] for r in rs] for m, rs in runs.items()},
               "tuples": {m: [r["tuples"] for r in rs] for m, rs in runs.items()},
               "accepted": {m: [r["records_accepted"] for r in rs] for m, rs in runs.items()},
               "children_max_rss_mb": [r["children_max_rss_mb"] for r in runs["multilang"]]}
    return [
        {"id": "multilang_throughput", "figure": "--multilang generator -> dir, events/s",
         "value": rate["multilang"], "baseline_name": "in-process", "baseline": rate["in-process"],
         "ratio": rate["multilang"] / rate["in-process"], "target": f">= {TARGET_RATIO}x",
         "pass": rate["multilang"] / rate["in-process"] >= TARGET_RATIO, "details": details},
        {"id": "multilang_tuples_per_event", "figure": "--multilang tuples per event",
         "value": tpe["multilang"], "baseline_name": "in-process tuples/event",
         "baseline": tpe["in-process"], "ratio": None, "target": f"<= {TARGET_TUPLES}",
         "pass": tpe["multilang"] <= TARGET_TUPLES},
    ]


def main() -> None:
    bench_main(__doc__, run, ("--events", {"type": int}), ("--repeats", {"type": int}))


if __name__ == "__main__":
    main()
