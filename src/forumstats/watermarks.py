"""Watermarks over several inputs (Kafka partitions or upstream tasks).

Per input: the highest event time seen minus the out-of-orderness bound. Combined: the minimum
over live inputs. An idle input stops holding the watermark back. Idle means either

* declared idle by its source (``mark_idle``): the spout knows a partition is caught up with
  its end and quiet; the counting bolt only trusts that (``idle_by_silence=False``), because
  silence downstream can also mean a partition held back by max.spout.pending, by pacing or
  by a stalled sink, and taking that for idleness makes its backlog late; or
* (``idle_by_silence=True``, for direct use of the engine) silent for longer than the idle
  timeout (wall-clock, passed in as ``now_ms``).

When every input is idle, event time is assumed to move on with wall-clock time from when each
became idle, so the last windows of a quiet stream still close. An input idle without ever
having produced an event holds nothing back, so when the others have ended the watermark still
reaches +infinity. An ended (bounded)
input sits at +infinity. The combined watermark never moves backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

NEG_INF = -(2**62)
POS_INF = 2**62


@dataclass
class _Input:
    max_ts: int = NEG_INF
    last_active_ms: int = 0
    ended: bool = False
    idle_since_ms: int | None = None  # declared idle by its source, at this time


class WatermarkTracker:
    def __init__(self, out_of_orderness_ms: int, idle_timeout_ms: int, *,
                 idle_by_silence: bool = True) -> None:
        self.bound = out_of_orderness_ms
        self.idle_timeout = idle_timeout_ms
        self.idle_by_silence = idle_by_silence
        self._inputs: dict[str, _Input] = {}
        self._current = NEG_INF

    def register(self, input_id: str, now_ms: int) -> None:
        """Announce an input that has produced nothing yet: it holds the watermark until idle."""
        self._inputs.setdefault(input_id, _Input(last_active_ms=now_ms))

    def observe(self, input_id: str, max_ts: int | None, now_ms: int, *,
                data: bool = True) -> None:
        """Record activity on an input, with the highest event time in what it delivered.
        ``data=False``: only a sign of life (an announcement), which does not end a declared
        idleness."""
        state = self._inputs.get(input_id)
        if state is None:
            state = self._inputs[input_id] = _Input()
        state.last_active_ms = now_ms
        state.ended = False
        if data:
            state.idle_since_ms = None
        if max_ts is not None and max_ts > state.max_ts:
            state.max_ts = max_ts

    def mark_idle(self, input_id: str, now_ms: int) -> None:
        """The input's source says it is caught up and quiet: stop waiting for it (until it
        delivers data again)."""
        state = self._inputs.setdefault(input_id, _Input(last_active_ms=now_ms))
        if state.idle_since_ms is None:
            state.idle_since_ms = now_ms

    def observe_watermark(self, input_id: str, watermark: int, now_ms: int) -> None:
        """Record an upstream input's own watermark (already net of its bound)."""
        self.observe(input_id, watermark + self.bound if watermark > NEG_INF else None, now_ms)

    def end(self, input_id: str) -> None:
        """A bounded input is exhausted: it never holds the watermark back again."""
        self._inputs.setdefault(input_id, _Input()).ended = True

    def remove(self, input_id: str) -> None:
        """An input went away (for example a revoked Kafka partition)."""
        self._inputs.pop(input_id, None)

    def input_watermark(self, input_id: str) -> int:
        state = self._inputs.get(input_id)
        if state is None:
            return NEG_INF
        if state.ended:
            return POS_INF
        return NEG_INF if state.max_ts == NEG_INF else state.max_ts - self.bound

    def watermark(self, now_ms: int) -> int:
        """The combined watermark at wall-clock time ``now_ms`` (monotonic)."""
        live: list[int] = []
        idle_projection = NEG_INF
        for state in self._inputs.values():
            if state.ended:
                continue
            idle_since = self._idle_since(state, now_ms)
            if idle_since is None:
                live.append(state.max_ts - self.bound if state.max_ts > NEG_INF else NEG_INF)
            elif state.max_ts > NEG_INF:
                projected = state.max_ts - self.bound + (now_ms - idle_since)
                idle_projection = max(idle_projection, projected)
        if live:
            candidate = min(live)
        elif idle_projection > NEG_INF:
            candidate = idle_projection
        elif any(s.ended for s in self._inputs.values()):
            # Every input has ended, or is idle without ever having produced an event (for
            # example a spout task with no partitions): nothing holds the ended ones back.
            candidate = POS_INF
        else:
            candidate = NEG_INF
        if candidate > self._current:
            self._current = candidate
        return self._current

    def _idle_since(self, state: _Input, now_ms: int) -> int | None:
        """When the input became idle (None: it is live at ``now_ms``)."""
        if state.idle_since_ms is not None:
            return min(state.idle_since_ms, now_ms)
        if self.idle_by_silence and now_ms - state.last_active_ms > self.idle_timeout:
            return state.last_active_ms + self.idle_timeout
        return None

    @property
    def current(self) -> int:
        """The watermark as of the last ``watermark()`` call."""
        return self._current

    def inputs(self) -> dict[str, int]:
        return {name: self.input_watermark(name) for name in self._inputs}
