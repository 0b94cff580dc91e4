"""Seeded synthetic forum traffic: raw message bytes as they would sit in a Kafka topic.

Pure: no clock reads, no I/O, no global random state. The same arguments give the same bytes.

Traffic shape:

* forum, thread and user popularity are Zipf-like (a few hot ones, a long tail);
* type mix is roughly pageview 70 %, vote 18 %, comment 8 %, reaction 4 %;
* event time starts at ``start_ms`` and advances by a random gap averaging
  ``1000 / events_per_second`` ms, so in-order timestamps never decrease;
* ``disorder_fraction`` of events carry a timestamp 1..``max_disorder_ms`` ms older than the
  current event time (so never older than the running maximum minus ``max_disorder_ms``);
* ``ts`` is mostly epoch milliseconds, sometimes an ISO-8601 string in some zone (always exact
  to the millisecond); thread ids are ints for some threads and ``"t-<n>"`` strings for the
  others (each thread keeps its form); users are ``"u<n>"`` strings or, for some, ints;
  most events carry a unique ``id`` (``"e<seq>"``) and a user; a few carry unknown fields;
* ``malformed_fraction`` of messages are broken in varied ways (truncated JSON, non-UTF-8 bytes,
  a JSON array, a missing forum, a float or a naive ISO ts, an unknown type, a ts years away,
  an oversized payload, ...), each of which ``parse_event`` rejects under the default contract.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from itertools import accumulate

import orjson

TYPE_MIX = (("pageview", 0.70), ("vote", 0.18), ("comment", 0.08), ("reaction", 0.04))

_NAMED_FORUMS = (
    "general", "announcements", "help", "gaming", "programming", "music", "movies", "sports",
    "politics", "science", "café-talk", "日本語", "off-topic", "marketplace", "feedback",
)
# Zones seen on ISO timestamps: (minutes east of UTC, render "Z" for UTC).
_ZONES = ((0, True), (0, False), (60, False), (120, False), (330, False), (345, False),
          (540, False), (-300, False), (-480, False), (-210, False), (840, False), (-600, False))
_EXTRAS = (
    b',"client":"ios"', b',"client":"web","v":2', b',"ua":"Mozilla/5.0 (X11; Linux x86_64)"',
    b',"ref":"https://example.com/r?q=1&x=%20"', b',"tags":["a","b"]', b',"geo":{"cc":"DE"}',
    b',"session":null', b',"score":0.5', b',"debug":true', b',"lang":"fr-CA","t\\u00e9st":1',
)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def generate(
    n_events: int,
    seed: int = 7,
    start_ms: int = 1_767_225_600_000,
    events_per_second: float = 2000.0,
    forums: int = 40,
    threads_per_forum: int = 400,
    users: int = 20000,
    disorder_fraction: float = 0.03,
    max_disorder_ms: int = 90_000,
    malformed_fraction: float = 0.002,
) -> Iterator[bytes]:
    """Yield ``n_events`` raw messages (JSON bytes, no trailing newline), seeded and repeatable.

    Arguments are checked here, eagerly; the messages are produced lazily.
    """
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    if not events_per_second > 0:
        raise ValueError(f"events_per_second must be > 0, got {events_per_second}")
    for name, count in (("forums", forums), ("threads_per_forum", threads_per_forum),
                        ("users", users)):
        if count < 1:
            raise ValueError(f"{name} must be >= 1, got {count}")
    for name, fraction in (("disorder_fraction", disorder_fraction),
                           ("malformed_fraction", malformed_fraction)):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {fraction}")
    if disorder_fraction > 0 and max_disorder_ms < 1:
        raise ValueError(f"max_disorder_ms must be >= 1 when there is disorder, "
                         f"got {max_disorder_ms}")
    return _stream(
        n_events, random.Random(seed), int(start_ms), 1000.0 / events_per_second, forums,
        threads_per_forum, users, disorder_fraction, max_disorder_ms, malformed_fraction,
    )


def _zipf(count: int, exponent: float) -> list[float]:
    return [1.0 / (rank ** exponent) for rank in range(1, count + 1)]


def _bits_for(count: int, minimum: int, maximum: int, per_category: int = 16) -> int:
    """Table resolution: ``per_category`` times as many slots as categories, within bounds."""
    return max(minimum, min(maximum, (count * per_category - 1).bit_length()))


def _table(weights: Sequence[float], bits: int, values: Callable[[int], object] = int) -> list:
    """A 2**bits lookup table: a uniform slot holds ``values(i)`` with probability ~weights[i].

    Slots are split by rounding the cumulative weights, so every category with a weight of at
    least one slot appears; categories far below one slot may get none (and their values are
    never built).
    """
    size = 1 << bits
    total = sum(weights)
    table: list = []
    previous = 0
    for index, cumulative in enumerate(accumulate(weights)):
        boundary = round(cumulative / total * size)
        if boundary > previous:
            table.extend([values(index)] * (boundary - previous))
            previous = boundary
    if len(table) < size:  # only by float rounding; give the remainder to the last category
        table.extend([values(len(weights) - 1)] * (size - len(table)))
    return table


class _ThreadJson(dict):
    """Thread number -> its JSON value, built on first use: every third thread is an int."""

    def __missing__(self, number: int) -> bytes:
        text = b"%d" % number if number % 3 == 0 else b'"t-%d"' % number
        self[number] = text
        return text


def _user_json(index: int) -> bytes:
    """User rank -> its JSON field: ``"u<n>"`` strings, ints for every seventh user."""
    number = index + 1
    return b',"user":%d' % number if number % 7 == 0 else b',"user":"u%d"' % number


def _forum_names(count: int) -> list[str]:
    names = list(_NAMED_FORUMS[:count])
    names += [f"forum-{i:03d}" for i in range(len(names), count)]
    return names


def _iso(ts_ms: int, offset_minutes: int, zulu: bool) -> str:
    local = (_UNIX_EPOCH + timedelta(milliseconds=ts_ms)).astimezone(
        timezone(timedelta(minutes=offset_minutes)))
    text = local.isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if zulu else text


def _stream(
    n_events: int,
    rng: random.Random,
    start_ms: int,
    mean_gap_ms: float,
    forums: int,
    threads_per_forum: int,
    users: int,
    disorder_fraction: float,
    max_disorder_ms: int,
    malformed_fraction: float,
) -> Iterator[bytes]:
    kinds = [k for k, _ in TYPE_MIX]
    forum_names = _forum_names(forums)
    forum_weights = _zipf(forums, 1.1)
    # Lookup tables turn uniform random slots into a (forum, type) message head, a thread rank
    # and a user. A head is b'{"type":..,"forum":..,"thread":' (escaped once, here) with the
    # forum's first thread number and the forum and type indexes.
    combos = [(f, k) for f in range(forums) for k in range(len(kinds))]
    heads = [
        (b'{"type":"%s","forum":%s,"thread":' % (kinds[k].encode(), orjson.dumps(forum_names[f])),
         f * threads_per_forum + 1, f, k)
        for f, k in combos
    ]
    head_table = _table([forum_weights[f] * TYPE_MIX[k][1] for f, k in combos],
                        _bits_for(len(combos), 16, 22), heads.__getitem__)
    thread_table = _table(_zipf(threads_per_forum, 1.0), _bits_for(threads_per_forum, 12, 20))
    user_table = _table(_zipf(users, 0.8), _bits_for(users, 12, 22, 4), _user_json)
    thread_json = _ThreadJson()
    head_bits = (len(head_table) - 1).bit_length()
    head_mask = len(head_table) - 1
    thread_bits = (len(thread_table) - 1).bit_length()
    user_bits = (len(user_table) - 1).bit_length()

    # Per event, four draws of at most ~30 bits (Python's fast small ints):
    #   heads:  head slot | thread slot
    #   people: user slot | 3 bits "no user" (1/8) | 3 bits "no id" (1/8)
    #   time:   20 bits disorder | 10 bits gap (uniform 0..1023)
    #   shape:  20 bits malformed | 10 bits ISO ts (~5 %) or unknown fields (~2 %)
    pick_bits = head_bits + thread_bits
    people_bits = user_bits + 6
    disorder_cut = round(disorder_fraction * (1 << 20)) << 10
    malformed_cut = round(malformed_fraction * (1 << 20)) << 10
    iso_cut, extras_from = 51, 1024 - 20
    gap_unit = mean_gap_ms / 511.5  # mean gap_unit * 511.5 = mean_gap_ms
    getrandbits = rng.getrandbits
    randrange = rng.randrange
    n_zones, n_extras = len(_ZONES), len(_EXTRAS)
    clock = float(start_ms)

    for seq in range(n_events):
        picks = getrandbits(pick_bits)
        people = getrandbits(people_bits)
        timing = getrandbits(30)
        shape = getrandbits(30)
        clock += gap_unit * (timing & 0x3FF)
        ts = int(clock)
        if timing < disorder_cut:
            ts -= 1 + randrange(max_disorder_ms)
        head, number, forum, kind = head_table[picks & head_mask]
        number += thread_table[picks >> head_bits]
        if shape < malformed_cut:
            yield _malformed(rng, kinds[kind], forum_names[forum], number, ts)
            continue
        thread = thread_json[number]
        user = b"" if people & 0x38 == 0 else user_table[people >> 6]
        style = shape & 0x3FF
        if iso_cut <= style < extras_from:  # the common case
            if people & 7:
                yield b'%s%s,"ts":%d,"id":"e%d"%s}' % (head, thread, ts, seq, user)
            else:
                yield b'%s%s,"ts":%d%s}' % (head, thread, ts, user)
            continue
        if style < iso_cut:
            ts_json = b'"%s"' % _iso(ts, *_ZONES[randrange(n_zones)]).encode()
        else:
            ts_json = b"%d" % ts
            user += _EXTRAS[randrange(n_extras)]
        id_json = b',"id":"e%d"' % seq if people & 7 else b""
        yield b'%s%s,"ts":%s%s%s}' % (head, thread, ts_json, id_json, user)


# --------------------------------------------------------------------------- malformed messages


def _doc(kind: str, forum: str, thread: int, ts: int) -> dict:
    return {"type": kind, "forum": forum, "thread": f"t-{thread}", "ts": ts}


def _truncated(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    whole = orjson.dumps(_doc(kind, forum, thread, ts))
    return whole[:rng.randrange(1, len(whole))]


def _not_utf8(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    # A Latin-1 producer: "café" as b"caf\xe9" is not UTF-8.
    bad = rng.choice([b"caf\xe9", b"\xff\xfe", b"na\xefve", b"\xc3\x28"])
    return b'{"type":"%s","forum":"%s","thread":%d,"ts":%d}' % (kind.encode(), bad, thread, ts)


def _array(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    doc = _doc(kind, forum, thread, ts)
    return orjson.dumps([doc] * rng.randrange(0, 3))


def _missing_forum(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    doc = _doc(kind, forum, thread, ts)
    if rng.random() < 0.5:
        del doc["forum"]
    else:
        doc["forum"] = None
    return orjson.dumps(doc)


def _ts_wrong_type(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    doc = _doc(kind, forum, thread, ts)
    doc["ts"] = rng.choice([ts / 1000.0, float(ts), [ts], True])  # e.g. time.time() seconds
    return orjson.dumps(doc)


def _ts_naive(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    doc = _doc(kind, forum, thread, ts)
    doc["ts"] = _iso(ts, 0, False)[:-6]  # no zone
    return orjson.dumps(doc)


def _unknown_type(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    doc = _doc(kind, forum, thread, ts)
    doc["type"] = rng.choice(["click", "PageView", "share", "", "vote "])
    return orjson.dumps(doc)


def _ts_years_away(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    doc = _doc(kind, forum, thread, ts)
    # Seconds or microseconds sent as milliseconds, or a clock two centuries off.
    doc["ts"] = rng.choice([ts // 1000, ts * 1000, ts + 200 * 365 * 86_400_000])
    return orjson.dumps(doc)


def _oversized(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    doc = _doc(kind, forum, thread, ts)
    doc["body"] = "lorem ipsum " * (6_000 + rng.randrange(2_000))  # > 64 KiB
    return orjson.dumps(doc)


def _bad_thread(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    doc = _doc(kind, forum, thread, ts)
    doc["thread"] = rng.choice([{"id": thread}, float(thread) + 0.5, "", False])
    return orjson.dumps(doc)


def _garbage(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    # No newlines in any message: the stream may be written as NDJSON, one message a line.
    return rng.choice([b"", b" ", b"null", b"ok", b"GET /health HTTP/1.1", b"\x00\x00\x00\x01"])


_MALFORMERS: tuple[Callable[[random.Random, str, str, int, int], bytes], ...] = (
    _truncated, _not_utf8, _array, _missing_forum, _ts_wrong_type, _ts_naive, _unknown_type,
    _ts_years_away, _oversized, _bad_thread, _garbage,
)


def _malformed(rng: random.Random, kind: str, forum: str, thread: int, ts: int) -> bytes:
    return _MALFORMERS[rng.randrange(len(_MALFORMERS))](rng, kind, forum, thread, ts)

