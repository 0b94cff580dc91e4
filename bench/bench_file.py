"""Benchmark 2: NDJSON file -> Parquet end to end vs DuckDB's batch group-by of the same file.

    .venv/bin/python bench/bench_file.py [--quick] [--events 1000000] [--repeats 3]

Generates an NDJSON file with ``forumstats.generator`` (seeded; no malformed records so that
DuckDB's ``read_json`` accepts every line), then alternates, ``--repeats`` times:

* baseline: DuckDB reads the file and writes the per-(1m window, forum, thread, type) counts
  to Parquet (``COPY (SELECT ... GROUP BY ALL) TO ... (FORMAT parquet)``), default threads;
* subject: ``forumstats run --source FILE --output DIR`` (in-process local Storm runner, the
  deployed topology: validation, 1m windows, 1h/1d rollups, Parquet, latest/), timed around
  ``run_topology`` in a fresh subprocess (interpreter start-up and imports not counted).

Figures are medians; the ratio is forumstats events/s / DuckDB events/s.

This module also holds the helpers the other benchmarks share: ``run_forumstats`` (one timed
run in a child process), ``median`` and the ``--child`` entry point.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TARGET_FILE = 0.3


# --------------------------------------------------------------------------- shared helpers


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_ndjson(path: Path, n: int, seed: int = 11, **gen_kwargs) -> Path:
    from forumstats.generator import generate

    gen_kwargs.setdefault("malformed_fraction", 0.0)
    # 50 events/s of event time, as `forumstats run`'s generator (GeneratorSource): at the
    # generator's own default of 2000/s the spout stalls on max.spout.pending (BENCHMARKS.md)
    gen_kwargs.setdefault("events_per_second", 50.0)
    with open(path, "wb", buffering=1 << 20) as fh:
        for raw in generate(n, seed=seed, **gen_kwargs):
            fh.write(raw)
            fh.write(b"\n")
    return path


def run_forumstats(cli_args: list[str], *, env: dict | None = None, extra_conf: dict | None = None,
                   generator_kwargs: dict | None = None, profile: Path | None = None,
                   timeout: float | None = None) -> dict:
    """One ``forumstats run`` in a fresh child; returns {elapsed_s, records_accepted, tuples,
    peak_rss_mb (child's VmHWM), ...}. The clock runs around run_topology only."""
    payload = json.dumps({"args": cli_args, "conf": extra_conf or {},
                          "gen": generator_kwargs or {}})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", payload]
    if profile is not None:
        spy = Path(sys.executable).with_name("py-spy")
        cmd = [str(spy), "record", "--format", "raw", "--rate", "50", "--subprocesses",
               "--output", str(profile), "--"] + cmd
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"forumstats run {cli_args} failed ({done.returncode}):\n"
                           f"{done.stderr[-4000:]}")
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    return json.loads(line)


def _child(payload: str) -> None:
    """Same set-up as ``forumstats run`` (cli._run), but times run_topology and reports."""
    spec = json.loads(payload)
    import functools

    from forumstats import cli, sources
    from forumstats.config import load_options
    from forumstats.settings import Settings
    from forumstats.stores import open_store
    from forumstats.topology_runner import load_topology, project_dir, run_topology

    if spec["gen"]:  # e.g. threads_per_forum for the memory benchmark (local runner only)
        sources.generate = functools.partial(sources.generate, **spec["gen"])
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="generator")
    ap.add_argument("--output", default=None)
    ap.add_argument("--endpoint-url", default=None)
    ap.add_argument("--events", type=int, default=None)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--config", default=None)
    ap.add_argument("--env", default="local")
    ap.add_argument("--stop-at-end", action="store_true")
    ap.add_argument("--group", default=None)
    ap.add_argument("--multilang", action="store_true")
    args = ap.parse_args(spec["args"])
    project = project_dir()
    config = args.config or str(project / "config.json")
    options = load_options(config, args.env)
    conf = {**options, **cli._overrides(args), **spec["conf"]}
    settings = Settings.from_options(conf)
    open_store(settings.output, endpoint_url=args.endpoint_url)
    topology = load_topology(project, config, args.env)
    cwd = str(project / "src") if args.multilang else None
    started = time.perf_counter()
    progress = run_topology(topology, conf, multilang_cwd=cwd)
    elapsed = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({
        "elapsed_s": elapsed, "records_accepted": progress.records_accepted,
        "tuples": progress.tuples, "windows_written": progress.windows_written,
        "dead_letters": progress.dead_letters, "peak_rss_mb": _vm_hwm_mb(),
        "children_max_rss_mb": children}), flush=True)


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cores": os.cpu_count(), "memory_gib": round(mem_gb, 1)}


# --------------------------------------------------------------------------- benchmark


