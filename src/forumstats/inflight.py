"""How large a spout's batches must be for the batches it may have in flight to ever be acked.

A counting task holds each batch (un-acked) until every window it touched has been written, and
a window is written once the watermark passes its end: once events ``out_of_orderness`` later
than the window's end have been read, up to ``window + out_of_orderness`` past the batch's own
latest event. The spout may have at most
``max.spout.pending / (buckets + 1)`` batches in flight, so those batches together must span
more event time than that, or every one of them is held, none is acked, and the topology stops.
A dense stream (many events per second of event time) needs larger batches.

``EventDensity`` measures events per millisecond of event-time progress (of the highest event
time handed out, which is what moves the watermark; late stragglers do not stretch it);
``batch_size_needed`` turns it into a batch size with a safety factor of two, and
``batches_to_span`` into how many batches are worth having in flight at all.
"""

from __future__ import annotations

import math

SAFETY = 2  # the batches in flight span twice what the oldest window needs
MIN_SPAN_MS = 200  # measure density over at least this much event time


class EventDensity:
    """Accepted events per ms that the highest event time handed out moved on, counted from
    the first batch's highest event time."""

    def __init__(self) -> None:
        self.events = 0  # accepted events handed out after the first batch
        self.low: int | None = None
        self.high: int | None = None

    def add(self, events: int, max_ts: int | None) -> None:
        if not events or max_ts is None:
            return
        if self.low is None:
            self.low = self.high = max_ts
            return
        self.events += events
        self.high = max(self.high, max_ts)

    def per_ms(self) -> float | None:
        """None until the highest event time moved MIN_SPAN_MS."""
        if self.low is None or self.high - self.low < MIN_SPAN_MS:
            return None
        return self.events / (self.high - self.low)


def _records_to_span(per_ms: float, window_ms: int, out_of_orderness_ms: int) -> float:
    """Records that span SAFETY times the event time a window needs before it is written."""
    return per_ms * SAFETY * (window_ms + out_of_orderness_ms)


def batch_size_needed(per_ms: float | None, *, window_ms: int, out_of_orderness_ms: int,
                      batches_in_flight: int) -> int | None:
    """Records per batch so that ``batches_in_flight`` batches span SAFETY times the event
    time a window needs before it can be written; None while the density is unknown."""
    if per_ms is None or batches_in_flight <= 0:
        return None
    return math.ceil(_records_to_span(per_ms, window_ms, out_of_orderness_ms)
                     / batches_in_flight)


def batches_to_span(per_ms: float | None, *, window_ms: int, out_of_orderness_ms: int,
                    batch_size: int, at_least: int) -> int | None:
    """Batches of ``batch_size`` that span SAFETY times what a window needs (at least
    ``at_least``): more in flight only holds more memory, as the counting tasks hold them
    all until windows close; None while the density is unknown."""
    if per_ms is None:
        return None
    return max(at_least, math.ceil(_records_to_span(per_ms, window_ms, out_of_orderness_ms)
                                   / batch_size))
