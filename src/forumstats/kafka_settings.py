"""Settings of the Kafka source (pure: no kafka import, no I/O).

Read from the ``forumstats.kafka.*`` options of config.json (``envs.<env>.options``), which a
Storm cluster also receives in the topology conf. Durations are written like the other
forumstats durations (``30s``, ``5m``) or as plain integers meaning milliseconds.

Options (``forumstats.kafka.`` + name, default in brackets):

- ``bootstrap_servers`` [127.0.0.1:9092]: comma-separated ``host:port`` list (or a JSON list).
- ``topics`` [forum-events]: topics to subscribe to. ``group_id`` [forumstats]: the group.
- ``first_poll`` [committed-else-earliest]: where a partition starts, see below.
- ``batch_size`` [500]: S; batches never cross a multiple of S (offsets).
- ``max_in_flight`` [1000]: batches handed out and not yet acked, over all partitions; the
  topology lowers it to what ``topology.max.spout.pending`` allows (one tuple per bucket and
  one for dead letters per batch).
- ``max_uncommitted`` [256]: per partition, batches handed out and not yet committed (bounds
  replays and the cut log).
- ``retry_backoff`` / ``retry_backoff_max`` [1s / 60s]: replay delay base*2^(n-1), capped.
- ``pacing_bound`` [5m]: event-time lead over the slowest live partition that pauses a
  partition; ``off`` disables pacing.
- ``idle_timeout`` [``forumstats.idle_timeout``]: a partition silent this long no longer
  counts as the slowest.
- ``tail_linger`` [500 ms]: how long a partial batch may wait for more records once caught up.
  Raised automatically to ``batch_hold / share`` (see ``batch_hold_ms`` below).
- ``batch_timeout`` [off]: fail batches not acked within this (Storm does it itself).
- ``cut_log`` [auto]: where tail cuts are stored: auto, metadata, topic, none (see
  ``forumstats.kafka_source``).
- ``session_timeout`` / ``heartbeat_interval`` / ``max_poll_interval`` / ``request_timeout``
  [10s / 3s / 5m / 30s]: consumer group timing.
- ``deployment_id`` [none]: identifies one deployment (Storm: the topology id), see below.

``first_poll``:

- ``committed-else-earliest`` / ``committed-else-latest``: resume from the group's committed
  offset; a partition without one starts at the log's beginning / end.
- ``earliest`` / ``latest``: ignore offsets committed by an *earlier deployment* and start at the
  beginning / end (deliberate reprocessing, like storm-kafka-client's EARLIEST/LATEST). The
  source writes ``deployment_id`` into its commit metadata; a partition whose committed offset
  carries the same id resumes from it, so restarts and rebalances inside one deployment never
  go back to the beginning. Without a ``deployment_id`` the reset happens once per partition
  per source object, which is only right for a single consumer: set it when running several.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .durations import parse_duration
from .errors import ConfigError

PREFIX = "forumstats.kafka."
CUT_LOG_MODES = ("auto", "metadata", "topic", "none")
FIRST_POLL = ("earliest", "latest", "committed-else-earliest", "committed-else-latest")
TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
DEPLOYMENT_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Kafka's broker default for offset.metadata.max.bytes is 4096; stay below it.
METADATA_MAX_BYTES = 4000


@dataclass(frozen=True)
class KafkaSourceSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    topics: tuple[str, ...] = ("forum-events",)
    group_id: str = "forumstats"
    first_poll: str = "committed-else-earliest"
    batch_size: int = 500
    max_in_flight: int = 1000
    max_uncommitted: int = 256
    backoff_base_ms: int = 1_000
    backoff_cap_ms: int = 60_000
    pacing_bound_ms: int | None = 300_000
    idle_timeout_ms: int = 30_000
    tail_linger_ms: int = 500
    # Not an option: set by the topology from the window settings (window + out-of-orderness
    # + flush). The counting tasks hold a batch about this long before it is acked, so the
    # tail linger is raised until one partition's share of in-flight batches spans it: a
    # steady tail cut into tiny batches would fill the cap long before any window could
    # close, and then only idleness would move the watermark.
    batch_hold_ms: int = 0
    batch_timeout_ms: int | None = None
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    deployment_id: str | None = None
    client_id: str = "forumstats"
    cut_log: str = "auto"
    metadata_max_bytes: int = METADATA_MAX_BYTES

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> ConfigError:
            return ConfigError(f"{PREFIX}{option}: {why}")

        if not self.bootstrap_servers.strip():
            raise bad("bootstrap_servers", "give at least one host:port")
        if not self.topics:
            raise bad("topics", "give at least one topic")
        for topic in self.topics:
            if not TOPIC_RE.fullmatch(topic) or topic in (".", ".."):
                raise bad("topics", f"{topic!r} is not a valid Kafka topic name "
                                    "(letters, digits, '.', '_', '-', at most 249)")
        if not self.group_id:
            raise bad("group_id", "must not be empty")
        if self.first_poll not in FIRST_POLL:
            raise bad("first_poll", f"{self.first_poll!r} is not one of {', '.join(FIRST_POLL)}")
        if self.batch_size < 1:
            raise bad("batch_size", "must be at least 1")
        if not 1 <= self.max_in_flight <= 10_000:
            raise bad("max_in_flight", "must be between 1 and 10000")
        if not 1 <= self.max_uncommitted <= 400:
            raise bad("max_uncommitted", "must be between 1 and 400 (it bounds the size of the "
                                         "cut log kept in Kafka commit metadata)")
        if self.backoff_base_ms < 1 or self.backoff_cap_ms < self.backoff_base_ms:
            raise bad("retry_backoff", "base must be positive and not above retry_backoff_max")
        if self.pacing_bound_ms is not None and self.pacing_bound_ms <= 0:
            raise bad("pacing_bound", "must be positive, or off")
        if self.idle_timeout_ms <= 0:
            raise bad("idle_timeout", "must be positive")
        if self.tail_linger_ms < 0:
            raise bad("tail_linger", "must not be negative")
        if self.batch_timeout_ms is not None and self.batch_timeout_ms <= 0:
            raise bad("batch_timeout", "must be positive, or off")
        if not 0 < self.heartbeat_interval_ms < self.session_timeout_ms:
            raise bad("heartbeat_interval", "must be positive and below session_timeout")
        if self.max_poll_interval_ms <= 0 or self.request_timeout_ms <= 0:
            raise bad("max_poll_interval", "timeouts must be positive")
        if self.deployment_id is not None and not DEPLOYMENT_RE.fullmatch(self.deployment_id):
            raise bad("deployment_id", "use 1-128 of letters, digits, '.', '_', ':', '-'")
        if self.cut_log not in CUT_LOG_MODES:
            raise bad("cut_log", f"{self.cut_log!r} is not one of {', '.join(CUT_LOG_MODES)}")
        if self.metadata_max_bytes < 64:
            raise bad("metadata_max_bytes", "must be at least 64")

    @property
    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    @property
    def auto_offset_reset(self) -> str:
        """kafka-python's ``auto_offset_reset`` matching the first-poll fallback."""
        return "latest" if self.first_poll.endswith("latest") else "earliest"

    @property
    def ignores_foreign_commits(self) -> bool:
        """True for ``earliest``/``latest``: commits of another deployment are not resumed."""
        return self.first_poll in ("earliest", "latest")

    def tail_linger_for(self, share: int) -> int:
        """How long a partial batch at the tail waits for more records when one partition may
        have ``share`` batches in flight: the configured linger, or longer if those batches
        would otherwise not span twice the time the counting tasks hold a batch (once is
        not enough: a batch straddling two windows is held until the later one closes)."""
        return max(self.tail_linger_ms, 2 * self.batch_hold_ms // max(1, share))

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **overrides: Any) -> KafkaSourceSettings:
        """Build from flat config options (``forumstats.kafka.*``); unknown kafka keys fail.

        ``forumstats.idle_timeout`` is used when ``forumstats.kafka.idle_timeout`` is absent.
        Keyword overrides (already in the dataclass's units) win over the options.
        """
        kw: dict[str, Any] = {}
        opts = {k[len(PREFIX):]: v for k, v in options.items() if k.startswith(PREFIX)}
        if "idle_timeout" not in opts and "forumstats.idle_timeout" in options:
            opts["idle_timeout"] = options["forumstats.idle_timeout"]
        handlers = {
            "bootstrap_servers": ("bootstrap_servers", _servers),
            "topics": ("topics", _topics),
            "group_id": ("group_id", str),
            "first_poll": ("first_poll", str),
            "batch_size": ("batch_size", _int),
            "max_in_flight": ("max_in_flight", _int),
            "max_uncommitted": ("max_uncommitted", _int),
            "retry_backoff": ("backoff_base_ms", _ms),
            "retry_backoff_max": ("backoff_cap_ms", _ms),
            "pacing_bound": ("pacing_bound_ms", _ms_or_off),
            "idle_timeout": ("idle_timeout_ms", _ms),
            "tail_linger": ("tail_linger_ms", _ms_or_zero),
            "batch_timeout": ("batch_timeout_ms", _ms_or_off),
            "session_timeout": ("session_timeout_ms", _ms),
            "heartbeat_interval": ("heartbeat_interval_ms", _ms),
            "max_poll_interval": ("max_poll_interval_ms", _ms),
            "request_timeout": ("request_timeout_ms", _ms),
            "deployment_id": ("deployment_id", lambda v: None if v in (None, "") else str(v)),
            "client_id": ("client_id", str),
            "cut_log": ("cut_log", str),
            "metadata_max_bytes": ("metadata_max_bytes", _int),
        }
        for key, value in opts.items():
            if key not in handlers:
                raise ConfigError(f"unknown option {PREFIX}{key}; known options: "
                                  + ", ".join(PREFIX + k for k in sorted(handlers)))
            attr, convert = handlers[key]
            try:
                kw[attr] = convert(value)
            except (TypeError, ValueError, ConfigError) as exc:
                raise ConfigError(f"option {PREFIX}{key}={value!r} is malformed: {exc}") from exc
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown KafkaSourceSettings fields: {sorted(unknown)}")
        kw.update(overrides)
        return cls(**kw)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError("expected an integer")
    return int(value)


def _ms(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected a duration")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    if text.endswith("ms") and text[:-2].isdigit():
        return int(text[:-2])
    return parse_duration(text)


def _ms_or_off(value: Any) -> int | None:
    if value is None or value in (0, "0", "off", "none", False):
        return None
    return _ms(value)


def _ms_or_zero(value: Any) -> int:
    return 0 if value in (0, "0", "off") else _ms(value)


def _servers(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _topics(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    return tuple(str(t) for t in value)
