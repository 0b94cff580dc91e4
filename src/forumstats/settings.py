"""Frozen settings objects, built once at the entry point from config.json options.

Options live in config.json under ``envs.<env>.options`` with a ``forumstats.`` prefix, so the
local runner and a Storm cluster (which receives them in the topology conf) read one file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .durations import parse_duration
from .errors import ConfigError

DEFAULT_TYPES = ("comment", "vote", "pageview", "reaction")
PREFIX = "forumstats."


@dataclass(frozen=True)
class EventContract:
    """What an accepted event looks like (see forumstats.events)."""

    types: frozenset[str] = frozenset(DEFAULT_TYPES)
    max_bytes: int = 65_536
    max_forum_chars: int = 256
    max_thread_chars: int = 256
    max_id_chars: int = 256
    # 2000-01-01 .. 2100-01-01 UTC: anything outside is a producer bug, not traffic.
    min_ts_ms: int = 946_684_800_000
    max_ts_ms: int = 4_102_444_800_000


@dataclass(frozen=True)
class WindowSettings:
    """Event-time windowing: sizes, watermark bound, idleness and lateness, all in ms."""

    size_ms: int = 60_000
    rollup_sizes_ms: tuple[int, ...] = (3_600_000, 86_400_000)
    out_of_orderness_ms: int = 30_000
    idle_timeout_ms: int = 30_000
    allowed_lateness_ms: int = 300_000
    top_k: int = 20

    def __post_init__(self) -> None:
        for rollup in self.rollup_sizes_ms:
            if rollup % self.size_ms or rollup <= self.size_ms:
                raise ConfigError(
                    f"rollup of {rollup} ms must be a larger multiple of the window size "
                    f"{self.size_ms} ms: fix forumstats.rollups or forumstats.window"
                )
        if self.out_of_orderness_ms < 0 or self.allowed_lateness_ms < 0:
            raise ConfigError("forumstats.out_of_orderness and forumstats.allowed_lateness "
                              "must not be negative")


@dataclass(frozen=True)
class Settings:
    contract: EventContract = field(default_factory=EventContract)
    windows: WindowSettings = field(default_factory=WindowSettings)
    flush_interval_ms: int = 5_000
    snapshot_grace_ms: int = 120_000
    output: str = "output"
    buckets: int = 4  # key buckets: count/sink parallelism unit and output file "part"
    source: str = "kafka"  # kafka | generator | PATH.ndjson (the local runner sets this)

    def __post_init__(self) -> None:
        # The engine works at any grain; the output keys name windows to the minute.
        if self.windows.size_ms % 60_000:
            raise ConfigError(f"forumstats.window of {self.windows.size_ms} ms is not a whole "
                              "number of minutes: object keys name windows to the minute; "
                              "use 1m or more")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Settings:
        """Build settings from a flat ``forumstats.*`` options mapping; unknown keys fail."""
        opts = {k[len(PREFIX):]: v for k, v in options.items() if k.startswith(PREFIX)}
        contract_kw: dict[str, Any] = {}
        window_kw: dict[str, Any] = {}
        top_kw: dict[str, Any] = {}
        handlers = {
            "event_types": lambda v: contract_kw.__setitem__("types", frozenset(map(str, v))),
            "max_event_bytes": lambda v: contract_kw.__setitem__("max_bytes", int(v)),
            "window": lambda v: window_kw.__setitem__("size_ms", parse_duration(v)),
            "rollups": lambda v: window_kw.__setitem__(
                "rollup_sizes_ms", tuple(parse_duration(x) for x in v)),
            "out_of_orderness": lambda v: window_kw.__setitem__(
                "out_of_orderness_ms", parse_duration(v)),
            "idle_timeout": lambda v: window_kw.__setitem__("idle_timeout_ms", parse_duration(v)),
            "allowed_lateness": lambda v: window_kw.__setitem__(
                "allowed_lateness_ms", parse_duration(v)),
            "top_k": lambda v: window_kw.__setitem__("top_k", int(v)),
            "flush_interval": lambda v: top_kw.__setitem__("flush_interval_ms", parse_duration(v)),
            "snapshot_grace": lambda v: top_kw.__setitem__("snapshot_grace_ms", parse_duration(v)),
            "output": lambda v: top_kw.__setitem__("output", str(v)),
            "buckets": lambda v: top_kw.__setitem__("buckets", int(v)),
            "source": lambda v: top_kw.__setitem__("source", str(v)),
        }
        for key, value in opts.items():
            handler = handlers.get(key)
            if handler is None:
                if "." in key:  # namespaced adapter settings (kafka.*, s3.*) are read elsewhere
                    continue
                raise ConfigError(
                    f"unknown option {PREFIX}{key}; known options: "
                    + ", ".join(PREFIX + k for k in sorted(handlers))
                )
            try:
                handler(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"option {PREFIX}{key}={value!r} is malformed: {exc}") from exc
        return cls(
            contract=EventContract(**contract_kw),
            windows=WindowSettings(**window_kw),
            **top_kw,
        )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)