DUCKDB_SQL = """
COPY (
  WITH ev AS (
    SELECT type, forum, json_extract_string(thread, '$') AS thread,
           CASE WHEN json_type(ts) = 'VARCHAR'
                THEN epoch_ms(CAST(json_extract_string(ts, '$') AS TIMESTAMPTZ))
                ELSE CAST(json_extract_string(ts, '$') AS BIGINT) END AS ts_ms
    FROM read_json('{src}', format='newline_delimited',
                   columns={{type: 'VARCHAR', forum: 'VARCHAR', thread: 'JSON', ts: 'JSON'}}))
  SELECT ts_ms - ts_ms % 60000 AS window_start, forum, thread, type, count(*) AS count
  FROM ev GROUP BY ALL ORDER BY ALL
) TO '{dst}' (FORMAT parquet, COMPRESSION zstd)
"""


def run_duckdb(src: Path, dst: Path) -> tuple[float, int]:
    import duckdb

    con = duckdb.connect()
    started = time.perf_counter()
    con.execute(DUCKDB_SQL.format(src=src, dst=dst))
    elapsed = time.perf_counter() - started
    rows = con.execute(f"SELECT sum(count) FROM '{dst}'").fetchone()[0]
    con.close()
    return elapsed, int(rows)


def run(quick: bool = False, events: int | None = None, repeats: int | None = None) -> list[dict]:
    n = events or (50_000 if quick else 1_000_000)
    repeats = repeats or (2 if quick else 3)
    work = Path(tempfile.mkdtemp(prefix="bench-file-"))
    try:
        src = write_ndjson(work / "events.ndjson", n)
        duck_s, fs_s, accepted = [], [], None
        for i in range(repeats):  # interleaved: baseline, subject, baseline, subject, ...
            secs, counted = run_duckdb(src, work / f"duck{i}.parquet")
            duck_s.append(secs)
            out = work / f"out{i}"
            res = run_forumstats(["--source", str(src), "--output", str(out)])
            fs_s.append(res["elapsed_s"])
            accepted = res["records_accepted"]
            if i < repeats - 1:
                shutil.rmtree(out, ignore_errors=True)
        objects, floor_s = output_floor(out, work / "floor")
        duck_rate, fs_rate = n / median(duck_s), n / median(fs_s)
        return [{
            "id": "file_parquet", "figure": "File -> Parquet (in-process), events/s",
            "value": fs_rate, "baseline_name": "DuckDB read_json + GROUP BY -> Parquet",
            "baseline": duck_rate, "ratio": fs_rate / duck_rate, "target": f">= {TARGET_FILE}x",
            "pass": fs_rate / duck_rate >= TARGET_FILE,
            "details": {"events": n, "repeats": repeats, "forumstats_s": fs_s,
                        "duckdb_s": duck_s, "accepted": accepted, "duckdb_counted": counted}},
            {"id": "file_output_floor",
             "figure": f"File run's {objects:,} output objects alone: events/s if storing "
                       "them were all a run did", "value": n / floor_s,
             "baseline_name": "DuckDB read_json + GROUP BY -> Parquet", "baseline": duck_rate,
             "ratio": n / floor_s / duck_rate, "target": "info (ceiling of the layout)",
             "pass": None, "details": {"objects": objects, "seconds": floor_s}}]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def output_floor(out: Path, dst: Path) -> tuple[int, float]:
    """Store the final bytes of every object a run left in ``out`` again, into an empty local
    store, at the sink's own concurrency: what the S3 layout costs with no counting, no
    encoding and no rewrites (the run also wrote restatements and old snapshots). Returns
    (objects, seconds)."""
    from forumstats.sink import put_all
    from forumstats.stores import LocalStore

    objects = {p.relative_to(out).as_posix(): p.read_bytes()
               for p in sorted(out.rglob("*")) if p.is_file()}
    started = time.perf_counter()
    put_all(LocalStore(dst), objects)
    return len(objects), time.perf_counter() - started


def print_rows(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="forumstats benchmarks (ratios vs same-run baselines)")
    for col in ("figure", "value", "baseline", "ratio", "target", "result"):
        table.add_column(col, justify="left" if col in ("figure", "baseline") else "right")
    for r in rows:
        table.add_row(r["figure"], fmt(r["value"]),
                      f"{r['baseline_name']}: {fmt(r['baseline'])}",
                      f"{r['ratio']:.3f}x" if r.get("ratio") is not None else "-",
                      r["target"], "PASS" if r["pass"] else ("MISS" if r["pass"] is False
                                                             else "-"))
    Console().print(table)


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def bench_main(doc: str, run_fn, *options: tuple[str, dict]) -> None:
    """The command line every benchmark script shares: ``--quick`` plus its own options
    (``(flag, add_argument kwargs)``, passed to ``run_fn`` in order); prints the table and
    the rows as JSON."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    for flag, kwargs in options:
        ap.add_argument(flag, **kwargs)
    args = vars(ap.parse_args())
    rows = run_fn(args.pop("quick"), *args.values())
    print_rows(rows)
    print(json.dumps(rows, indent=1, default=str))


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
        return
    bench_main(__doc__, run, ("--events", {"type": int}), ("--repeats", {"type": int}))


if __name__ == "__main__":
    main()
