"""Settings the topology needs when it is defined, read from config.json and validated.

``sparse submit`` and ``forumstats run`` both import topologies/forumstats.py; the environment
comes from FORUMSTATS_ENV (default ``local``) and the file from FORUMSTATS_CONFIG (default
``config.json``). Defining the topology fails with a clear message when the settings cannot
give exact results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .config import load_options
from .errors import ConfigError
from .settings import Settings


@dataclass(frozen=True)
class TopologyOptions:
    options: dict[str, Any]
    settings: Settings
    spout_parallelism: int
    count_parallelism: int
    sink_parallelism: int
    tick_secs: int


def topology_options(config_path: str | None = None, env: str | None = None) -> TopologyOptions:
    env = env or os.environ.get("FORUMSTATS_ENV", "local")
    options = load_options(config_path or os.environ.get("FORUMSTATS_CONFIG", "config.json"), env)
    settings = Settings.from_options(options)
    built = TopologyOptions(
        options=options, settings=settings,
        spout_parallelism=int(options.get("forumstats.parallelism.spout", 1)),
        count_parallelism=int(options.get("forumstats.parallelism.counts", 2)),
        sink_parallelism=int(options.get("forumstats.parallelism.sink", 2)),
        tick_secs=int(options.get("forumstats.storm.tick_secs", 1)),
    )
    validate(built)
    return built


def validate(opts: TopologyOptions) -> None:
    w = opts.settings.windows
    needed_ms = (w.size_ms + w.out_of_orderness_ms + w.allowed_lateness_ms
                 + opts.settings.flush_interval_ms)
    timeout = opts.options.get("topology.message.timeout.secs", 30)
    if int(timeout) * 1000 <= needed_ms:
        raise ConfigError(
            f"topology.message.timeout.secs={timeout} is too short: a batch stays un-acked until "
            f"its windows are written, up to window + out_of_orderness + allowed_lateness + "
            f"flush_interval = {needed_ms / 1000:.0f} s; raise topology.message.timeout.secs "
            f"above {needed_ms // 1000} (or shorten forumstats.allowed_lateness)")
    for option, par in (("counts", opts.count_parallelism), ("sink", opts.sink_parallelism)):
        if par > opts.settings.buckets:
            raise ConfigError(
                f"forumstats.parallelism.{option}={par} exceeds forumstats.buckets="
                f"{opts.settings.buckets}: the extra tasks would get no work; raise "
                "forumstats.buckets or lower the parallelism")
