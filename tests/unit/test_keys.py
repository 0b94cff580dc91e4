import re

import pytest

from forumstats import keys
from forumstats.errors import ConfigError

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_window_key_layout():
    key = keys.window_key("thread_counts", 60_000, T0 + 13 * 3_600_000 + 5 * 60_000, 3)
    assert key == ("thread_counts/window=1m/date=2026-01-01/hour=13/"
                   "thread_counts-1m-20260101T1305Z-part0003.parquet")


def test_daily_and_hourly_keys_are_partitioned_by_their_start():
    assert keys.window_key("forum_counts", 86_400_000, T0, 0).startswith(
        "forum_counts/window=1d/date=2026-01-01/hour=00/")
    assert keys.window_key("forum_counts", 3_600_000, T0 + 7_200_000, 0).startswith(
        "forum_counts/window=1h/date=2026-01-01/hour=02/")


def test_same_window_same_task_same_key_so_rewrites_replace():
    a = keys.window_key("thread_counts", 60_000, T0 + 60_000, 1)
    assert a == keys.window_key("thread_counts", 60_000, T0 + 60_000, 1)
    assert a != keys.window_key("thread_counts", 60_000, T0 + 120_000, 1)
    assert a != keys.window_key("thread_counts", 60_000, T0 + 60_000, 2)


@pytest.mark.parametrize("source", ["../x", "a/b", "%2F", "a\x00b", "x" * 301, "forüm", ""])
def test_hostile_source_names_cannot_shape_dead_letter_keys(source):
    with pytest.raises(ConfigError):
        keys.dead_letters_key(T0, source, 0, 1, "spout")
    with pytest.raises(ConfigError):
        keys.dead_letters_key(T0, "kafka-0", 0, 1, source)


def test_keys_use_only_safe_characters():
    safe = re.compile(r"^[A-Za-z0-9_=./-]+$")
    for key in (keys.window_key("thread_counts", 60_000, T0, 0),
                keys.dead_letters_key(T0, "events-3", 5, 9, "late2"),
                keys.snapshot_key("totals", T0, 4, 0)):
        assert safe.match(key) and ".." not in key and not key.startswith("/")


def test_unknown_dataset_rejected():
    with pytest.raises(ConfigError, match="unknown dataset"):
        keys.window_key("../etc", 60_000, T0, 0)


def test_long_kafka_topic_names_are_shortened_but_stay_distinct():
    a = keys.dead_letters_key(T0, "t" * 200 + "-0", 0, 9, "spout")
    b = keys.dead_letters_key(T0, "t" * 200 + "-1", 0, 9, "spout")
    assert a != b and len(a.rsplit("/", 1)[-1]) < 120
