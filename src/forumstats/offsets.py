"""Offset bookkeeping of the Kafka spout: batches handed out, acks, commits, replays, cut log.

Pure: no I/O, no clock reads, no kafka import. Times are passed in as ``now_ms``. The Kafka
adapter (``forumstats.kafka_source``) drives it; a streamparse spout is a thin shell over that.

Batches and the cut rule
------------------------
Each partition's offsets are cut into batches at *boundaries*. A boundary is

* a multiple of the batch size S (so a batch never crosses a multiple of S),
* a *tail cut*: when the consumer has caught up with the end of the partition, the records
  after the last boundary may be handed out as a partial batch; its end (the consumer's fetch
  position) becomes a boundary,
* the edge of an older batch-size *regime* (see below), and the partition's starting offset.

A batch holds the records between two consecutive boundaries; its identity is
``(topic, partition, first_offset, last_offset)`` of the records in it. Internally each batch
also owns the offset *range* ``[start, end)`` from the end of the previous batch to its end
boundary, so ranges tile the partition from the starting offset (a run of offsets with no
records, e.g. transaction markers, is absorbed into the next batch's range). The committable
offset (Kafka convention: the next offset to consume) is the end of the contiguous prefix of
acked ranges, so it never passes a batch that is not acked.

Multiples of S are reproducible after any restart; tail cuts are not, so they are stored in Kafka
before the batch is handed out, in the metadata string of a synchronous offset commit (the
committed offset itself does not move forward for it).

Cut log (Kafka commit metadata)
-------------------------------
Format, all numbers decimal, offsets relative to the committed offset C stored with it::

    fs1;s=<S>;h=<lease - C>[;c=<d1>.<d2>...][;r=<S1>@<u1 - C>.<S2>@<u2 - C>...][;d=<deployment>]

* ``s``: the batch size S of the writer.
* ``h``: the lease. The writer never hands out a batch that ends beyond ``C + h`` without first
  committing a larger lease (it extends the lease by ``LEASE_BLOCKS`` blocks at a time, so this
  costs one synchronous commit per ``LEASE_BLOCKS * S`` offsets). A reader whose S differs
  keeps cutting with the writer's S below the lease, so changing ``batch_size`` never re-cuts
  a range that may already have been handed out.
* ``c``: tail cuts above C, delta-encoded (first relative to C, then to the previous cut).
* ``r``: older batch-size regimes still above C: below ``u1`` offsets are cut with ``S1``, etc.
* ``d``: the deployment id of the writer (see ``KafkaSourceSettings.first_poll``).

Cuts and regimes at or below C are dropped, and a partition holds at most ``max_uncommitted``
batches above its committed offset, so the string stays small (a few bytes per batch; it is
also checked against ``metadata_max_bytes``: a tail that would not fit waits instead).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

INFLIGHT = "inflight"
ACKED = "acked"
FAILED = "failed"
REPLAYING = "replaying"

LEASE_BLOCKS = 16
CUTLOG_VERSION = "fs1"
_DEPLOYMENT_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def backoff_ms(attempt: int, base_ms: int, cap_ms: int) -> int:
    """Delay before replay number ``attempt`` (1-based): base * 2^(attempt-1), at most cap."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    # Avoid huge integers for large attempt counts: past the cap it stays the cap.
    if attempt > 63 or base_ms << (attempt - 1) > cap_ms:
        return cap_ms
    return base_ms << (attempt - 1)


# --------------------------------------------------------------------------------------------
# Cut log


