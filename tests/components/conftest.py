"""Fixtures for running components under the multi-lang driver."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.components.multilang import STREAMPARSE_RUN, ShellBolt, ShellSpout
from tests.components.project import SRC, fresh_topology

SAMPLE_RESOURCES = Path(__file__).parent / "sample_components"


def _child_env(*, unbuffered: bool) -> dict[str, str]:
    """This process's environment with stdout buffering chosen explicitly.

    A Storm worker's environment normally has no PYTHONUNBUFFERED; a developer shell or
    CI runner may. Tests that depend on buffering must not inherit it by accident.
    """
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def child_env():
    """``child_env(unbuffered=True/False)`` -> an environment for a component subprocess."""
    return _child_env


@pytest.fixture
def sample_resources() -> Path:
    """The sample components' "resources" directory (the subprocess working directory)."""
    return SAMPLE_RESOURCES


def _drivers(tmp_path, driver, kind: str):
    """A starter for ``driver`` processes run from the sample resources dir, each with its
    own work dir under ``tmp_path`` (pid dir and stderr log stay there for diagnosis), and
    the list of those started, to close at teardown."""
    started = []

    def start(script: str, **kwargs):
        kwargs.setdefault("cwd", SAMPLE_RESOURCES)
        kwargs.setdefault("workdir", tmp_path / f"{kind}{len(started)}")
        started.append(driver(STREAMPARSE_RUN, script, **kwargs))
        return started[-1]

    return start, started


@pytest.fixture
def run_bolt(tmp_path):
    """``run_bolt("sample_bolts.echo.EchoBolt", **kwargs)`` -> a started ShellBolt."""
    start, started = _drivers(tmp_path, ShellBolt, "bolt")
    yield start
    for bolt in started:
        bolt.close()


@pytest.fixture
def run_spout(tmp_path):
    """``run_spout("sample_spouts.counter.CounterSpout", **kwargs)`` -> a started ShellSpout."""
    start, started = _drivers(tmp_path, ShellSpout, "spout")
    yield start
    for spout in started:
        spout.close()


@pytest.fixture(scope="module")
def topology():
    """A fresh copy of the project's topology class for this module."""
    return fresh_topology()


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    """Storm's extracted ``resources/`` folder: the contents of ``src/``."""
    res = tmp_path_factory.mktemp("resources")
    for package in ("spouts", "bolts", "forumstats"):
        (res / package).symlink_to(SRC / package, target_is_directory=True)
    return res
