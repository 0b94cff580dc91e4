"""The ``forumstats`` command line."""

from __future__ import annotations

import argparse
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
    run.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
    except ForumstatsError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    return 1


def _run(args: argparse.Namespace) -> int:
    from .query import top_threads
    from .runner import Pipeline, run_pipeline
    from .stores import open_store

    settings = Settings.from_options(load_options(args.config, args.env))
    output = args.output or settings.output
    store = open_store(output, endpoint_url=args.endpoint_url)
    source = _open_source(args)
    pipeline = Pipeline(settings, store, source.name)
    stats = _with_progress(pipeline, source, args)
    _summary(stats, store.url, top_threads(store, 5))
    return 0


def _open_source(args: argparse.Namespace):
    from .errors import SourceError
    from .sources import GeneratorSource, NdjsonSource

    if args.source == "generator":
        return GeneratorSource(events=args.events or 300_000, seed=args.seed)
    if args.source.startswith("kafka://"):
        raise SourceError("the Kafka source runs through the Storm topology runner, which is "
                          "not built yet; use --source generator or an NDJSON file for now")
    path = Path(args.source)
    if not path.is_file():
        raise SourceError(f"--source {args.source!r} is neither 'generator', a kafka:// URL, "
                          "nor an existing NDJSON file")
    return NdjsonSource(path, limit=args.events)


def _with_progress(pipeline, source, args):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .runner import run_pipeline

    if args.quiet:
        return run_pipeline(pipeline, source.batches(5_000))
    columns = [TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed:,} records"), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}")]
    total = getattr(source, "events", None) or getattr(source, "limit", None)
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("counting", total=total, status="")

        def show(stats) -> None:
            rate = stats.records / stats.elapsed_s if stats.elapsed_s else 0.0
            progress.update(task, completed=stats.records, status=(
                f"{rate:,.0f} ev/s  watermark {_fmt_ts(stats.watermark_ms)}  "
                f"windows {stats.windows_written:,}  rejects {sum(stats.rejected.values()):,}"))

        return run_pipeline(pipeline, source.batches(5_000), on_progress=show)


def _fmt_ts(ms: int | None) -> str:
    from datetime import datetime, timezone

    if ms is None or abs(ms) > 10**15:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _summary(stats, output_url: str, top: list) -> None:
    out = Console()
    rate = stats.records / stats.elapsed_s if stats.elapsed_s else 0.0
    out.print(f"[bold]forumstats[/]: {stats.records:,} records in {stats.elapsed_s:.1f} s "
              f"({rate:,.0f}/s): {stats.accepted:,} counted, "
              f"{sum(stats.rejected.values()):,} dead-lettered")
    if stats.rejected:
        out.print("  rejected: " + ", ".join(f"{r} {n:,}" for r, n in
                                             sorted(stats.rejected.items())))
    out.print(f"  windows written: {stats.windows_written:,} "
              f"(restatements {stats.restatements:,})")
    out.print(f"  output: {output_url}")
    table = Table(title="top 5 threads")
    for col in ("forum", "thread", "events"):
        table.add_column(col, justify="right" if col == "events" else "left")
    for forum, thread, count in top:
        table.add_row(forum, thread, f"{count:,}")
    out.print(table)


if __name__ == "__main__":
    sys.exit(main())