@dataclass(frozen=True)
class CutLog:
    """The recorded cut state of one partition (absolute offsets)."""

    batch_size: int
    lease: int
    cuts: tuple[int, ...] = ()
    regimes: tuple[tuple[int, int], ...] = ()  # (batch_size, until), ascending until
    deployment: str | None = None

    def above(self, committed: int) -> CutLog:
        """The same log with everything at or below ``committed`` dropped."""
        return CutLog(
            batch_size=self.batch_size,
            lease=max(self.lease, committed),
            cuts=tuple(c for c in self.cuts if c > committed),
            regimes=tuple((s, u) for s, u in self.regimes if u > committed),
            deployment=self.deployment,
        )

    def encode(self, committed: int) -> str:
        log = self.above(committed)
        parts = [CUTLOG_VERSION, f"s={log.batch_size}", f"h={log.lease - committed}"]
        if log.cuts:
            deltas, prev = [], committed
            for cut in log.cuts:
                deltas.append(cut - prev)
                prev = cut
            parts.append("c=" + ".".join(map(str, deltas)))
        if log.regimes:
            parts.append("r=" + ".".join(f"{s}@{u - committed}" for s, u in log.regimes))
        if log.deployment:
            parts.append(f"d={log.deployment}")
        return ";".join(parts)

    @staticmethod
    def decode(text: str, committed: int) -> CutLog:
        """Parse commit metadata written by ``encode``. Raises ValueError if it is not ours."""
        if not text:
            raise ValueError("empty commit metadata")
        parts = text.split(";")
        if parts[0] != CUTLOG_VERSION:
            raise ValueError(f"commit metadata is not a forumstats cut log: {text[:40]!r}")
        values: dict[str, str] = {}
        for part in parts[1:]:
            key, sep, value = part.partition("=")
            if not sep or key in values:
                raise ValueError(f"malformed cut log field {part[:40]!r}")
            values[key] = value  # unknown keys are ignored (forward compatible)
        batch_size = _positive(values.get("s"), "s")
        lease = committed + _natural(values.get("h"), "h")
        cuts: list[int] = []
        prev = committed
        for item in filter(None, values.get("c", "").split(".")):
            prev += _positive(item, "c")
            cuts.append(prev)
        regimes: list[tuple[int, int]] = []
        for item in filter(None, values.get("r", "").split(".")):
            size, sep, until = item.partition("@")
            if not sep:
                raise ValueError(f"malformed regime {item!r}")
            regimes.append((_positive(size, "r"), committed + _positive(until, "r")))
        if [u for _, u in regimes] != sorted({u for _, u in regimes}):
            raise ValueError("regimes out of order")
        if regimes and regimes[-1][1] > lease:
            raise ValueError("regime beyond the lease")
        deployment = values.get("d") or None
        if deployment is not None and not _DEPLOYMENT_RE.fullmatch(deployment):
            raise ValueError("malformed deployment id")
        return CutLog(batch_size, lease, tuple(cuts), tuple(regimes), deployment)


def _natural(text: str | None, name: str) -> int:
    if text is None or not text.isdigit():
        raise ValueError(f"cut log field {name} missing or not a number")
    return int(text)


def _positive(text: str | None, name: str) -> int:
    value = _natural(text, name)
    if value <= 0:
        raise ValueError(f"cut log field {name} must be positive")
    return value


