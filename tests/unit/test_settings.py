import pytest

from forumstats.durations import duration_label, parse_duration
from forumstats.errors import ConfigError
from forumstats.settings import Settings


@pytest.mark.parametrize("text,ms", [("30s", 30_000), ("1m", 60_000), ("1h", 3_600_000),
                                     ("1d", 86_400_000), ("90m", 5_400_000)])
def test_durations_round_trip(text, ms):
    assert parse_duration(text) == ms
    assert parse_duration(duration_label(ms)) == ms


@pytest.mark.parametrize("bad", ["", "m", "0m", "-1m", "1w", "1.5m", "abc"])
def test_bad_durations_say_what_to_write(bad):
    with pytest.raises(ConfigError, match="s, m, h or d"):
        parse_duration(bad)


def test_options_build_frozen_settings():
    s = Settings.from_options({
        "forumstats.window": "5m", "forumstats.rollups": ["1h"],
        "forumstats.out_of_orderness": "10s", "forumstats.allowed_lateness": "2m",
        "forumstats.event_types": ["vote"], "forumstats.kafka.topics": ["x"],
        "topology.workers": 3,
    })
    assert s.windows.size_ms == 300_000
    assert s.windows.rollup_sizes_ms == (3_600_000,)
    assert s.windows.out_of_orderness_ms == 10_000
    assert s.windows.allowed_lateness_ms == 120_000
    assert s.contract.types == frozenset({"vote"})
    with pytest.raises(AttributeError):
        s.flush_interval_ms = 1  # frozen


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match="forumstats.windw"):
        Settings.from_options({"forumstats.windw": "1m"})


def test_rollup_must_be_multiple_of_window():
    with pytest.raises(ConfigError, match="multiple"):
        Settings.from_options({"forumstats.window": "7m", "forumstats.rollups": ["1h"]})


def test_repo_config_json_envs_are_valid():
    from forumstats.config import load_options

    for env in ("local", "prod"):
        Settings.from_options(load_options("config.json", env))
    with pytest.raises(ConfigError, match="no environment"):
        load_options("config.json", "staging")


def test_sub_minute_windows_are_refused_since_keys_name_minutes():
    with pytest.raises(ConfigError, match="whole number of minutes"):
        Settings.from_options({"forumstats.window": "30s"})


@pytest.mark.parametrize("linger, hold, share, want", [
    (500, 0, 16, 500),            # no hold known: the configured linger
    (500, 95_000, 16, 11_875),    # 16 batches per partition must span 2 x 95 s of holding
    (500, 95_000, 400, 500),      # a large share: batches as small as the linger allows
    (0, 95_000, 0, 190_000),      # no share at all counts as one batch
])
def test_the_tail_linger_grows_until_a_partitions_share_spans_the_hold(linger, hold, share,
                                                                      want):
    from forumstats.kafka_settings import KafkaSourceSettings

    settings = KafkaSourceSettings(tail_linger_ms=linger, batch_hold_ms=hold)
    assert settings.tail_linger_for(share) == want
