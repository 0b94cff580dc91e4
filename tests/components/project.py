"""What the component tests share: the project's topology, fresh, and a worker's environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forumstats.topology_runner import load_topology

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
CONFIG = ROOT / "config.json"


def fresh_topology() -> type:
    """A fresh copy of the topology class (streamparse mutates the Thrift objects of a
    topology class in place, so nothing is shared between tests), local env of config.json."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORUMSTATS_ENV", "local")  # load_topology sets both; undo it afterwards
        mp.setenv("FORUMSTATS_CONFIG", str(CONFIG))
        return load_topology(ROOT, str(CONFIG), "local")


def worker_env(*, unbuffered: bool = False, extra: dict[str, str] | None = None
               ) -> dict[str, str]:
    """The environment of a Storm worker: no buffering override, no test-only variables."""
    drop = ("AWS_", "FORUMSTATS_", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for key in ("PYTHONUNBUFFERED", "PYTHONPATH"):
        env.pop(key, None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env
