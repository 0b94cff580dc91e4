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

from .counting import END_OF_INPUT
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
    tuples: int = 0
    consumer_lag: int | None = None  # Kafka: records not yet committed, all spout tasks


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


class RunObserver:
    """Progress of a run, read off the tuples themselves, so it works the same whether the
    components run in this process or as multi-lang subprocesses."""

    def __init__(self, spout_tasks: int) -> None:
        self.spout_tasks = spout_tasks
        self.finished_tasks: set[int] = set()
        self.accepted = 0
        self.dead_letters = 0
        self.windows = 0
        self.watermark: int | None = None
        self.batch_tuples = 0
        self.lags: dict[int, int | None] = {}

    @property
    def consumer_lag(self) -> int | None:
        lags = list(self.lags.values())
        return None if not lags or None in lags else sum(lags)

    @property
    def ended(self) -> bool:
        """Every spout task read all of its bounded source, and every batch was acked (a batch
        failed and waiting for its replay keeps the run going)."""
        return len(self.finished_tasks) >= self.spout_tasks

    def __call__(self, component: str, task_id: int, stream: str, values: list,
                 msg_id) -> None:
        if component == "events" and stream == "status":
            if values[1] == "finished":
                self.finished_tasks.add(task_id)
            elif values[1] == "progress":
                self.lags[task_id] = values[2].get("lag")
        if component == "events" and stream == "batches":
            # data tuples have a message id (announcements and end markers have none)
            if msg_id is not None and msg_id.split("|")[1] == "0":  # first attempt only
                self.accepted += sum(row[4] for row in values[5])
            self.batch_tuples += 1
        elif stream == "dead_letters":
            self.dead_letters += len(values[4])
        elif component == "counts" and stream == "windows":
            self.windows += 1
            mark = values[1]["watermark"]
            self.watermark = mark if mark < END_OF_INPUT else self.watermark


def run_topology(topology: type, conf: dict[str, Any],
                 on_progress: Callable[[Progress], None] | None = None,
                 progress_every_s: float = 0.25, multilang_cwd: str | None = None) -> Progress:
    cluster = LocalCluster(topology, conf, name="forumstats-local", multilang_cwd=multilang_cwd)
    observer = RunObserver(len(cluster.by_component["events"]))
    cluster.observers.append(observer)
    started = last_report = time.monotonic()

    def done() -> bool:
        nonlocal last_report
        now = time.monotonic()
        if on_progress and now - last_report >= progress_every_s:
            last_report = now
            on_progress(_progress(cluster, observer, started))
        return observer.ended and not cluster.roots and not cluster.queue

    try:
        cluster.run(until=done)
        _drain(cluster)
    finally:
        cluster.shutdown()
    return _progress(cluster, observer, started)


def _drain(cluster: LocalCluster, multilang_grace_s: float = 2.0) -> None:
    """Let the last background writes (rollups, latest/) finish before stopping. In one
    process the writers can be asked; subprocesses get a grace period of ticks."""
    writers = [getattr(t.instance, "writer", None) for t in cluster.tasks.values()]
    writers = [w for w in writers if w is not None]
    deadline = time.monotonic() + (multilang_grace_s if cluster.multilang_cwd else 60.0)
    while time.monotonic() < deadline:
        cluster.step()
        if not cluster.multilang_cwd and all(w.idle() for w in writers):
            return
        time.sleep(0.01)


def _progress(cluster: LocalCluster, observer: RunObserver, started: float) -> Progress:
    return Progress(
        records_accepted=observer.accepted,
        in_flight=len(cluster.roots),
        watermark_ms=observer.watermark,
        windows_written=observer.windows,
        dead_letters=observer.dead_letters,
        elapsed_s=time.monotonic() - started,
        tuples=cluster.stats.spout_tuples + cluster.stats.bolt_tuples,
        consumer_lag=observer.consumer_lag,
    )
