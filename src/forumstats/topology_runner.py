"""``forumstats run``: the deployed Topology class, run locally in one process.

Builds the Storm conf from config.json plus command-line overrides, loads a fresh copy of
topologies/forumstats_topology.py, and drives it with forumstats.localstorm until a bounded
source is fully acked.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .localstorm import LocalCluster

TOPOLOGY_FILE = "topologies/forumstats_topology.py"


@dataclass
class Progress:
    records_accepted: int
    in_flight: int
    watermark_ms: int | None
    windows_written: int
    dead_letters: int
    elapsed_s: float


def project_dir() -> Path:
    """The project holding topologies/: the working directory, else this source tree."""
    here = Path.cwd()
    return here if (here / TOPOLOGY_FILE).is_file() else Path(__file__).resolve().parents[2]


def load_topology(project: Path, config_path: str | None, env: str) -> type:
    """A fresh copy of the topology module (streamparse mutates topology classes in place)."""
    import os

    path = project / TOPOLOGY_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: run forumstats from the project directory "
                          "(where config.json and topologies/ are)")
    for extra in (project / "src", project):
        if str(extra) not in sys.path:
            sys.path.insert(0, str(extra))
    os.environ["FORUMSTATS_ENV"] = env
    os.environ["FORUMSTATS_CONFIG"] = str(config_path or project / "config.json")
    spec = importlib.util.spec_from_file_location("forumstats_topology_local", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from streamparse import Topology

    return next(v for v in vars(module).values()
                if isinstance(v, type) and issubclass(v, Topology) and v is not Topology)


def run_topology(topology: type, conf: dict[str, Any],
                 on_progress: Callable[[Progress], None] | None = None,
                 progress_every_s: float = 0.25) -> Progress:
    cluster = LocalCluster(topology, conf, name="forumstats-local")
    spouts = [t.instance for t in cluster.by_component["events"]]
    started = last_report = time.monotonic()

    def done() -> bool:
        nonlocal last_report
        now = time.monotonic()
        if on_progress and now - last_report >= progress_every_s:
            last_report = now
            on_progress(_progress(cluster, spouts, started))
        return all(s.end_sent and s.source.finished() for s in spouts) and not cluster.queue

    try:
        cluster.run(until=done)
    finally:
        cluster.shutdown()
    return _progress(cluster, spouts, started)


def _progress(cluster: LocalCluster, spouts: list, started: float) -> Progress:
    counts = [t.instance for t in cluster.by_component.get("counts", [])]
    sinks = [t.instance for t in cluster.by_component.get("sink", [])]
    marks = [c.engine.watermark for b in counts for c in b.counters.values()]
    return Progress(
        records_accepted=sum(s.emitted_events for s in spouts),
        in_flight=sum(s.source.in_flight for s in spouts),
        watermark_ms=min(marks) if marks else None,
        windows_written=sum(w.stats.windows_written for s in sinks for w in s.sinks.values()),
        dead_letters=sum(w.stats.dead_letters_written for s in sinks for w in s.sinks.values()),
        elapsed_s=time.monotonic() - started,
    )
