"""The ``forumstats`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timezone
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
    run.add_argument("--stop-at-end", action="store_true",
                     help="kafka: read up to the end offsets, close all windows, commit, exit")
    run.add_argument("--group", default=None, help="kafka: consumer group (default: config)")
    run.add_argument("--multilang", action="store_true",
                     help="run every task as a subprocess over Storm's multi-lang protocol")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    top = commands.add_parser("top", help="busiest threads over a recent period")
    top.add_argument("--forum", default=None, help="only this forum")
    top.add_argument("--last", default="1h",
                     help="period ending at the newest window in the data (default 1h)")
    top.add_argument("-n", type=int, default=10, help="how many threads (default 10)")
    _add_read_args(top)
    query = commands.add_parser("query", help="print rows of a dataset")
    query.add_argument("dataset", choices=["thread_counts", "forum_counts", "dead_letters"])
    query.add_argument("--window", default="1m", help="window size: 1m, 1h or 1d")
    query.add_argument("--start", default=None, help="ISO-8601 (inclusive), e.g. 2026-01-01T00:00Z")
    query.add_argument("--end", default=None, help="ISO-8601 (exclusive)")
    query.add_argument("--forum", default=None)
    query.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _add_read_args(query)
    dashboard = commands.add_parser("dashboard", help="serve a live web page over latest/")
    _add_read_args(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on "
                           "(default 127.0.0.1: this machine only)")
    dashboard.add_argument("--port", type=int, default=8787, help="port (default 8787; 0: any)")
    dashboard.add_argument("--stale-after", default="2m", help="warn when the watermark is older "
                           "than this (server clock; default 2m)")
    dashboard.add_argument("--refresh", default="5s", help="page refresh interval (default 5s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "top":
            return _top(args)
        if args.command == "query":
            return _query(args)
        if args.command == "dashboard":
            return _dashboard(args)
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


def _add_read_args(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--source", default="output",
                     help="output directory or s3://BUCKET/PREFIX (default ./output)")
    sub.add_argument("--endpoint-url", default=None, help="S3 endpoint (SeaweedFS, MinIO)")


def _top(args: argparse.Namespace) -> int:
    from .durations import parse_duration
    from .query import recent_top_threads
    from .stores import open_store

    store = open_store(args.source, endpoint_url=args.endpoint_url)
    rows, start, end = recent_top_threads(store, parse_duration(args.last), args.n, args.forum)
    table = Table(title=f"top threads {_fmt_ts(start)} .. {_fmt_ts(end)}"
                  + (f" in {args.forum}" if args.forum else ""))
    for col in ("forum", "thread", "events"):
        table.add_column(col, justify="right" if col == "events" else "left")
    for forum, thread, count in rows:
        table.add_row(forum, thread, f"{count:,}")
    Console().print(table)
    return 0


def _query(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .events import parse_iso_ms
    from .query import load

    bounds = []
    for text in (args.start, args.end):
        if text is None:
            bounds.append(None)
            continue
        ms = parse_iso_ms(text)
        if ms is None:
            raise ConfigError(f"{text!r} is not ISO-8601 with a zone, e.g. 2026-01-01T00:00Z")
        bounds.append(datetime.fromtimestamp(ms / 1000, tz=timezone.utc))
    df = load(args.dataset, bounds[0], bounds[1], forum=args.forum, window=args.window,
              source=args.source, endpoint_url=args.endpoint_url)
    df = df.head(args.limit)
    if args.format == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(df.to_json(orient="records", date_format="iso", lines=True))
    else:
        table = Table(title=f"{args.dataset} ({len(df):,} rows shown)")
        for col in df.columns:
            table.add_column(str(col))
        for row in df.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        Console().print(table)
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from .dashboard.server import make_server
    from .durations import parse_duration
    from .stores import open_store

    store = open_store(args.source, endpoint_url=args.endpoint_url, retries=1)
    server = make_server(store, args.host, args.port,
                         stale_after_ms=parse_duration(args.stale_after),
                         refresh_ms=parse_duration(args.refresh))
    console.print(f"[bold]forumstats dashboard[/] on {server.url} over {store.url} "
                  "(Ctrl-C stops it)", highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
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
        conf.update(_kafka_conf(args))
    else:
        if not Path(args.source).is_file():
            raise SourceError(f"--source {args.source!r} is neither 'generator', a kafka:// "
                              "URL, nor an existing NDJSON file")
        conf["forumstats.source"] = str(Path(args.source).resolve())
        if args.events:
            conf["forumstats.generator.events"] = args.events
    return conf


def _kafka_conf(args: argparse.Namespace) -> dict:
    from urllib.parse import urlsplit

    from .errors import SourceError

    url = urlsplit(args.source)
    topics = [t for t in url.path.strip("/").split(",") if t]
    if not url.netloc or not topics:
        raise SourceError(f"--source {args.source!r}: write kafka://HOST:PORT[,HOST:PORT]/TOPIC")
    conf = {"forumstats.source": "kafka", "forumstats.kafka.bootstrap_servers": url.netloc,
            "forumstats.kafka.topics": topics}
    if args.group:
        conf["forumstats.kafka.group_id"] = args.group
    if args.stop_at_end:
        conf["forumstats.spout.stop_at_end"] = True
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
                        f"batches in flight {p.in_flight}"
                        + (f"  consumer lag {p.consumer_lag:,}" if p.consumer_lag is not None
                           else ""))

        return run_topology(topology, conf, on_progress=show, multilang_cwd=multilang_cwd)


def _fmt_ts(ms: int | None) -> str:
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
