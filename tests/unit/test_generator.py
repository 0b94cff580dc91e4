"""The seeded traffic generator: determinism, contract conformance and traffic shape."""

from __future__ import annotations

import statistics
from collections import Counter

import orjson
import pytest

from forumstats.events import Event, Rejected, parse_event
from forumstats.generator import generate
from forumstats.settings import EventContract

C = EventContract()
N = 100_000
START = 1_767_225_600_000


def parse_all(messages: list[bytes]) -> list[Event | Rejected]:
    return [parse_event(m, C) for m in messages]


@pytest.fixture(scope="module")
def default_messages() -> list[bytes]:
    return list(generate(N))


@pytest.fixture(scope="module")
def clean_events() -> list[Event]:
    """A stream without malformed messages, every one parsed."""
    results = parse_all(list(generate(N, seed=3, malformed_fraction=0.0)))
    rejected = [r for r in results if type(r) is not Event]
    assert not rejected, rejected[:5]
    return results


def test_same_seed_same_bytes() -> None:
    assert list(generate(20_000, seed=11)) == list(generate(20_000, seed=11))
    kwargs = dict(forums=7, threads_per_forum=3, users=5, disorder_fraction=0.5,
                  malformed_fraction=0.2, events_per_second=10.0)
    assert list(generate(5_000, seed=1, **kwargs)) == list(generate(5_000, seed=1, **kwargs))


def test_different_seeds_differ() -> None:
    a, b = list(generate(1_000, seed=1)), list(generate(1_000, seed=2))
    assert a != b
    assert sum(x == y for x, y in zip(a, b, strict=True)) < 100


def test_count_and_shape_of_messages(default_messages: list[bytes]) -> None:
    assert len(default_messages) == N
    assert all(type(m) is bytes for m in default_messages)
    # One message a line when written as NDJSON: no newline anywhere, malformed ones included.
    assert not any(b"\n" in m or b"\r" in m for m in default_messages)
    assert not any(b"\n" in m for m in generate(3_000, malformed_fraction=1.0))
    assert list(generate(0)) == []
    assert len(list(generate(1))) == 1


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_events=-1), dict(events_per_second=0), dict(forums=0), dict(threads_per_forum=0),
     dict(users=0), dict(disorder_fraction=1.5), dict(malformed_fraction=-0.1),
     dict(max_disorder_ms=0)],
)
def test_bad_arguments_fail_eagerly(kwargs: dict) -> None:
    kwargs = {"n_events": 10, **kwargs}
    with pytest.raises(ValueError):
        generate(**kwargs)  # not even iterated


def test_malformed_fraction_close_to_requested(default_messages: list[bytes]) -> None:
    rejected = sum(type(r) is Rejected for r in parse_all(default_messages))
    # Default 0.2 %: expect 200 of 100k, sd ~14.
    assert 130 <= rejected <= 280, rejected


def test_larger_malformed_fraction_close_to_requested() -> None:
    results = parse_all(list(generate(20_000, seed=5, malformed_fraction=0.05)))
    rejected = sum(type(r) is Rejected for r in results)
    assert 850 <= rejected <= 1150, rejected  # expect 1000, sd ~31


def test_every_well_formed_message_parses(clean_events: list[Event]) -> None:
    assert len(clean_events) == N
    assert all(C.min_ts_ms <= e.ts_ms < C.max_ts_ms for e in clean_events)


def test_malformed_messages_are_varied_and_all_rejected() -> None:
    messages = list(generate(3_000, seed=9, malformed_fraction=1.0))
    results = parse_all(messages)
    assert all(type(r) is Rejected for r in results)
    reasons = Counter(r.reason for r in results)
    expected = {"too_large", "bad_utf8", "bad_json", "not_object", "missing:forum",
                "bad_type:ts", "bad_value:ts", "bad_value:type", "ts_out_of_range",
                "bad_type:thread"}
    assert expected <= set(reasons), reasons
    assert max(reasons.values()) < len(messages) / 3, reasons


def test_out_of_order_fraction_and_bound(clean_events: list[Event]) -> None:
    late = 0
    running_max = clean_events[0].ts_ms
    for event in clean_events:
        if event.ts_ms < running_max:
            late += 1
            assert event.ts_ms >= running_max - 90_000
        running_max = max(running_max, event.ts_ms)
    assert 0.025 <= late / len(clean_events) <= 0.035, late


