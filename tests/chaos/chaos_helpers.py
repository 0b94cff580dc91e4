"""Shared pieces of the chaos suite and bench/soak.py: a tests-only config, producing to
Tansu with the (partition, offset) of every record, running ``forumstats run`` as a real
subprocess (so ``kill -9`` is real), and the exactness check: every written window equals a
DuckDB group-by of the accepted events, each dead letter appears exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import kafka_groups
from batch_truth import truth

PROJECT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
# Small enough that a lost tuple times out within a test, valid for the topology check
# (timeout > window 60 s + out-of-orderness 2 s + lateness 5 s + flush 1 s = 68 s).
MESSAGE_TIMEOUT_S = 70
MAX_DISORDER_MS = 1_500  # below the out-of-orderness bound: no event is ever too late


def write_config(directory: Path, **extra) -> Path:
    """A config.json with one env, ``chaos``: small lateness and message timeout, small
    Kafka batches (many batches in flight, many commit points) and a long idle timeout (a
    broker or store outage must not let an idle partition release the watermark)."""
    base = json.loads((PROJECT / "config.json").read_text())
    options = dict(base["envs"]["local"]["options"])
    options.update({
        "topology.message.timeout.secs": MESSAGE_TIMEOUT_S,
        "topology.max.spout.pending": 64,
        "forumstats.out_of_orderness": "2s",
        "forumstats.allowed_lateness": "5s",
        "forumstats.flush_interval": "1s",
        "forumstats.idle_timeout": "2m",
        "forumstats.kafka.batch_size": 100,
        "forumstats.kafka.retry_backoff": "500ms",
        "forumstats.kafka.retry_backoff_max": "5s",
        **extra,
    })
    env = {**base["envs"]["local"], "options": options}
    path = directory / "chaos-config.json"
    path.write_text(json.dumps({**base, "envs": {"chaos": env}}, indent=2))
    return path


@dataclass
class Produced:
    topic: str
    records: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (partition, offset)

    @property
    def count(self) -> int:
        return len(self.records)


def generated(n: int, seed: int, events_per_second: float = 10.0) -> list[bytes]:
    from forumstats.generator import generate

    return list(generate(n, seed=seed, events_per_second=events_per_second,
                         max_disorder_ms=MAX_DISORDER_MS))


def produce(bootstrap: str, topic: str, lines: Iterable[bytes], produced: Produced | None = None,
            partitions: int = PARTITIONS) -> Produced:
    """Send round robin over the partitions; record where each line landed."""
    from kafka import KafkaProducer

    produced = produced or Produced(topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                             max_in_flight_requests_per_connection=1,
                             max_request_size=4 * 1024 * 1024)
    futures = [(raw, producer.send(topic, value=raw, partition=i % partitions))
               for i, raw in enumerate(lines)]
    producer.flush()
    for raw, fut in futures:
        meta = fut.get(timeout=30)
        produced.records[(meta.partition, meta.offset)] = raw
    producer.close()
    return produced


def run_command(bootstrap: str, topic: str, group: str, output: str, endpoint: str,
                config: Path, multilang: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "forumstats.cli", "run", "--quiet",
           "--source", f"kafka://{bootstrap}/{topic}", "--stop-at-end", "--group", group,
           "--output", output, "--endpoint-url", endpoint, "--config", str(config),
           "--env", "chaos"]
    return cmd + (["--multilang"] if multilang else [])


class Runner:
    """``forumstats run`` in its own process group, so that a kill takes the whole "worker"
    (runner and its multi-lang subprocesses) as a crashed machine would."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self._out.write(f"\n=== start {time.strftime('%X')}\n".encode())
        self._out.flush()
        self.proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group we created, by its id
        self.proc.wait(timeout=30)
        self._out.close()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"runner did not finish in {timeout:.0f} s; log {self.log}:\n"
                                 + tail(self.log)) from None
        finally:
            if not self._out.closed:
                self._out.close()

    def children(self) -> list[tuple[int, str]]:
        """(pid, command line) of the runner's direct children (multi-lang tasks)."""
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    out.append((int(entry.name), cmdline))
            except (OSError, ValueError, IndexError):
                continue
        return out


