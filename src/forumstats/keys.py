"""Object keys of the output layout. The writer and every reader use this module only.

Layout (relative to the output prefix)::

    {dataset}/window={1m|1h|1d}/date=YYYY-MM-DD/hour=HH/{dataset}-{window}-{YYYYMMDDTHHMMZ}-part{NNNN}.parquet
    dead_letters/date=YYYY-MM-DD/hour=HH/dead_letters-{source}-{first}-{last}-{origin}.parquet
    latest/manifest.json and latest/snapshots/...

``part`` is the key bucket (forums are spread over buckets by a stable hash; each bucket is
counted and written by exactly one task), so each (window, forum) lives in one object.
Every part of a key comes from time or configuration (window size, bucket), never from an
event field, so no forum or thread name can shape a path.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone

from .durations import duration_label
from .errors import ConfigError

WINDOW_DATASETS = ("thread_counts", "forum_counts", "thread_users", "forum_users")
DEAD_LETTERS = "dead_letters"
LATEST_PREFIX = "latest/"
MANIFEST_KEY = "latest/manifest.json"
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_LONG_SAFE = re.compile(r"^[A-Za-z0-9_.-]{65,300}$")


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def partition_path(ms: int) -> str:
    moment = _utc(ms)
    return f"date={moment:%Y-%m-%d}/hour={moment:%H}"


def dataset_prefix(dataset: str, size_ms: int | None = None) -> str:
    """Prefix of a whole dataset (``size_ms`` None for dead letters)."""
    if dataset == DEAD_LETTERS:
        return f"{DEAD_LETTERS}/"
    _check_dataset(dataset)
    return f"{dataset}/window={duration_label(size_ms)}/"


def window_key(dataset: str, size_ms: int, start_ms: int, part: int) -> str:
    """The one object holding ``dataset`` rows of one window for one key bucket (``part``)."""
    label = duration_label(size_ms)
    stamp = f"{_utc(start_ms):%Y%m%dT%H%MZ}"
    return (f"{dataset_prefix(dataset, size_ms)}{partition_path(start_ms)}/"
            f"{dataset}-{label}-{stamp}-part{part:04d}.parquet")


def dead_letters_key(source_ms: int, source: str, first: int, last: int, origin: str) -> str:
    """Dead letters of one input range [first, last] found by one ``origin`` (the spout, or a
    counting bucket for too-late events). ``source_ms`` must not change on a replay (the
    source's own record timestamp), so a replay rewrites the same object."""
    source, origin = _key_name(source), _key_name(origin)
    return (f"{DEAD_LETTERS}/{partition_path(source_ms)}/"
            f"dead_letters-{source}-{first:012d}-{last:012d}-{origin}.parquet")


def _key_name(name: str) -> str:
    """A configured name (topic-partition, origin) as a key part. Kafka topic names may be up
    to 249 characters: long ones are shortened with a hash, so they stay distinct."""
    if _SAFE.match(name):
        return name
    if _LONG_SAFE.match(name):
        return f"{name[:40]}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    raise ConfigError(f"name {name!r} is not usable in a key: use letters, digits, "
                      "'_', '.', '-' only")


SNAPSHOTS_PREFIX = f"{LATEST_PREFIX}snapshots/"


def snapshot_key(kind: str, made_ms: int, sequence: int, task: int) -> str:
    """An immutable dashboard snapshot, named by when it was made and a sequence number."""
    if not _SAFE.match(kind):
        raise ConfigError(f"snapshot kind {kind!r} is not a safe name")
    return f"{SNAPSHOTS_PREFIX}{made_ms:013d}-{sequence:08d}-task{task:04d}/{kind}.json"


def snapshot_made_ms(key: str) -> int | None:
    """When the snapshot at ``key`` was made, or None for a key that is not a snapshot."""
    if not key.startswith(SNAPSHOTS_PREFIX):
        return None
    stamp = key[len(SNAPSHOTS_PREFIX):].split("-", 1)[0]
    return int(stamp) if stamp.isdigit() else None


def _check_dataset(dataset: str) -> None:
    if dataset not in WINDOW_DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; known: {', '.join(WINDOW_DATASETS)}")


def state_key(name: str, part: int) -> str:
    """Small bookkeeping objects of the writers (not a dataset; readers ignore ``_state/``)."""
    if not _SAFE.match(name):
        raise ConfigError(f"state name {name!r} is not a safe name")
    return f"_state/{name}-part{part:04d}.json"


def window_prefix(dataset: str, size_ms: int, start_ms: int) -> str:
    """Prefix holding the objects of windows of ``size_ms`` in the hour of ``start_ms``."""
    return f"{dataset_prefix(dataset, size_ms)}{partition_path(start_ms)}/"
