"""Chaos soak: a longer, parameterised version of tests/chaos. Starts its own SeaweedFS and
Tansu (on SeaweedFS, so topics survive a broker restart), produces N events (plus poison) to
a 4-partition topic, then runs ``forumstats run --stop-at-end`` as a subprocess while
injecting faults at random moments: kill -9 of the runner, a broker restart, a SeaweedFS
outage, a bolt subprocess kill (--multilang). Restarts the runner with the same command after
each kill, lets a final run finish, and compares every window with a DuckDB group-by of the
accepted events (each dead letter exactly once). Prints a summary; exit status 1 if inexact.

    .venv/bin/python bench/soak.py --events 50000 --rounds 12 --multilang --seed 5
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "chaos"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import chaos_helpers as h  # noqa: E402

from forumstats import devservices  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=10, help="faults to inject")
    ap.add_argument("--faults", default="kill,broker,s3,bolt",
                    help="comma list of kill, broker, s3, bolt (bolt needs --multilang)")
    ap.add_argument("--multilang", action="store_true")
    ap.add_argument("--outage-s", type=float, default=20.0, help="SeaweedFS outage length")
    ap.add_argument("--events-per-second", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    faults = [f for f in args.faults.split(",") if f and (f != "bolt" or args.multilang)]
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="forumstats-soak-"))
    counts: dict[str, int] = {}
    started = time.monotonic()
    with devservices.SeaweedS3(tmp / "seaweed") as s3, devservices.patched_environ(s3.env()):
        s3.start()
        bucket = s3.create_bucket("soak")
        with devservices.TansuBroker.on_seaweed(s3, "soak-tansu", workdir=tmp / "tansu") as kb:
            kb.start()
            topic, group = "soak", "soak"
            kb.create_topic(topic, partitions=h.PARTITIONS)
            lines = h.generated(args.events, seed=args.seed,
                                events_per_second=args.events_per_second)
            produced = h.produce(kb.bootstrap, topic, lines)
            cmd = h.run_command(kb.bootstrap, topic, group, f"s3://{bucket}/stats",
                                s3.endpoint_url, h.write_config(tmp), multilang=args.multilang)
            log = tmp / "runner.log"
            runner = h.Runner(cmd, log)
            for _ in range(args.rounds):
                time.sleep(rng.uniform(3, 15))
                if runner.proc.poll() is not None:
                    runner.wait(1)
                    runner = h.Runner(cmd, log)  # it finished or died: go on with a new one
                    time.sleep(rng.uniform(5, 10))
                fault = rng.choice(faults)
                counts[fault] = counts.get(fault, 0) + 1
                print(f"{time.monotonic() - started:7.1f}s {fault}; committed "
                      f"{h.committed_total(kb.bootstrap, topic, group)}", flush=True)
                if fault == "kill":
                    runner.kill9()
                    runner = h.Runner(cmd, log)
                elif fault == "broker":
                    kb.restart()
                elif fault == "s3":
                    s3.stop()
                    time.sleep(args.outage_s)
                    s3.start()
                elif fault == "bolt":
                    victims = [pid for pid, c in runner.children() if "bolts." in c]
                    if victims:
                        os.kill(rng.choice(victims), signal.SIGKILL)
            if runner.wait(900) != 0:
                runner = h.Runner(cmd, log)
                assert runner.wait(900) == 0, h.tail(log)
            final = h.Runner(cmd, log)  # a last backfill with the same group: nothing left
            assert final.wait(600) == 0, h.tail(log)
            verdict = h.verify_exact(s3, bucket, "stats", produced, tmp)
            ok = h.committed(kb.bootstrap, topic, group) == h.end_offsets(produced)
    print(f"soak: {args.events} events, faults {counts}, {time.monotonic() - started:.0f} s; "
          f"{verdict.line()}; offsets committed to the end: {ok}; log {log}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
