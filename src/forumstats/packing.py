"""Compact in-memory form for state that is kept long but rarely read (pure).

A dict of counts or a window's results held for hours costs a dict entry, a key tuple and
its strings per row (~200 bytes); pickled and zlib-compressed (level 1) the same rows cost
~10-20 bytes. Packing 3,000 count rows takes ~2 ms (a window's distinct-user results ~10 ms),
so only state that has stopped changing is packed: windows past their allowed lateness kept
for replays (counting), hourly rolling buckets until they leave the 24-hour period (rolling).
In-process only, never stored.
"""

from __future__ import annotations

import pickle
import zlib
from typing import Any


class Packed:
    __slots__ = ("_data", "length")

    def __init__(self, value: Any) -> None:
        self._data = zlib.compress(pickle.dumps(value, protocol=5), 1)
        self.length = len(value) if hasattr(value, "__len__") else None

    def unpack(self) -> Any:
        return pickle.loads(zlib.decompress(self._data))


def unpack(value: Any) -> Any:
    """``value`` itself, or what it holds if it is Packed."""
    return value.unpack() if type(value) is Packed else value