def wait_for(what: str, check, timeout: float = 120.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def kill_at_progress(cmd: list[str], log: Path, targets: list[int], progress,
                     finish_timeout: float = 240.0, reach_timeout: float = 120.0,
                     every: float = 0.2) -> list[tuple[float, int]]:
    """Start; ``kill -9`` as soon as ``progress()`` (offsets committed) reaches the next of
    ``targets``; restart with the same command; once per target. Then let the last run finish.
    Returns (seconds after start, ``progress()`` right after the kill) per kill. A run that
    finishes before reaching its target counts no kill (the caller checks how many landed).
    Progress, not time, picks the moments: how fast a run gets going varies a lot between
    machines, and kills that all land before the first commit or after the last prove little."""
    moments: list[tuple[float, int]] = []
    for target in targets:
        runner = Runner(cmd, log)
        started = time.monotonic()
        while runner.proc.poll() is None and progress() < target:
            assert time.monotonic() - started < reach_timeout, (
                f"no progress to {target} in {reach_timeout:.0f} s:\n" + tail(log))
            time.sleep(every)
        if runner.proc.poll() is None:
            runner.kill9()
            moments.append((round(time.monotonic() - started, 1), progress()))
        else:
            assert runner.proc.returncode == 0, tail(log)
            runner.wait(1)
    final = Runner(cmd, log)
    assert final.wait(finish_timeout) == 0, tail(log)
    return moments


# -- the exactness check --------------------------------------------------------------------
@dataclass
class Verdict:
    events: int
    accepted: int
    dead_letters: int
    windows: int
    rows: int
    too_late: int
    reasons: dict[str, int]

    def line(self) -> str:
        return (f"{self.events} events, {self.accepted} accepted in {self.windows} windows "
                f"({self.rows} rows), {self.dead_letters} dead letters {self.reasons}, "
                f"{self.too_late} too late")


def s3_filesystem(seaweed):
    import pyarrow.fs as pafs

    return pafs.S3FileSystem(endpoint_override=seaweed.endpoint_url, scheme="http",
                             access_key=seaweed.access_key, secret_key=seaweed.secret_key,
                             region=seaweed.region)


def _dataset(fs, path: str):
    import pyarrow.dataset as ds

    return ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").to_table()


def verify_exact(seaweed, bucket: str, prefix: str, produced: Produced, tmp: Path) -> Verdict:
    """Assert the output under s3://bucket/prefix is exact for ``produced``; return figures."""
    import duckdb

    fs = s3_filesystem(seaweed)
    dead = _dataset(fs, f"{bucket}/{prefix}/dead_letters").to_pylist()
    spout_dead = [d for d in dead if d["partition"] is not None]
    too_late = [d for d in dead if d["partition"] is None]
    keys = [(d["topic"], d["partition"], d["offset"]) for d in spout_dead]
    assert len(keys) == len(set(keys)), "a dead letter was written more than once"
    assert {k[0] for k in keys} <= {produced.topic}
    rejected = {(p, o) for _t, p, o in keys}
    assert rejected <= set(produced.records), "a dead letter names a record never produced"
    for d in spout_dead:  # the raw bytes are the record's own
        assert d["raw"] == produced.records[(d["partition"], d["offset"])]
    assert too_late == [], f"too-late dead letters in an exact run: {too_late[:3]}"

    good = tmp / "accepted.ndjson"
    accepted = [raw for po, raw in sorted(produced.records.items()) if po not in rejected]
    good.write_bytes(b"\n".join(accepted) + b"\n")
    con = duckdb.connect()
    written = _dataset(fs, f"{bucket}/{prefix}/thread_counts/window=1m")
    con.register("written", written)
    dupes = con.execute("""SELECT count(*) FROM (SELECT window_start, forum, thread, type
                           FROM written GROUP BY ALL HAVING count(*) > 1)""").fetchone()[0]
    assert dupes == 0, f"{dupes} (window, key) rows appear in more than one file"
    got = con.execute("""SELECT epoch_ms(window_start) AS ws, forum, thread, type,
                         sum(count) AS n FROM written GROUP BY ALL ORDER BY ALL""").fetchall()
    want = truth(con, good)
    if got != want:
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        raise AssertionError(f"windows differ from the batch truth: {len(want)} rows wanted, "
                             f"{len(got)} got; missing {missing}; unexpected {extra}")
    assert sum(r[4] for r in got) == len(accepted)
    reasons: dict[str, int] = {}
    for d in spout_dead:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    return Verdict(events=produced.count, accepted=len(accepted), dead_letters=len(dead),
                   windows=len({r[0] for r in got}), rows=len(got), too_late=len(too_late),
                   reasons=dict(sorted(reasons.items())))


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int | None]:
    return kafka_groups.committed(bootstrap, topic, group, PARTITIONS)


def committed_total(bootstrap: str, topic: str, group: str) -> int:
    return sum(v or 0 for v in committed(bootstrap, topic, group).values())


def end_offsets(produced: Produced) -> dict[int, int]:
    ends: dict[int, int] = {}
    for p, o in produced.records:
        ends[p] = max(ends.get(p, 0), o + 1)
    return ends
