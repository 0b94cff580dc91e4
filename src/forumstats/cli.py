"""The ``forumstats`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import load_options
from .errors import ForumstatsError
from .settings import Settings

console = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forumstats", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="count events into windowed Parquet")
    run.add_argument("--source", default="generator",
                     help="generator (default), PATH.ndjson, or kafka://HOST:PORT/TOPIC")
    run.add_argument("--output", default=None,
                     help="output directory or s3://BUCKET/PREFIX (default: config, else ./output)")
    run.add_argument("--endpoint-url", default=None, help="S3 endpoint, e.g. for SeaweedFS/MinIO")
    run.add_argument("--events", type=int, default=None,
                     help="stop after N records (generator default: 300000)")
    run.add_argument("--seed", type=int, default=7, help="generator seed")
    run.add_argument("--config", default=None, help="config.json (default: ./config.json if any)")
    run.add_argument("--env", default="local", help="environment in config.json (default local)")
    run.add_argument("--multilang", action="store_true",
                     help="run every task as a subprocess over Storm's multi-lang protocol")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            return _run(args)
    except ForumstatsError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    return 1


def _run(args: argparse.Namespace) -> int:
    from .stores import open_store
    from .topology_runner import load_topology, project_dir

    project = project_dir()
    config = args.config or (str(project / "config.json")
                             if (project / "config.json").is_file() else None)
    options = load_options(config, args.env)
    conf = {**options, **_overrides(args)}
    settings = Settings.from_options(conf)
    store = open_store(settings.output, endpoint_url=args.endpoint_url)
    topology = load_topology(project, config, args.env)
    cwd = str(project / "src") if args.multilang else None
    progress = _run_with_progress(topology, conf, args.quiet, cwd)
    _summary(progress, store)
    return 0


def _overrides(args: argparse.Namespace) -> dict:
    from .errors import SourceError

    conf: dict = {"forumstats.generator.seed": args.seed}
    if args.output:
        conf["forumstats.output"] = args.output
    if args.endpoint_url:
        conf["forumstats.s3.endpoint_url"] = args.endpoint_url
    if args.source == "generator":
        conf["forumstats.source"] = "generator"
        conf["forumstats.generator.events"] = args.events or 300_000
    elif args.source.startswith("kafka://"):
        raise SourceError("the Kafka source in `forumstats run` is not wired yet; use "
                          "--source generator or an NDJSON file for now")
    else:
        if not Path(args.source).is_file():
            raise SourceError(f"--source {args.source!r} is neither 'generator', a kafka:// "
                              "URL, nor an existing NDJSON file")
        conf["forumstats.source"] = str(Path(args.source).resolve())
        if args.events:
            conf["forumstats.generator.events"] = args.events
    return conf


def _run_with_progress(topology, conf: dict, quiet: bool, multilang_cwd: str | None):
    from rich.live import Live

    from .topology_runner import run_topology

    if quiet:
        return run_topology(topology, conf, multilang_cwd=multilang_cwd)
    with Live(console=console, transient=True, refresh_per_second=4) as live:
        def show(p) -> None:
            rate = p.records_accepted / p.elapsed_s if p.elapsed_s else 0.0
            live.update(f"[bold]counting[/] {p.records_accepted:,} events ({rate:,.0f}/s)  "
                        f"watermark {_fmt_ts(p.watermark_ms)}  windows written "
                        f"{p.windows_written:,}  dead letters {p.dead_letters:,}  "
                        f"batches in flight {p.in_flight}")

        return run_topology(topology, conf, on_progress=show, multilang_cwd=multilang_cwd)


def _fmt_ts(ms: int | None) -> str:
    from datetime import datetime, timezone

    if ms is None or abs(ms) > 10**15:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _summary(progress, store) -> None:
    from .query import dataset, top_threads

    out = Console()
    dead = dataset(store, "dead_letters").to_table(columns=["reason"])
    reasons = dead.group_by("reason").aggregate([("reason", "count")]).to_pylist()
    rate = progress.records_accepted / progress.elapsed_s if progress.elapsed_s else 0.0
    out.print(f"[bold]forumstats[/]: {progress.records_accepted:,} events counted in "
              f"{progress.elapsed_s:.1f} s ({rate:,.0f}/s), {dead.num_rows:,} dead-lettered")
    if reasons:
        out.print("  dead letters: " + ", ".join(
            f"{r['reason']} {r['reason_count']:,}" for r in sorted(reasons,
                                                                   key=lambda r: r["reason"])))
    out.print(f"  windows written: {progress.windows_written:,}; tuples {progress.tuples:,} "
              f"({progress.tuples / max(progress.records_accepted, 1):.4f} per event)")
    out.print(f"  output: {store.url}")
    table = Table(title="top 5 threads")
    for col in ("forum", "thread", "events"):
        table.add_column(col, justify="right" if col == "events" else "left")
    for forum, thread, count in top_threads(store, 5):
        table.add_row(forum, thread, f"{count:,}")
    out.print(table)


if __name__ == "__main__":
    sys.exit(main())
