"""Runs every forumstats benchmark, prints one table, writes bench/results.json and the
results table of BENCHMARKS.md (between the BENCH-RESULTS markers).

    .venv/bin/python bench/run_all.py [--quick] [--only file,kafka,multilang,freshness,memory,core]

Each benchmark generates its own data and starts Tansu / SeaweedFS itself where it needs them.
Every figure is given with a baseline measured in the same run and their ratio.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_file  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / "results.json"
DOC = ROOT / "BENCHMARKS.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- BENCH-RESULTS:BEGIN -->", "<!-- BENCH-RESULTS:END -->"
ORDER = ("core", "file", "kafka", "multilang", "freshness", "memory")


def run_core(quick: bool) -> list[dict]:
    """bench_core.py as it is (a subprocess), its table parsed: core vs Counter."""
    n = 100_000 if quick else 1_000_000
    done = subprocess.run([sys.executable, str(HERE / "bench_core.py"), "--events", str(n),
                           "--skip-memory"], capture_output=True, text=True, check=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    rows, counter = [], None
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        if len(cells) == 4 and cells[3].endswith("x"):
            rate = float(cells[2].replace(",", ""))
            if cells[0].startswith("collections.Counter"):
                counter = rate
            else:
                rows.append((cells[0], rate))
    if counter is None or not rows:
        raise RuntimeError("could not read bench_core.py's table:\n" + done.stdout)
    return [{"id": f"core_{i}", "figure": f"{label}, events/s", "value": rate,
             "baseline_name": "collections.Counter loop", "baseline": counter,
             "ratio": rate / counter, "target": "info", "pass": None,
             "details": {"events": n}} for i, (label, rate) in enumerate(rows)]


def runners(quick: bool, sizes: dict[str, int] | None = None) -> dict:
    import bench_freshness
    import bench_kafka
    import bench_memory
    import bench_multilang

    z = sizes or {}
    return {"core": lambda: run_core(quick),
            "file": lambda: bench_file.run(quick, z.get("file"), z.get("file_repeats")),
            "kafka": lambda: bench_kafka.run(quick, z.get("kafka"), z.get("kafka_repeats")),
            "multilang": lambda: bench_multilang.run(quick, z.get("multilang"),
                                                     z.get("multilang_repeats")),
            "freshness": lambda: bench_freshness.run(quick, z.get("freshness")),
            "memory": lambda: bench_memory.run(quick, z.get("memory"))}


def markdown_table(rows: list[dict]) -> str:
    out = ["| figure | value | baseline (same run) | ratio | target | result |",
           "|---|---:|---|---:|---|---|"]
    for r in rows:
        result = "met" if r["pass"] else ("**missed**" if r["pass"] is False else "-")
        ratio = f"{r['ratio']:.3f}x" if r.get("ratio") is not None else "-"
        out.append(f"| {r['figure']} | {bench_file.fmt(r['value'])} | {r['baseline_name']}: "
                   f"{bench_file.fmt(r['baseline'])} | {ratio} | {r['target']} | {result} |")
    return "\n".join(out)


def update_doc(rows: list[dict], meta: dict) -> None:
    m = meta["machine"]
    runs: dict[tuple, list[str]] = {}  # (date, command, seconds, quick) -> benchmarks measured
    for r in rows:
        run = r.get("run") or meta
        key = (run["date"], run["command"], run["seconds"], run.get("quick", False))
        names = runs.setdefault(key, [])
        if r.get("bench", "core") not in names:
            names.append(r.get("bench", "core"))
    lines = "\n".join(f"- {', '.join(names)}: run {date} with `{command}` ({seconds:.0f} s"
                      f"{', --quick sizes' if quick else ''})"
                      for (date, command, seconds, quick), names in runs.items())
    block = (f"{BEGIN}\n"
             f"On {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, "
             f"Python {m['python']}. Rows by run:\n\n{lines}\n\n"
             f"{markdown_table(rows)}\n{END}")
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    DOC.write_text(_replace_block(text, block))
    if README.exists() and BEGIN in (readme := README.read_text()):
        README.write_text(_replace_block(readme, block))  # the README shows the same table


def _replace_block(text: str, block: str) -> str:
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--only", default=",".join(ORDER), help="comma-separated subset")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other benchmarks' rows from bench/results.json")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite BENCHMARKS.md")
    ap.add_argument("--size", action="append", default=[], metavar="NAME=N",
                    help="override a size: file=, kafka=, multilang=, memory= (events), "
                         "freshness= (seconds), file_repeats=, kafka_repeats=, ...")
    args = ap.parse_args()
    sizes = {k: int(float(v)) for k, v in (x.split("=", 1) for x in args.size)}
    wanted = [w for w in args.only.split(",") if w]
    table = runners(args.quick, sizes)
    started = time.monotonic()
    rows: list[dict] = []
    errors: dict[str, str] = {}
    for name in ORDER:
        if name not in wanted:
            continue
        t0 = time.monotonic()
        print(f"== {name} ...", flush=True)
        try:
            got = table[name]()
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            errors[name] = repr(exc)
            print(f"== {name} FAILED: {exc!r}", flush=True)
            continue
        for r in got:
            r["bench"] = name
        rows += got
        print(f"== {name} done in {time.monotonic() - t0:.0f} s", flush=True)
        bench_file.print_rows(got)
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "make bench" + (" (bench/run_all.py --quick)" if args.quick else "")
            if set(wanted) == set(ORDER) and not sizes else " ".join(sys.argv),
            "quick": args.quick, "sizes": sizes, "machine": bench_file.machine(),
            "seconds": time.monotonic() - started, "errors": errors}
    run = {k: meta[k] for k in ("date", "command", "seconds", "quick")}
    for r in rows:
        r["run"] = run  # each row names the run that measured it (merges keep older rows)
    if args.merge and RESULTS.exists():
        old = json.loads(RESULTS.read_text())
        older = {k: old["meta"].get(k) for k in ("date", "command", "seconds", "quick")}
        kept = [{"run": older, **r} for r in old["results"] if r.get("bench") not in wanted]
        rows = sorted(kept + rows, key=lambda r: ORDER.index(r.get("bench", "core")))
    bench_file.print_rows(rows)
    RESULTS.write_text(json.dumps({"meta": meta, "results": rows}, indent=1, default=str) + "\n")
    if not args.no_doc:
        update_doc(rows, meta)
    if errors:
        print("failed:", errors)
        sys.exit(1)


if __name__ == "__main__":
    main()
