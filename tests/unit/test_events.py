"""The event contract: table tests for every rejection reason plus hypothesis properties."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forumstats.events import (
    FIELDS,
    REASONS_FIXED,
    Event,
    Rejected,
    event_from_dict,
    parse_event,
    parse_iso_ms,
)
from forumstats.settings import DEFAULT_TYPES, EventContract

C = EventContract()
TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
BASE = {"type": "vote", "forum": "general", "thread": "t-1", "ts": TS}


def raw(**changes: object) -> bytes:
    """BASE with fields replaced; a value of ``...`` removes the field."""
    doc = {**BASE, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def reason(message: bytes, contract: EventContract = C) -> str:
    result = parse_event(message, contract)
    assert type(result) is Rejected, f"expected a rejection, got {result!r}"
    assert isinstance(result.detail, str)
    return result.reason


def accepted(message: bytes, contract: EventContract = C) -> Event:
    result = parse_event(message, contract)
    assert type(result) is Event, f"expected an Event, got {result!r}"
    return result


def documented(reason_: str) -> bool:
    if reason_ in REASONS_FIXED:
        return True
    prefix, sep, field = reason_.partition(":")
    return bool(sep) and prefix in ("missing", "bad_type", "bad_value") and field in FIELDS


# --------------------------------------------------------------------------- table tests


def test_happy_path_minimal() -> None:
    assert accepted(raw()) == Event("vote", "general", "t-1", TS, None, None)


def test_happy_path_full() -> None:
    event = accepted(raw(id="e1", user="u9"))
    assert event == Event("vote", "general", "t-1", TS, "e1", "u9")
    assert accepted(event.to_json()) == event


@pytest.mark.parametrize("kind", sorted(DEFAULT_TYPES))
def test_every_default_type_is_accepted(kind: str) -> None:
    assert accepted(raw(type=kind)).type == kind


def test_custom_types_follow_the_contract() -> None:
    contract = EventContract(types=frozenset({"click"}))
    assert accepted(raw(type="click"), contract).type == "click"
    assert reason(raw(type="vote"), contract) == "bad_value:type"


def test_too_large_boundary() -> None:
    small = EventContract(max_bytes=200)
    base = raw(pad="")
    fits = raw(pad="x" * (200 - len(base)))
    assert len(fits) == 200
    accepted(fits, small)
    assert reason(raw(pad="x" * (201 - len(base))), small) == "too_large"
    # Checked before decoding: an oversized non-JSON message is too_large, not bad_json.
    assert reason(b"\xff" * 201, small) == "too_large"
    assert reason(raw(pad="x" * 70_000)) == "too_large"


@pytest.mark.parametrize(
    "message",
    [
        b"\xff",
        b"\xc3\x28",
        b'{"type":"vote","forum":"caf\xe9","thread":"t","ts":1767225600000}',
        b'{"type":"vote","forum":"\xed\xa0\x80","thread":"t","ts":1767225600000}',  # surrogate
        b'{"type":"vote","forum":"\xf4\x90\x80\x80","thread":"t","ts":1767225600000}',
        b'{"type":"vote","forum":"f","thread":"t","ts":1767225600000,"x":"\xe2\x82"}',
        b"\xff{",
    ],
)
def test_bad_utf8(message: bytes) -> None:
    assert reason(message) == "bad_utf8"


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b" ",
        b"{",
        b'{"type":"vote"',
        b'{"type":"vote",}',
        b"{'type':'vote'}",
        b"nope",
        b'{"ts":NaN}',
        b'{"ts":Infinity}',
        b'{"a":1}{"b":2}',
        b'{"a":"\\ud800"}',  # lone surrogate escape
        b"\xef\xbb\xbf{}",  # BOM
        b"[" * 2000 + b"]" * 2000,  # nesting beyond the decoder's limit
    ],
)
def test_bad_json(message: bytes) -> None:
    assert reason(message) == "bad_json"


@pytest.mark.parametrize(
    "message", [b"[]", b"[{}]", b"1", b"-1.5", b'"x"', b"null", b"true", b"false"]
)
def test_not_object(message: bytes) -> None:
    assert reason(message) == "not_object"


@pytest.mark.parametrize("field", ["type", "forum", "thread", "ts"])
def test_missing_required_field(field: str) -> None:
    assert reason(raw(**{field: ...})) == f"missing:{field}"
    assert reason(raw(**{field: None})) == f"missing:{field}"


def test_missing_checked_in_field_order() -> None:
    assert reason(b"{}") == "missing:type"
    assert reason(raw(type=..., forum=...)) == "missing:type"
    assert reason(raw(forum=..., ts=...)) == "missing:forum"


@pytest.mark.parametrize("field", ["id", "user"])
def test_optional_fields_may_be_absent_or_null(field: str) -> None:
    assert getattr(accepted(raw(**{field: ...})), field) is None
    assert getattr(accepted(raw(**{field: None})), field) is None


BAD_TYPES = [
    ("type", 1), ("type", True), ("type", ["vote"]), ("type", {"v": 1}), ("type", 1.5),
    ("forum", 7), ("forum", False), ("forum", ["general"]), ("forum", {}), ("forum", 0.0),
    ("thread", 1.5), ("thread", True), ("thread", False), ("thread", []), ("thread", {"id": 1}),
    ("thread", 3.0),
    ("ts", 1.5), ("ts", float(TS)), ("ts", True), ("ts", False), ("ts", [TS]), ("ts", {}),
    ("id", 1.5), ("id", True), ("id", []), ("id", {}),
    ("user", 2.5), ("user", False), ("user", ["u"]), ("user", {"u": 1}),
]


@pytest.mark.parametrize(("field", "value"), BAD_TYPES)
def test_bad_type(field: str, value: object) -> None:
    assert reason(raw(**{field: value})) == f"bad_type:{field}"


@pytest.mark.parametrize("field", ["ts", "thread", "id", "user"])
@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_integers(field: str, value: bool) -> None:
    assert reason(raw(**{field: value})) == f"bad_type:{field}"


BAD_VALUES = [
    ("type", "click"), ("type", ""), ("type", "Vote"), ("type", "vote "), ("type", "x" * 10_000),
    ("forum", ""), ("forum", "f" * 257), ("forum", "é" * 257),
    ("thread", ""), ("thread", "t" * 257),
    ("ts", ""), ("ts", "yesterday"), ("ts", str(TS)), ("ts", "2026-01-01"),
    ("ts", "2026-01-01T00:00:00"), ("ts", "2026-01-01T00:00:00.123"), ("ts", "2026-13-01T00:00Z"),
    ("ts", "2026-01-01T00:00:00Z" + " " * 60), ("ts", "x" * 10_000),
    ("id", ""), ("id", "i" * 257),
    ("user", ""), ("user", "u" * 257),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_bad_value(field: str, value: object) -> None:
    assert reason(raw(**{field: value})) == f"bad_value:{field}"


@pytest.mark.parametrize(("field", "limit"), [("forum", 256), ("thread", 256), ("id", 256),
                                              ("user", 256)])
def test_length_limits_are_inclusive_and_in_characters(field: str, limit: int) -> None:
    assert getattr(accepted(raw(**{field: "é" * limit})), field) == "é" * limit
    assert getattr(accepted(raw(**{field: "x"})), field) == "x"


def test_length_limits_follow_the_contract() -> None:
    contract = EventContract(max_forum_chars=3, max_thread_chars=4, max_id_chars=2)
    accepted(raw(forum="abc", thread="abcd", id="ab", user="cd"), contract)
    assert reason(raw(forum="abcd"), contract) == "bad_value:forum"
    assert reason(raw(forum="f", thread="abcde"), contract) == "bad_value:thread"
    assert reason(raw(forum="f", thread="t", id="abc"), contract) == "bad_value:id"
    assert reason(raw(forum="f", thread="t", user="abc"), contract) == "bad_value:user"


def test_length_limits_apply_to_normalised_ints() -> None:
    contract = EventContract(max_thread_chars=4, max_id_chars=2)
    assert accepted(raw(thread=1234, id=12, user=-1), contract).thread == "1234"
    assert reason(raw(thread=12345), contract) == "bad_value:thread"
    assert reason(raw(thread=-1234), contract) == "bad_value:thread"
    assert reason(raw(id=123), contract) == "bad_value:id"
    assert reason(raw(user=100), contract) == "bad_value:user"
    # Decoded elsewhere (no 64-bit cap): a 300-digit id is too long for the default limit.
    assert event_from_dict({**BASE, "thread": 10**300}, C).reason == "bad_value:thread"


@pytest.mark.parametrize(
    "ts",
    [0, -1, 946_684_800_000 - 1, 4_102_444_800_000, 2**63 - 1, -(2**63), 2**64 - 1,
     "1999-12-31T23:59:59.999Z", "2100-01-01T00:00:00Z", "2099-12-31T23:00:00-01:00",
     "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"],
)
def test_ts_out_of_range(ts: object) -> None:
    assert reason(raw(ts=ts)) == "ts_out_of_range"


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (946_684_800_000, 946_684_800_000),
        (4_102_444_800_000 - 1, 4_102_444_800_000 - 1),
        ("2000-01-01T00:00:00Z", 946_684_800_000),
        ("2099-12-31T23:59:59.999Z", 4_102_444_800_000 - 1),
        ("2000-01-01T00:00:00-01:00", 946_684_800_000 + 3_600_000),
    ],
)
def test_ts_range_bounds_inclusive_exclusive(ts: object, expected: int) -> None:
    assert accepted(raw(ts=ts)).ts_ms == expected


def test_ts_range_follows_the_contract() -> None:
    contract = EventContract(min_ts_ms=1000, max_ts_ms=2000)
    assert accepted(raw(ts=1000), contract).ts_ms == 1000
    assert reason(raw(ts=999), contract) == "ts_out_of_range"
    assert reason(raw(ts=2000), contract) == "ts_out_of_range"
    assert reason(raw(ts="1970-01-01T00:00:02Z"), contract) == "ts_out_of_range"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(123, "123"), (0, "0"), (-5, "-5"), (2**63 - 1, str(2**63 - 1)), (2**64 - 1, str(2**64 - 1)),
     ("123", "123"), ("007", "007"), ("t-123", "t-123")],
)
def test_thread_ints_normalised_to_strings(value: object, expected: str) -> None:
    event = accepted(raw(thread=value))
    assert event.thread == expected
    assert type(event.thread) is str


def test_int_id_and_user_normalised_to_strings() -> None:
    event = accepted(raw(id=42, user=7))
    assert (event.id, event.user) == ("42", "7")


def test_unknown_fields_are_ignored() -> None:
    message = raw(
        extra="x", nested={"type": "bogus", "ts": "never"}, list=[1, None, True], n=None,
        Type="BAD", FORUM=1, ts_ms="ignored", **{"": 0, "é": 1.5},
    )
    assert accepted(message) == accepted(raw())


def test_duplicate_keys_last_wins() -> None:
    message = b'{"type":"click","type":"vote","forum":"f","thread":"t","ts":1767225600000}'
    assert accepted(message).type == "vote"


def test_whitespace_and_key_order_do_not_matter() -> None:
    message = b'\n { "ts" : 1767225600000 ,\t"thread":1, "forum":"f","type":"comment" } \r\n'
    assert accepted(message) == Event("comment", "f", "1", TS)


def test_non_ascii_and_escapes_round_trip() -> None:
    message = raw(forum="日本語 \"quoted\" \\ \n \u2028 😀", thread="ü", user="ñ")
    event = accepted(message)
    assert event.forum == "日本語 \"quoted\" \\ \n \u2028 😀"
    assert accepted(event.to_json()) == event


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-01-01T00:00:00Z", TS),
        ("2026-01-01T00:00:00+00:00", TS),
        ("2026-01-01T00:00:00-00:00", TS),
        ("2026-01-01T01:00:00+01:00", TS),
        ("2026-01-01T05:30:00+05:30", TS),
        ("2026-01-01T14:00:00+14:00", TS),
        ("2025-12-31T19:00:00-05:00", TS),
        ("2025-12-31T10:00:00-14:00", TS),
        ("2025-12-31T20:15:00-03:45", TS),
        ("2026-01-01T00:00:00.5Z", TS + 500),
        ("2026-01-01T00:00:00.123Z", TS + 123),
        ("2026-01-01T00:00:00.123+02:00", TS + 123 - 7_200_000),
        ("2026-01-01T00:00:00.123456Z", TS + 123),  # floored to the millisecond
        ("2026-01-01T00:00:00.999999-01:30", TS + 999 + 5_400_000),
        ("2026-01-01T00:00:00.000Z", TS),
        ("2026-01-01 00:00:00Z", TS),
    ],
)
def test_iso_timestamps(ts: str, expected: int) -> None:
    assert accepted(raw(ts=ts)).ts_ms == expected
    assert parse_iso_ms(ts) == expected


@pytest.mark.parametrize(
    "text",
    ["2026-01-01T00:00:00", "2026-01-01T00:00:00.123", "2026-01-01 00:00", "2026-01-01", "",
     "2026-01-01T00:00:00+25:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
     "2026-01-01T00:00:00Z" + "0" * 60, "now", "\x00"],
)
def test_naive_or_unparsable_iso_is_none(text: str) -> None:
    assert parse_iso_ms(text) is None


def test_iso_floors_before_the_epoch() -> None:
    assert parse_iso_ms("1969-12-31T23:59:59.9995Z") == -1
    assert parse_iso_ms("1969-12-31T23:59:59.001Z") == -999


def test_event_from_dict_matches_parse_event() -> None:
    assert event_from_dict(dict(BASE), C) == accepted(raw())
    assert event_from_dict({}, C).reason == "missing:type"


def test_to_json_omits_absent_optionals() -> None:
    assert orjson.loads(Event("vote", "f", "t", TS).to_json()) == {
        "type": "vote", "forum": "f", "thread": "t", "ts": TS,
    }


# --------------------------------------------------------------------------- properties

MIN_TS, MAX_TS = C.min_ts_ms, C.max_ts_ms
ids = st.text(min_size=1, max_size=C.max_id_chars)
i64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson reads as int

valid_events = st.builds(
    Event,
    type=st.sampled_from(sorted(C.types)),
    forum=st.text(min_size=1, max_size=C.max_forum_chars),
    thread=st.text(min_size=1, max_size=C.max_thread_chars),
    ts_ms=st.integers(min_value=MIN_TS, max_value=MAX_TS - 1),
    id=st.none() | ids,
    user=st.none() | ids,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=6),
    max_leaves=20,
)
extra_fields = st.dictionaries(
    st.text(max_size=10).filter(lambda k: k not in FIELDS), json_values, max_size=4
)


def dump(doc: object, how: str) -> bytes:
    if how == "orjson":
        try:
            return orjson.dumps(doc)
        except TypeError:  # an extra field holds an integer beyond 64 bits
            return json.dumps(doc).encode()
    if how == "json_ascii":
        return json.dumps(doc).encode()
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


@given(valid_events)
def test_to_json_round_trips(event: Event) -> None:
    assert parse_event(event.to_json(), C) == event


@given(
    valid_events,
    extra_fields,
    st.sampled_from(["orjson", "json_ascii", "json_pretty"]),
    st.none() | i64,
    st.booleans(),
    st.data(),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_plain_dicts_round_trip(
    event: Event, extras: dict, how: str, int_thread: int | None, int_ids: bool, data: st.DataObject
) -> None:
    doc = {**extras, "type": event.type, "forum": event.forum, "thread": event.thread,
           "ts": event.ts_ms}
    expected = event
    if int_thread is not None:
        doc["thread"] = int_thread
        expected = expected._replace(thread=str(int_thread))
    for name in ("id", "user"):
        value = getattr(event, name)
        if value is None:
            if data.draw(st.booleans(), label=f"explicit null {name}"):
                doc[name] = None
        elif int_ids:
            number = data.draw(i64, label=name)
            doc[name] = number
            expected = expected._replace(**{name: str(number)})
        else:
            doc[name] = value
    # Key order must not matter either.
    keys = data.draw(st.permutations(list(doc)), label="key order")
    doc = {k: doc[k] for k in keys}
    assert parse_event(dump(doc, how), C) == expected


def check_never_raises(message: bytes, contract: EventContract = C) -> Event | Rejected:
    result = parse_event(message, contract)
    assert type(result) in (Event, Rejected)
    if type(result) is Rejected:
        assert documented(result.reason), result
        assert result.reason != "too_late"  # only the engine says that
        assert isinstance(result.detail, str)
    else:
        assert all(type(v) is str for v in (result.type, result.forum, result.thread))
        assert type(result.ts_ms) is int
        assert C.min_ts_ms <= result.ts_ms < C.max_ts_ms
        assert result.id is None or type(result.id) is str
        assert result.user is None or type(result.user) is str
    return result


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(message: bytes) -> None:
    check_never_raises(message)
    check_never_raises(message, EventContract(max_bytes=16))


@given(json_values, st.sampled_from(["orjson", "json_pretty"]))
def test_arbitrary_json_never_raises(value: object, how: str) -> None:
    check_never_raises(dump(value, how))


@given(
    valid_events,
    st.sampled_from(FIELDS),
    st.one_of(st.just(...), json_values),
)
def test_one_bad_field_is_blamed_on_that_field(
    event: Event, field: str, value: object
) -> None:
    doc = orjson.loads(event.to_json())
    if value is ...:
        doc.pop(field, None)
    else:
        doc[field] = value
    result = check_never_raises(dump(doc, "orjson"))
    if type(result) is Rejected:
        blamed = result.reason.partition(":")[2] or ("ts" if result.reason.startswith("ts") else "")
        assert blamed == field, result


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_bytes_spliced_into_valid_messages_never_raise(prefix: bytes, suffix: bytes) -> None:
    message = raw()
    cut = len(prefix) % len(message)
    check_never_raises(message[:cut] + prefix + message[cut:] + suffix)


MS = timedelta(milliseconds=1)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iso_renderings(ts_ms: int, offset_minutes: int) -> list[str]:
    """ISO-8601 strings for ts_ms as seen in a zone, rendered by the standard library."""
    zone = timezone(timedelta(minutes=offset_minutes))
    local = (UNIX_EPOCH + ts_ms * MS).astimezone(zone)
    forms = [local.isoformat(timespec="milliseconds"), local.isoformat(timespec="microseconds"),
             local.isoformat()]
    if ts_ms % 1000 == 0:
        forms.append(local.isoformat(timespec="seconds"))
    if offset_minutes == 0:
        forms += [f.replace("+00:00", "Z") for f in forms]
    return forms


@given(
    st.integers(min_value=MIN_TS, max_value=MAX_TS - 1)
    | st.integers(min_value=MIN_TS // 1000, max_value=MAX_TS // 1000 - 1).map(lambda s: s * 1000),
    st.integers(min_value=-14 * 60, max_value=14 * 60) | st.sampled_from([0, 60, -300, 330, 345]),
)
def test_timestamp_forms_agree_across_zones(ts_ms: int, offset_minutes: int) -> None:
    forms = iso_renderings(ts_ms, offset_minutes)
    if offset_minutes == 0:
        assert any(f.endswith("Z") for f in forms)
    assert accepted(raw(ts=ts_ms)).ts_ms == ts_ms
    for form in forms:
        assert accepted(raw(ts=form)).ts_ms == ts_ms, form