def boundary_after(offset: int, batch_size: int, cuts: Sequence[int] = (),
                   regimes: Sequence[tuple[int, int]] = ()) -> int:
    """The smallest boundary strictly above ``offset`` (see the module docstring)."""
    size = batch_size
    edge = None
    for regime_size, until in regimes:
        if offset < until:
            size, edge = regime_size, until
            break
    best = (offset // size + 1) * size
    if edge is not None and edge < best:
        best = edge
    for cut in cuts:  # few; sorted ascending
        if cut > offset:
            if cut < best:
                best = cut
            break
    return best


# --------------------------------------------------------------------------------------------
# One partition


class Cut(NamedTuple):
    """A batch about to be handed out: its range and how many buffered records it takes."""

    start: int
    end: int
    count: int
    tail: bool


@dataclass
class Batch:
    start: int
    end: int
    first: int
    last: int
    count: int
    state: str = INFLIGHT
    retries: int = 0
    eligible_ms: int = 0
    emitted_ms: int = 0


class PartitionLedger:
    """Batches of one partition handed out since ``base`` (the committed offset at start)."""

    def __init__(self, base: int, batch_size: int, *, restored: CutLog | None = None,
                 max_uncommitted: int = 256, metadata_max_bytes: int = 4000,
                 lease_blocks: int | None = LEASE_BLOCKS, deployment: str | None = None) -> None:
        if base < 0 or batch_size < 1 or (lease_blocks is not None and lease_blocks < 1):
            raise ValueError("base >= 0, batch_size >= 1 and lease_blocks >= 1 required")
        self.base = base
        self.batch_size = batch_size
        self.committable = base
        self.next_emit = base
        self.max_uncommitted = max_uncommitted
        self.metadata_max_bytes = metadata_max_bytes
        self.lease_blocks = lease_blocks
        self.deployment = deployment
        self.epoch = 0
        self.batches: dict[int, Batch] = {}  # by range start, in offset order
        self.by_first: dict[int, int] = {}  # first record offset -> range start
        cuts: list[int] = []
        regimes: list[tuple[int, int]] = []
        lease = base
        if restored is not None:
            log = restored.above(base)
            cuts = list(log.cuts)
            regimes = list(log.regimes)
            older_edge = regimes[-1][1] if regimes else base
            if log.batch_size != batch_size and log.lease > older_edge:
                regimes.append((log.batch_size, log.lease))
            lease = log.lease
        self.cuts = cuts
        self.regimes = regimes
        self.lease = lease
        # What Kafka holds (restored log, or nothing yet): boundaries below the persisted lease
        # that are multiples of S, regime edges or persisted cuts are reproducible.
        self._persisted_lease = lease
        self._persisted_cuts = set(cuts)
        self.last_committed: int | None = base if restored is not None else None

    # ---- cut rule -------------------------------------------------------------------------
    def boundary_after(self, offset: int) -> int:
        return boundary_after(offset, self.batch_size, self.cuts, self.regimes)

    def is_boundary(self, offset: int) -> bool:
        return offset == self.base or self.boundary_after(offset - 1) == offset

    def cut_log(self) -> CutLog:
        return CutLog(self.batch_size, self.lease, tuple(self.cuts), tuple(self.regimes),
                      self.deployment).above(self.committable)

    def metadata(self) -> str:
        """Commit metadata for committing ``committable`` now."""
        return self.cut_log().encode(self.committable)

    @property
    def dirty(self) -> bool:
        """True when a commit would change what Kafka holds (offset, lease or cuts)."""
        return self.last_committed != self.committable or self.meta_dirty

    @property
    def meta_dirty(self) -> bool:
        """True when the lease or the tail cuts changed since the last successful commit."""
        if self._persisted_lease != self.lease:
            return True
        return any(c not in self._persisted_cuts for c in self.cuts if c > self.committable)

    @property
    def commit_floor(self) -> int:
        """The lower of the committable offset and the offset Kafka holds."""
        held = self.last_committed if self.last_committed is not None else self.base
        return min(self.committable, held)

    def persisted(self, end: int) -> bool:
        """Whether a batch ending at ``end`` can be handed out without a metadata commit."""
        if self.lease_blocks is not None and end > self._persisted_lease:
            return False
        return end not in self.cuts or end in self._persisted_cuts

    def mark_persisted(self, committed: int, log: CutLog) -> None:
        """Record a successful commit of ``committed`` with metadata ``log``."""
        self.last_committed = committed
        self._persisted_lease = max(log.lease, committed)
        self._persisted_cuts = set(log.cuts)
        self._prune()

    def _prune(self) -> None:
        floor = min(self.committable, self.last_committed if self.last_committed is not None
                    else self.committable)
        self.cuts = [c for c in self.cuts if c > floor]
        self.regimes = [(s, u) for s, u in self.regimes if u > floor]

    # ---- new data -------------------------------------------------------------------------
    def plan(self, offsets: Sequence[int], position: int, *, tail_ok: bool,
             limit: int) -> list[Cut]:
        """Cuts for buffered new records.

        ``offsets``: sorted offsets of records fetched and not yet handed out, all at or above
        ``next_emit``; ``position``: every offset below it has been fetched; ``tail_ok``: the
        fetch has caught up with the partition's end, so a partial batch may be cut at
        ``position``; ``limit``: at most this many new batches (in-flight room).
        """
        limit = min(limit, self.max_uncommitted - len(self.batches))
        out: list[Cut] = []
        start, i, n = self.next_emit, 0, len(offsets)
        pending_cuts = list(self.cuts)
        while i < n and len(out) < limit:
            if offsets[i] < start:
                raise ValueError(f"offset {offsets[i]} below next_emit {start}")
            end = boundary_after(offsets[i], self.batch_size, pending_cuts, self.regimes)
            j = i
            while j < n and offsets[j] < end:
                j += 1
            if position >= end:
                out.append(Cut(start, end, j - i, False))
            elif tail_ok and j == n and position > offsets[j - 1]:
                trial = sorted(pending_cuts + [position])
                log = CutLog(self.batch_size, max(self.lease, self._lease_for(position)),
                             tuple(trial), tuple(self.regimes), self.deployment)
                if len(log.encode(self.committable)) > self.metadata_max_bytes:
                    break  # no room in the cut log: wait for the block or for commits
                pending_cuts = trial
                out.append(Cut(start, position, j - i, True))
                end = position
            else:
                break
            start, i = end, j
        return out

    def _lease_for(self, end: int) -> int:
        if end <= self.lease or self.lease_blocks is None:
            return self.lease
        size = self.batch_size
        return (-(-end // size) + self.lease_blocks - 1) * size

    def record(self, cuts: Iterable[Cut]) -> bool:
        """Note tail cuts and extend the lease for cuts about to be handed out.

        Returns True when Kafka must first receive a commit with the new metadata (then hand
        the batches out only if that commit succeeded).
        """
        need = False
        for cut in cuts:
            if cut.tail and cut.end not in self.cuts:
                self.cuts.append(cut.end)
                self.cuts.sort()
            self.lease = self._lease_for(cut.end)
            need = need or not self.persisted(cut.end)
        return need

    def emit(self, cut: Cut, first: int, last: int, now_ms: int) -> Batch:
        if cut.start != self.next_emit:
            raise ValueError(f"cut starts at {cut.start}, expected {self.next_emit}")
        if not (cut.start <= first <= last < cut.end):
            raise ValueError(f"records {first}..{last} outside range {cut.start}..{cut.end}")
        if not self.persisted(cut.end) or not self.is_boundary(cut.end):
            raise ValueError(f"boundary {cut.end} is not recorded in Kafka yet")
        batch = Batch(cut.start, cut.end, first, last, cut.count, emitted_ms=now_ms)
        self.batches[cut.start] = batch
        self.by_first[first] = cut.start
        self.next_emit = cut.end
        return batch

    # ---- acks, fails, replays -------------------------------------------------------------
    def find(self, first: int, last: int) -> Batch | None:
        start = self.by_first.get(first)
        batch = self.batches.get(start) if start is not None else None
        return batch if batch is not None and batch.last == last else None

    def ack(self, first: int, last: int) -> bool:
        batch = self.find(first, last)
        if batch is None or batch.state != INFLIGHT:
            return False
        batch.state = ACKED
        while self.batches:
            head = next(iter(self.batches.values()))
            if head.state != ACKED:
                break
            del self.batches[head.start]
            del self.by_first[head.first]
            self.committable = head.end
        return True

    def fail(self, first: int, last: int, now_ms: int, base_ms: int, cap_ms: int) -> bool:
        batch = self.find(first, last)
        if batch is None or batch.state != INFLIGHT:
            return False
        batch.state = FAILED
        batch.retries += 1
        batch.eligible_ms = now_ms + backoff_ms(batch.retries, base_ms, cap_ms)
        return True

    def expire(self, now_ms: int, timeout_ms: int, base_ms: int, cap_ms: int) -> list[Batch]:
        """Fail in-flight batches handed out at least ``timeout_ms`` ago."""
        old = [b for b in self.batches.values()
               if b.state == INFLIGHT and now_ms - b.emitted_ms >= timeout_ms]
        for b in old:
            self.fail(b.first, b.last, now_ms, base_ms, cap_ms)
        return old

    def due(self, now_ms: int) -> list[Batch]:
        return [b for b in self.batches.values()
                if b.state == FAILED and b.eligible_ms <= now_ms]

    def next_due_ms(self) -> int | None:
        times = [b.eligible_ms for b in self.batches.values() if b.state == FAILED]
        return min(times) if times else None

    def begin_replay(self, batches: Iterable[Batch]) -> int | None:
        """Mark batches as being re-read; returns the offset to seek to (or None)."""
        seek = None
        for b in batches:
            b.state = REPLAYING
            seek = b.first if seek is None else min(seek, b.first)
        return seek

    def replaying(self) -> list[Batch]:
        return [b for b in self.batches.values() if b.state == REPLAYING]

    def locate(self, offset: int) -> Batch | None:
        """The handed-out batch whose range holds ``offset``."""
        for b in self.batches.values():
            if b.start <= offset < b.end:
                return b
            if b.start > offset:
                break
        return None

    def replayed(self, batch: Batch, now_ms: int) -> None:
        batch.state = INFLIGHT
        batch.emitted_ms = now_ms

    def abort_replays(self, now_ms: int) -> None:
        """Re-reading was interrupted: make replaying batches due again at once."""
        for b in self.batches.values():
            if b.state == REPLAYING:
                b.state = FAILED
                b.eligible_ms = now_ms

    # ---- counters -------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return sum(1 for b in self.batches.values() if b.state != ACKED)

    @property
    def uncommitted(self) -> int:
        return len(self.batches)


# --------------------------------------------------------------------------------------------
# All partitions


class BatchRef(NamedTuple):
    key: tuple[str, int]
    first: int
    last: int
    epoch: int


def format_batch_id(topic: str, partition: int, first: int, last: int, epoch: int) -> str:
    """``topic/partition/first-last/epoch``: Kafka topic names cannot contain '/'."""
    return f"{topic}/{partition}/{first}-{last}/{epoch}"


def parse_batch_id(batch_id: str) -> BatchRef | None:
    parts = batch_id.split("/") if isinstance(batch_id, str) else []
    if len(parts) != 4:
        return None
    topic, partition, span, epoch = parts
    first, sep, last = span.partition("-")
    if not (sep and partition.isdigit() and first.isdigit() and last.isdigit()
            and epoch.isdigit()):
        return None
    return BatchRef((topic, int(partition)), int(first), int(last), int(epoch))


@dataclass
class AckTracker:
    """Ledgers of all assigned partitions, the global in-flight cap and batch ids.

    Keys are ``(topic, partition)`` tuples (kafka's TopicPartition compares equal to them).
    A batch id carries the epoch of the ledger it came from: after a partition is revoked (and
    perhaps assigned again) acks and fails of its old batches are ignored.
    """

    max_in_flight: int
    backoff_base_ms: int = 1_000
    backoff_cap_ms: int = 60_000
    ledgers: dict[Hashable, PartitionLedger] = field(default_factory=dict)
    suspended: set[Hashable] = field(default_factory=set)
    _epoch: int = 0

    def attach(self, key: tuple[str, int], ledger: PartitionLedger) -> None:
        self._epoch += 1
        ledger.epoch = self._epoch
        self.ledgers[key] = ledger
        self.suspended.discard(key)

    def revoke(self, key: Hashable) -> PartitionLedger | None:
        """Forget a partition: its batches are never committed, later acks are ignored."""
        self.suspended.discard(key)
        return self.ledgers.pop(key, None)

    def suspend(self, key: Hashable) -> None:
        """Keep the ledger but commit and hand out nothing for it (rebalance in progress)."""
        if key in self.ledgers:
            self.suspended.add(key)

    def restore(self, key: Hashable) -> bool:
        if key in self.suspended:
            self.suspended.discard(key)
            return True
        return False

    def active(self) -> dict[Hashable, PartitionLedger]:
        return {k: v for k, v in self.ledgers.items() if k not in self.suspended}

    def batch_id(self, key: tuple[str, int], batch: Batch) -> str:
        ledger = self.ledgers[key]
        return format_batch_id(key[0], key[1], batch.first, batch.last, ledger.epoch)

    def _resolve(self, batch_id: str) -> tuple[PartitionLedger, BatchRef] | None:
        ref = parse_batch_id(batch_id)
        if ref is None:
            return None
        ledger = self.ledgers.get(ref.key)
        if ledger is None or ledger.epoch != ref.epoch:
            return None
        return ledger, ref

    def ack(self, batch_id: str) -> bool:
        """True if the ack counted; False for unknown, stale or already settled batches."""
        found = self._resolve(batch_id)
        return bool(found) and found[0].ack(found[1].first, found[1].last)

    def fail(self, batch_id: str, now_ms: int) -> bool:
        found = self._resolve(batch_id)
        return bool(found) and found[0].fail(found[1].first, found[1].last, now_ms,
                                             self.backoff_base_ms, self.backoff_cap_ms)

    @property
    def in_flight(self) -> int:
        return sum(ledger.in_flight for ledger in self.ledgers.values())

    def room(self) -> int:
        return max(0, self.max_in_flight - self.in_flight)

    def share(self) -> int:
        """Batches one partition may have in flight: an equal share of the cap, so the
        partition furthest behind in event time always has room (if the fastest ones could
        take it all, the windows waiting for the slowest would never close)."""
        return max(1, self.max_in_flight // max(1, len(self.active())))

    def room_for(self, key: Hashable) -> int:
        ledger = self.ledgers.get(key)
        if ledger is None:
            return 0
        return max(0, min(self.room(), self.share() - ledger.in_flight))

    def committable(self) -> dict[Hashable, int]:
        return {k: v.committable for k, v in self.active().items()}
