"""The event contract: raw bytes in, a typed Event or a Rejected with a machine-readable reason.

Accepted JSON object: ``type`` (one of the configured types), ``forum`` (non-empty string),
``thread`` (string or integer id, normalised to a string), ``ts`` (epoch milliseconds as an
integer, or an ISO-8601 string with a zone), optional ``id`` and ``user`` (string or integer).
Unknown fields are ignored. ``parse_event`` never raises for any input bytes.

Reasons: ``too_large``, ``bad_utf8``, ``bad_json``, ``not_object``, ``missing:<field>``,
``bad_type:<field>``, ``bad_value:<field>``, ``ts_out_of_range``; the engine adds ``too_late``.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import orjson

from .settings import EventContract

REASONS_FIXED = ("too_large", "bad_utf8", "bad_json", "not_object", "ts_out_of_range", "too_late")
FIELDS = ("type", "forum", "thread", "ts", "id", "user")


class Event(NamedTuple):
    type: str
    forum: str
    thread: str
    ts_ms: int
    id: str | None = None
    user: str | None = None

    def to_json(self) -> bytes:
        doc = {"type": self.type, "forum": self.forum, "thread": self.thread, "ts": self.ts_ms}
        if self.id is not None:
            doc["id"] = self.id
        if self.user is not None:
            doc["user"] = self.user
        return orjson.dumps(doc)


class Rejected(NamedTuple):
    reason: str
    detail: str


def parse_event(raw: bytes, contract: EventContract) -> Event | Rejected:
    """Validate one raw message. Returns Event or Rejected; never raises."""
    if len(raw) > contract.max_bytes:
        return Rejected("too_large", f"{len(raw)} bytes > limit {contract.max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _classify_decode_error(raw, exc)
    if type(doc) is not dict:
        return Rejected("not_object", f"JSON {type(doc).__name__}, expected an object")
    return event_from_dict(doc, contract)


def event_from_dict(doc: dict, contract: EventContract) -> Event | Rejected:
    """Validate an already-decoded JSON object."""
    kind = doc.get("type")
    if type(kind) is not str:
        return _missing_or_type("type", kind)
    if kind not in contract.types:
        return Rejected("bad_value:type", f"type {kind[:64]!r} not in {sorted(contract.types)}")
    forum = doc.get("forum")
    if type(forum) is not str:
        return _missing_or_type("forum", forum)
    if not forum or len(forum) > contract.max_forum_chars:
        return Rejected("bad_value:forum", f"forum must be 1..{contract.max_forum_chars} chars")
    thread = _id_field(doc.get("thread"), "thread", contract.max_thread_chars, required=True)
    if type(thread) is Rejected:
        return thread
    ts = _timestamp(doc.get("ts"), contract)
    if type(ts) is Rejected:
        return ts
    event_id = _id_field(doc.get("id"), "id", contract.max_id_chars, required=False)
    if type(event_id) is Rejected:
        return event_id
    user = _id_field(doc.get("user"), "user", contract.max_id_chars, required=False)
    if type(user) is Rejected:
        return user
    return Event(kind, forum, thread, ts, event_id, user)


def _classify_decode_error(raw: bytes, exc: Exception) -> Rejected:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return Rejected("bad_utf8", f"invalid UTF-8 at byte {err.start}")
    return Rejected("bad_json", str(exc)[:200])


def _missing_or_type(name: str, value: object) -> Rejected:
    if value is None:
        return Rejected(f"missing:{name}", f"field {name!r} is required")
    return Rejected(f"bad_type:{name}", f"field {name!r} is {type(value).__name__}")


def _id_field(value: object, name: str, limit: int, required: bool) -> str | None | Rejected:
    kind = type(value)
    if kind is str:
        if not value or len(value) > limit:
            return Rejected(f"bad_value:{name}", f"{name} must be 1..{limit} chars")
        return value
    if kind is int:
        text = str(value)  # normalised ints obey the same length limit as strings
        if len(text) > limit:
            return Rejected(f"bad_value:{name}", f"{name} must be 1..{limit} chars")
        return text
    if value is None and not required:
        return None
    return _missing_or_type(name, value)


def _timestamp(value: object, contract: EventContract) -> int | Rejected:
    kind = type(value)
    if kind is int:
        ts = value
    elif kind is str:
        ts = parse_iso_ms(value)
        if ts is None:
            return Rejected("bad_value:ts", "ts string must be ISO-8601 with a zone, e.g. "
                            "2026-05-01T12:00:00Z")
    else:
        return _missing_or_type("ts", value)
    if not contract.min_ts_ms <= ts < contract.max_ts_ms:
        return Rejected("ts_out_of_range", f"ts {ts} ms outside accepted range")
    return ts


def parse_iso_ms(text: str) -> int | None:
    """ISO-8601 with a zone -> epoch ms (floored); None when unparsable or without a zone."""
    if len(text) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    offset = parsed.utcoffset()
    if offset is None:
        return None
    try:
        delta = parsed.replace(tzinfo=None) - offset - _EPOCH
    except OverflowError:
        return None
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1)
