"""Watermarks over several inputs (Kafka partitions or upstream tasks).

Per input: the highest event time seen minus the out-of-orderness bound. Combined: the minimum
over live inputs. An input silent for longer than the idle timeout (wall-clock, passed in as
``now_ms``) stops holding the watermark back. When every input is idle, event time is assumed
to move on with wall-clock time from where each input fell silent, so the last windows of a
quiet stream still close. An input idle without ever having produced an event holds nothing
back, so when the others have ended the watermark still reaches +infinity. An ended (bounded)
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


class WatermarkTracker:
    def __init__(self, out_of_orderness_ms: int, idle_timeout_ms: int) -> None:
        self.bound = out_of_orderness_ms
        self.idle_timeout = idle_timeout_ms
        self._inputs: dict[str, _Input] = {}
        self._current = NEG_INF

    def register(self, input_id: str, now_ms: int) -> None:
        """Announce an input that has produced nothing yet: it holds the watermark until idle."""
        self._inputs.setdefault(input_id, _Input(last_active_ms=now_ms))

    def observe(self, input_id: str, max_ts: int | None, now_ms: int) -> None:
        """Record activity on an input, with the highest event time in what it delivered."""
        state = self._inputs.get(input_id)
        if state is None:
            state = self._inputs[input_id] = _Input()
        state.last_active_ms = now_ms
        state.ended = False
        if max_ts is not None and max_ts > state.max_ts:
            state.max_ts = max_ts

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
            silent_ms = now_ms - state.last_active_ms
            if silent_ms <= self.idle_timeout:
                live.append(state.max_ts - self.bound if state.max_ts > NEG_INF else NEG_INF)
            elif state.max_ts > NEG_INF:
                projected = state.max_ts - self.bound + (silent_ms - self.idle_timeout)
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

    @property
    def current(self) -> int:
        """The watermark as of the last ``watermark()`` call."""
        return self._current

    def inputs(self) -> dict[str, int]:
        return {name: self.input_watermark(name) for name in self._inputs}
