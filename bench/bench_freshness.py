"""Benchmark 5: freshness of latest/: time from a window's close (the watermark passing its
end) to that window showing as final in latest/manifest.json.

    .venv/bin/python bench/bench_freshness.py [--quick] [--seconds 600] [--rate 200]

Starts Tansu (4 partitions); a thread produces ``--rate`` events/s round-robin with event time
= the wall clock; ``forumstats run --source kafka://...`` (no --stop-at-end, in-process,
output to a local directory) runs in a subprocess with config.json's local options (1 min
windows: object keys name windows to the minute, so shorter windows are refused; hence one
close a minute, and p99 over a few minutes is close to the maximum). The manifest is polled
every 50 ms. Freshness (the issue's figure): from a window's close to its appearance, where
the close is ``windows.final_through_at`` (when the pipeline's watermark passed the window's
end, as the latest task saw it: at most one tick after the counting task) and the appearance
is when the poller first reads a manifest with ``windows.final_through`` >= the end. Also
reported (info): event time to visible, from E + out_of_orderness (when the watermark would
pass E if the pipeline added no delay; event time is the wall clock) to the same appearance,
which adds the watermark's own lag. Windows ending in the first 20 s of the run (start-up)
are left out. The subprocess is stopped by PID
(SIGINT, then SIGKILL). Baseline in the same run: the measured median interval between two
manifest rewrites (the flush cadence).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_file import ROOT, bench_main, median  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))

PARTITIONS = 4


def _iso_ms(text: str | None) -> int | None:
    if not text:
        return None
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _producer(bootstrap: str, topic: str, rate: float, stop: threading.Event) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    kinds = (b"pageview", b"pageview", b"vote", b"comment")
    i = 0
    started = time.monotonic()
    while not stop.is_set():
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.05))
            continue
        now_ms = int(time.time() * 1000)
        raw = b'{"type":"%s","forum":"forum-%d","thread":"t-%d","ts":%d,"id":"e%d"}' % (
            kinds[i % 4], i % 7, i % 101, now_ms, i)
        producer.produce(topic, value=raw, partition=i % PARTITIONS)
        producer.poll(0)
        i += 1
    producer.flush(10)


def run(quick: bool = False, seconds: float | None = None, rate: float = 200.0) -> list[dict]:
    from forumstats.config import load_options
    from forumstats.devservices import TansuBroker
    from forumstats.durations import parse_duration

    seconds = seconds or (150.0 if quick else 600.0)
    work = Path(tempfile.mkdtemp(prefix="bench-fresh-"))
    base_config = json.loads((ROOT / "config.json").read_text())
    config = work / "config.json"
    config.write_text(json.dumps(base_config))
    opts = load_options(str(config), "local")
    size = parse_duration(opts["forumstats.window"])
    ooo = parse_duration(opts["forumstats.out_of_orderness"])
    flush_ms = parse_duration(opts["forumstats.flush_interval"])
    manifest = work / "out" / "latest" / "manifest.json"
    seen_at: dict[int, float] = {}  # window end (ms) -> wall ms when first final
    closed_at: dict[int, int] = {}  # window end (ms) -> final_through_at when first final
    made: list[int] = []
    with TansuBroker(work / "tansu") as kafka:
        topic = "fresh-events"
        kafka.create_topic(topic, partitions=PARTITIONS)
        stop = threading.Event()
        prod = threading.Thread(target=_producer, args=(kafka.bootstrap, topic, rate, stop),
                                daemon=True)
        prod.start()
        log = open(work / "run.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "forumstats.cli", "run", "--quiet", "--source",
             f"kafka://{kafka.bootstrap}/{topic}", "--group", "fresh", "--output",
             str(work / "out"), "--config", str(config)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        started_ms = time.time() * 1000
        last_final = None
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"forumstats run exited early ({proc.returncode}); "
                                       f"log {work / 'run.log'}")
                try:
                    doc = json.loads(manifest.read_bytes())
                except (OSError, ValueError):
                    time.sleep(0.05)
                    continue
                now = time.time() * 1000
                m = _iso_ms(doc.get("made_at"))
                if m is not None and (not made or made[-1] != m):
                    made.append(m)
                final = _iso_ms((doc.get("windows") or {}).get("final_through"))
                if final is not None and final != last_final:
                    last_final = final
                    closed = _iso_ms(doc["windows"].get("final_through_at"))
                    end = final
                    while end not in seen_at and end > started_ms - 10 * size:
                        seen_at[end] = now
                        # The manifest has one final_through_at: when several windows became
                        # final in one manifest, only the newest one's close time is known.
                        if end == final and closed is not None:
                            closed_at[end] = closed
                        end -= size
                time.sleep(0.05)
        finally:
            stop.set()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
            prod.join(timeout=15)
            log.close()
    shutil.rmtree(work, ignore_errors=True)
    early = {e for e in seen_at if e + ooo < started_ms + 20_000}
    lat = sorted((seen_at[e] - closed_at[e]) / 1000 for e in closed_at if e not in early)
    e2e = sorted((seen_at[e] - (e + ooo)) / 1000 for e in seen_at if e not in early)
    cadence = [(b - a) / 1000 for a, b in zip(made, made[1:], strict=False)]
    p50, p99 = _percentile(lat, 0.5), _percentile(lat, 0.99)
    target = flush_ms / 1000 + 2
    flush_measured = median(cadence)

    def ratio(value: float) -> float | None:
        return value / flush_measured if cadence else None

    return [
        {"id": "freshness_p99", "figure": f"freshness p99, s ({len(lat)} window closes)",
         "value": p99, "baseline_name": "measured manifest cadence s", "baseline": flush_measured,
         "ratio": ratio(p99), "target": f"<= {target:g} s", "pass": bool(lat) and p99 <= target,
         "details": {"latencies_s": lat, "closes": len(lat), "rate": rate, "seconds": seconds,
                     "flush_interval_s": flush_ms / 1000, "out_of_orderness_s": ooo / 1000,
                     "manifest_intervals_s": cadence, "max_s": max(lat) if lat else None,
                     "event_time_to_visible_s": e2e,
                     "final_without_close_time": sum(1 for e in seen_at
                                                     if e not in closed_at and e not in early)}},
        {"id": "freshness_p50", "figure": "freshness p50, s", "value": p50,
         "baseline_name": "measured manifest cadence s", "baseline": flush_measured,
         "ratio": ratio(p50), "target": "info", "pass": None},
        {"id": "event_time_to_visible_p50",
         "figure": "event time to final in latest/ p50, s (end + out_of_orderness -> visible)",
         "value": _percentile(e2e, 0.5), "baseline_name": "measured manifest cadence s",
         "baseline": flush_measured, "ratio": ratio(_percentile(e2e, 0.5)), "target": "info",
         "pass": None},
    ]


def main() -> None:
    bench_main(__doc__, run, ("--seconds", {"type": float}),
               ("--rate", {"type": float, "default": 200.0}))


if __name__ == "__main__":
    main()