@pytest.mark.parametrize(("fraction", "bound"), [(0.2, 500), (0.01, 5_000)])
def test_disorder_parameters(fraction: float, bound: int) -> None:
    events = parse_all(list(generate(20_000, seed=4, disorder_fraction=fraction,
                                     max_disorder_ms=bound, malformed_fraction=0.0)))
    late = 0
    oldest = 0
    running_max = events[0].ts_ms
    for event in events:
        if event.ts_ms < running_max:
            late += 1
            oldest = max(oldest, running_max - event.ts_ms)
        running_max = max(running_max, event.ts_ms)
    assert oldest <= bound
    assert abs(late / len(events) - fraction) < fraction * 0.25, late


def test_no_disorder_means_non_decreasing_event_time() -> None:
    events = parse_all(list(generate(20_000, disorder_fraction=0.0, malformed_fraction=0.0)))
    stamps = [e.ts_ms for e in events]
    assert stamps == sorted(stamps)
    assert stamps[0] == START


@pytest.mark.parametrize("rate", [2000.0, 100.0, 50_000.0])
def test_event_time_advances_at_the_requested_rate(rate: float) -> None:
    n = 20_000
    events = parse_all(list(generate(n, start_ms=START, events_per_second=rate,
                                     disorder_fraction=0.0, malformed_fraction=0.0)))
    span_ms = events[-1].ts_ms - START
    assert span_ms == pytest.approx(n / rate * 1000, rel=0.03)


def test_forum_popularity_is_skewed(clean_events: list[Event]) -> None:
    per_forum = Counter(e.forum for e in clean_events)
    assert len(per_forum) == 40
    counts = sorted(per_forum.values(), reverse=True)
    assert counts[0] >= 5 * statistics.median(counts)
    assert sum(counts[:5]) > sum(counts) / 2  # a few hot forums carry most traffic


def test_thread_popularity_is_skewed(clean_events: list[Event]) -> None:
    top_forum = Counter(e.forum for e in clean_events).most_common(1)[0][0]
    per_thread = Counter(e.thread for e in clean_events if e.forum == top_forum)
    counts = sorted(per_thread.values(), reverse=True)
    assert len(counts) > 100  # a long tail
    assert counts[0] >= 10 * statistics.median(counts)


def test_threads_belong_to_one_forum(clean_events: list[Event]) -> None:
    forums_of = {}
    for e in clean_events:
        assert forums_of.setdefault(e.thread, e.forum) == e.forum


def test_type_mix(clean_events: list[Event]) -> None:
    mix = Counter(e.type for e in clean_events)
    assert set(mix) == {"pageview", "vote", "comment", "reaction"}
    shares = {k: v / len(clean_events) for k, v in mix.items()}
    for kind, share in {"pageview": 0.70, "vote": 0.18, "comment": 0.08,
                        "reaction": 0.04}.items():
        assert shares[kind] == pytest.approx(share, abs=0.01), shares


def test_users_and_ids(clean_events: list[Event]) -> None:
    ids = [e.id for e in clean_events if e.id is not None]
    assert 0.8 < len(ids) / len(clean_events) < 0.95
    assert len(set(ids)) == len(ids)
    users = Counter(e.user for e in clean_events if e.user is not None)
    assert 0.8 < sum(users.values()) / len(clean_events) < 0.95
    assert len(users) > 5_000
    counts = sorted(users.values(), reverse=True)
    assert counts[0] >= 10 * statistics.median(counts)


def test_wire_format_variety() -> None:
    docs = [orjson.loads(m) for m in generate(20_000, seed=8, malformed_fraction=0.0)]
    ts_forms = Counter(type(d["ts"]).__name__ for d in docs)
    assert ts_forms["int"] > 0.9 * len(docs) and ts_forms["str"] > 0.02 * len(docs)
    iso = [d["ts"] for d in docs if type(d["ts"]) is str]
    assert any(t.endswith("Z") for t in iso)
    assert any(t[-6] == "+" for t in iso) and any(t[-6] == "-" for t in iso)
    thread_forms = Counter(type(d["thread"]).__name__ for d in docs)
    assert thread_forms["int"] > 0 and thread_forms["str"] > 0
    assert all(d["thread"].startswith("t-") for d in docs if type(d["thread"]) is str)
    user_forms = Counter(type(d["user"]).__name__ for d in docs if "user" in d)
    assert user_forms["int"] > 0 and user_forms["str"] > 0
    known = {"type", "forum", "thread", "ts", "id", "user"}
    with_extras = sum(bool(set(d) - known) for d in docs)
    assert 0.005 * len(docs) < with_extras < 0.05 * len(docs)
    assert any(not f.isascii() for f in {d["forum"] for d in docs})


def test_small_populations_are_respected() -> None:
    events = parse_all(list(generate(5_000, forums=3, threads_per_forum=2, users=4,
                                     malformed_fraction=0.0)))
    assert len({e.forum for e in events}) == 3
    assert len({e.thread for e in events}) == 6
    assert len({e.user for e in events if e.user is not None}) == 4
