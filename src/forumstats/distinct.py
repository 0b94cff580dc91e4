"""Distinct users per window, per (forum, thread) and per forum, with Apache DataSketches HLL.

Lifecycle: the same as the count windows of ``forumstats.engine``. A window is final once the
watermark reaches its end; until the watermark reaches end + allowed lateness, late users
restate it (emitted again whole, same key, higher revision); after that it is dropped and
users for it are too late. Rollup levels (1h, 1d) are *merged* from the sketches of the level
below as those become final or are restated, exactly like the counts, so an hour's sketch is
the union of its minutes' sketches. Revisions are this tracker's own (a window whose late
events carry no ``user`` restates its counts but not its distinct users).

Output per window and key: a ``Distinct`` (estimate, lower and upper bound at
``BOUND_STD_DEVS`` standard deviations, and the sketch as ``serialize_compact`` bytes). The
sketch bytes are what analysts keep: the union of the sketches of any set of windows and keys
is the distinct-user estimate of that whole range (a user active in several minutes counts
once); see ``merge_sketches`` and ``examples/merge_sketches.py``.

Sketch parameters: ``lg_k`` (default 12, configurable 4..21), target type HLL_8. For lg_k=12
the relative standard error is about 1.6% (merged sketches, composite estimator); a sketch of
a key with few users is small (4 bytes per user in list/set mode, plus 8-12 bytes), one with
many users at most ``2**lg_k + 40`` bytes (4136 at lg_k=12). ``relative_error`` gives the
bound DataSketches states for any lg_k and number of standard deviations.

Determinism. An HLL sketch's serialized bytes (and, in HLL mode, its HIP estimate) depend on
the order of its updates, so two runs fed the same users in another order would write
different bytes. Every emitted sketch is therefore put in a canonical form first
(``canonical_sketch_bytes``): in list/set mode the coupons are sorted; in HLL mode the sketch
is merged into a union twice, which leaves only the registers (order-independent) and the
out-of-order flag, so the estimate is the composite estimator over the registers. The same
users in any order, split over any batches or merged from any sub-windows, give byte-identical
output and identical estimates.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from datasketches import hll_sketch, hll_union, tgt_hll_type

from .settings import WindowSettings
from .watermarks import NEG_INF
from .windows import UserKey, level_plan

DEFAULT_LG_K = 12
TARGET = tgt_hll_type.HLL_8
BOUND_STD_DEVS = 2  # ~95% confidence for the published lower/upper bounds

ThreadKey = tuple[str, str]  # (forum, thread)

_FAMILY_HLL = 7
_MODE_LIST, _MODE_SET, _MODE_HLL = 0, 1, 2


class Distinct(NamedTuple):
    """Distinct users of one key in one window."""

    estimate: float
    lower_bound: float  # at BOUND_STD_DEVS standard deviations
    upper_bound: float
    sketch: bytes  # canonical hll_sketch.serialize_compact() bytes (HLL_8, lg_k)


@dataclass(frozen=True)
class DistinctResult:
    """Distinct users of one window: per (forum, thread) and per forum.

    Like ``WindowResult.counts``, the mappings are complete for the window but in no
    particular order (equality ignores order); encoders sort rows by key.
    """

    size_ms: int
    start_ms: int
    revision: int  # 1 = first final emission; >1 restatements; partials: revisions so far
    final: bool
    lg_k: int
    threads: Mapping[ThreadKey, Distinct]
    forums: Mapping[str, Distinct]

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.size_ms


# -- sketch helpers ----------------------------------------------------------------------
def canonical_sketch_bytes(sketch: hll_sketch) -> bytes:
    """``serialize_compact`` bytes of ``sketch`` in a form independent of update order."""
    return _canonical(sketch)[1]


def summarize(sketch: hll_sketch) -> Distinct:
    """Estimate, bounds and canonical bytes of a sketch (the estimate is that of the bytes)."""
    canon, data = _canonical(sketch)
    return Distinct(canon.get_estimate(), canon.get_lower_bound(BOUND_STD_DEVS),
                    canon.get_upper_bound(BOUND_STD_DEVS), data)


def merge_sketches(sketches: Iterable[bytes | hll_sketch], lg_k: int = DEFAULT_LG_K
                   ) -> hll_sketch:
    """Union of serialized (or live) sketches: the distinct users of all of them together.

    ``merge_sketches(rows.sketch).get_estimate()`` is the distinct-user count of any range of
    windows and keys an analyst selects (for example every minute of a thread in one day).
    """
    union = hll_union(lg_k)
    for item in sketches:
        union.update(hll_sketch.deserialize(item) if isinstance(item, bytes | bytearray)
                     else item)
    return union.get_result(TARGET)


def relative_error(lg_k: int = DEFAULT_LG_K, num_std_devs: int = 3, unioned: bool = True
                   ) -> float:
    """DataSketches' stated a-priori relative error of an estimate, as a positive fraction:
    the larger of its lower- and upper-side errors (``hll_sketch.get_rel_err`` returns the
    upper side negated). ``unioned=True`` (the default) is the error of a merged sketch,
    which is what every emitted sketch is; lg_k=12 at 3 std devs: about 5%."""
    return max(abs(hll_sketch.get_rel_err(upper, unioned, lg_k, num_std_devs))
               for upper in (True, False))


def _canonical(sketch: hll_sketch) -> tuple[hll_sketch, bytes]:
    raw = sketch.serialize_compact()
    mode = raw[7] & 3 if len(raw) >= 8 and raw[2] == _FAMILY_HLL else _MODE_HLL
    if mode == _MODE_HLL:
        union = hll_union(sketch.lg_config_k)
        union.update(sketch)
        union.update(sketch)  # a second merge sets the out-of-order flag: registers only
        canon = union.get_result(TARGET)
        return canon, canon.serialize_compact()
    header = 8 if mode == _MODE_LIST else 12
    count = (len(raw) - header) // 4
    if count <= 1:
        return sketch, raw
    coupons = sorted(struct.unpack_from(f"<{count}I", raw, header))
    data = raw[:header] + struct.pack(f"<{count}I", *coupons)
    return hll_sketch.deserialize(data), data


# -- the tracker -------------------------------------------------------------------------
# Live state per key: an hll_sketch in base windows (cheapest to update with user ids), an
# hll_union in rollups (merged from the level below).
_Live = hll_sketch | hll_union


@dataclass
class _Window:
    threads: dict[ThreadKey, _Live] = field(default_factory=dict)
    forums: dict[str, _Live] = field(default_factory=dict)
    revision: int = 0
    changed_threads: set[ThreadKey] = field(default_factory=set)
    changed_forums: set[str] = field(default_factory=set)
    # summaries as last emitted (only once final, so only during the lateness period): a
    # restatement re-summarizes just the keys that changed
    emitted_threads: dict[ThreadKey, Distinct] = field(default_factory=dict)
    emitted_forums: dict[str, Distinct] = field(default_factory=dict)


class _Level:
    def __init__(self, size_ms: int) -> None:
        self.size_ms = size_ms
        self.windows: dict[int, _Window] = {}

    def window(self, start: int) -> _Window:
        window = self.windows.get(start)
        if window is None:
            window = self.windows[start] = _Window()
        return window


class DistinctTracker:
    """HLL sketches per (window, forum, thread) and (window, forum), all levels.

    Feed it with ``add_users`` (user ids per (window start, forum, thread), as
    ``forumstats.windows.preaggregate_with_users`` returns them) or ``add_sketches``
    (serialized sketches per such key, for shipping a batch's users compactly), move it with
    ``advance(watermark)``; it returns the ``DistinctResult``s that became final or were
    restated. ``WindowEngine`` holds one and drives it with its own watermark.
    """

    def __init__(self, size_ms: int = 60_000,
                 rollup_sizes_ms: tuple[int, ...] = (3_600_000, 86_400_000),
                 allowed_lateness_ms: int = 300_000, lg_k: int = DEFAULT_LG_K) -> None:
        if not 4 <= lg_k <= 21:
            raise ValueError(f"HLL lg_k must be 4..21, got {lg_k}")
        self.lg_k = lg_k
        self.size_ms = size_ms
        self.lateness = allowed_lateness_ms
        sizes, sources = level_plan(size_ms, rollup_sizes_ms)
        self.levels = [_Level(s) for s in sizes]
        self._dependents: list[list[int]] = [[] for _ in sizes]
        for index, source in enumerate(sources):
            if source is not None:
                self._dependents[source].append(index)
        self.watermark = NEG_INF
        self.too_late_users = 0

    @classmethod
    def from_settings(cls, settings: WindowSettings, lg_k: int = DEFAULT_LG_K
                      ) -> DistinctTracker:
        return cls(settings.size_ms, settings.rollup_sizes_ms, settings.allowed_lateness_ms,
                   lg_k)

    def late_cutoff(self) -> int:
        """Base windows starting at or before this are closed for good (too late)."""
        return self.watermark - self.lateness - self.size_ms

    # -- input ---------------------------------------------------------------------------
    def add_users(self, users: Mapping[UserKey, Iterable[str]], cutoff: int | None = None
                  ) -> dict[UserKey, list[str]]:
        """Add user ids per (window start, forum, thread); returns the too-late part.

        ``cutoff`` defaults to this tracker's own; ``WindowEngine.add_users`` passes the
        engine's, so counts and users agree on what is too late.
        """
        if cutoff is None:
            cutoff = self.late_cutoff()
        level = self.levels[0]
        too_late: dict[UserKey, list[str]] = {}
        forum_users: dict[tuple[int, str], set[str]] = {}
        lg_k = self.lg_k
        for key, ids in users.items():
            start, forum, thread = key
            if start <= cutoff:
                too_late[key] = list(ids)
                self.too_late_users += len(too_late[key])
                continue
            ids = ids if isinstance(ids, set | frozenset) else set(ids)
            if not ids:
                continue
            window = level.window(start)
            tkey = (forum, thread)
            sketch = window.threads.get(tkey)
            if sketch is None:
                sketch = window.threads[tkey] = hll_sketch(lg_k, TARGET)
            update = sketch.update
            for user in ids:
                update(user)
            window.changed_threads.add(tkey)
            bucket = forum_users.get((start, forum))
            if bucket is None:
                forum_users[(start, forum)] = set(ids)
            else:
                bucket.update(ids)
        for (start, forum), ids in forum_users.items():
            window = level.windows[start]
            sketch = window.forums.get(forum)
            if sketch is None:
                sketch = window.forums[forum] = hll_sketch(lg_k, TARGET)
            update = sketch.update
            for user in ids:
                update(user)
            window.changed_forums.add(forum)
        return too_late

    def add_sketches(self, sketches: Mapping[UserKey, bytes], cutoff: int | None = None
                     ) -> dict[UserKey, bytes]:
        """Merge serialized sketches of users per (window start, forum, thread) (for example
        built upstream per batch); returns the too-late part."""
        if cutoff is None:
            cutoff = self.late_cutoff()
        level = self.levels[0]
        too_late: dict[UserKey, bytes] = {}
        for key, data in sketches.items():
            start, forum, thread = key
            if start <= cutoff:
                too_late[key] = data
                continue
            sketch = hll_sketch.deserialize(data)
            window = level.window(start)
            for store, changed, k in ((window.threads, window.changed_threads, (forum, thread)),
                                      (window.forums, window.changed_forums, forum)):
                union = hll_union(self.lg_k)
                if k in store:
                    union.update(store[k])
                union.update(sketch)
                store[k] = union.get_result(TARGET)
                changed.add(k)
        return too_late

    # -- output --------------------------------------------------------------------------
    def advance(self, watermark: int, restate: bool = True) -> list[DistinctResult]:
        """Move to ``watermark`` (never backwards); return windows that became final or were
        restated, lowest level first, oldest first (``restate``: as WindowEngine.advance)."""
        if watermark > self.watermark:
            self.watermark = watermark
        watermark = self.watermark
        results: list[DistinctResult] = []
        for index, level in enumerate(self.levels):
            parents = [self.levels[i] for i in self._dependents[index]]
            for start in sorted(level.windows):
                end = start + level.size_ms
                if end > watermark:
                    break
                window = level.windows[start]
                if window.revision and not restate and end + self.lateness > watermark:
                    continue
                if window.changed_threads or window.changed_forums or window.revision == 0:
                    window.revision += 1
                    results.append(self._final_result(level.size_ms, start, window))
                    for parent in parents:
                        target = parent.window(start - start % parent.size_ms)
                        _hand_up(window.threads, window.changed_threads, target.threads,
                                 target.changed_threads, self.lg_k)
                        _hand_up(window.forums, window.changed_forums, target.forums,
                                 target.changed_forums, self.lg_k)
                    window.changed_threads = set()
                    window.changed_forums = set()
                if end + self.lateness <= watermark:
                    del level.windows[start]
        return results

    def partials(self) -> list[DistinctResult]:
        """Early results: every window not yet final, with the users seen so far (rollups
        include what lower levels hold but have not handed up yet)."""
        watermark = self.watermark
        results: list[DistinctResult] = []
        carries: list[dict[int, tuple[dict, dict]]] = [{} for _ in self.levels]
        for index, level in enumerate(self.levels):
            carry = carries[index]
            for start in sorted(set(level.windows) | set(carry)):
                window = level.windows.get(start) or _Window()
                extra_threads, extra_forums = carry.get(start, ({}, {}))
                threads = _with_extra(window.threads, extra_threads, self.lg_k)
                forums = _with_extra(window.forums, extra_forums, self.lg_k)
                if start + level.size_ms > watermark:
                    results.append(self._result(level.size_ms, start, window.revision, False,
                                                threads, forums))
                for dep in self._dependents[index]:
                    size = self.levels[dep].size_ms
                    t_out, f_out = carries[dep].setdefault(start - start % size, ({}, {}))
                    for key in window.changed_threads | set(extra_threads):
                        t_out.setdefault(key, []).append(threads[key])
                    for key in window.changed_forums | set(extra_forums):
                        f_out.setdefault(key, []).append(forums[key])
        return results

    # -- introspection -------------------------------------------------------------------
    def state_size(self) -> int:
        """Number of (window, key) sketches held: bounded by open windows x active keys."""
        return sum(len(w.threads) + len(w.forums)
                   for level in self.levels for w in level.windows.values())

    def open_window_count(self) -> int:
        return sum(len(level.windows) for level in self.levels)

    def _result(self, size_ms: int, start: int, revision: int, final: bool,
                threads: Mapping[ThreadKey, _Live], forums: Mapping[str, _Live]
                ) -> DistinctResult:
        return DistinctResult(
            size_ms, start, revision, final, self.lg_k,
            {k: summarize(_sketch(v)) for k, v in threads.items()},
            {k: summarize(_sketch(v)) for k, v in forums.items()},
        )

    def _final_result(self, size_ms: int, start: int, window: _Window) -> DistinctResult:
        window.emitted_threads = _refresh(window.threads, window.changed_threads,
                                          window.emitted_threads)
        window.emitted_forums = _refresh(window.forums, window.changed_forums,
                                         window.emitted_forums)
        return DistinctResult(size_ms, start, window.revision, True, self.lg_k,
                              dict(window.emitted_threads), dict(window.emitted_forums))


def _refresh(live: Mapping, changed: set, emitted: dict) -> dict:
    """Re-summarize what changed since the last emission (everything the first time)."""
    for key in changed if emitted else live:
        emitted[key] = summarize(_sketch(live[key]))
    return emitted


def _sketch(live: _Live) -> hll_sketch:
    return live if isinstance(live, hll_sketch) else live.get_result(TARGET)


def _hand_up(source: Mapping[object, _Live], changed: set, target: dict, target_changed: set,
             lg_k: int) -> None:
    for key in changed:
        union = target.get(key)
        if union is None:
            union = target[key] = hll_union(lg_k)
        union.update(_sketch(source[key]))
        target_changed.add(key)


def _with_extra(own: Mapping, extra: Mapping, lg_k: int) -> Mapping:
    if not extra:
        return own
    merged = dict(own)
    for key, parts in extra.items():
        union = hll_union(lg_k)
        if key in own:
            union.update(_sketch(own[key]))
        for part in parts:
            union.update(_sketch(part))
        merged[key] = union
    return merged
