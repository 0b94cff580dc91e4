"""Writes window results and dead letters to a store under the keys of forumstats.keys."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import keys
from .deadletters import DeadLetter
from .engine import WindowResult
from .parquet import dead_letters_table, encode_table, encode_window
from .stores import Store


@dataclass
class SinkStats:
    windows_written: int = 0
    restatements: int = 0
    objects_written: int = 0
    dead_letters_written: int = 0


class WindowSink:
    """Writes one key bucket's (``part``) objects. Keys are deterministic, so a rewrite replaces
    an object instead of adding one."""

    def __init__(self, store: Store, part: int = 0) -> None:
        self.store = store
        self.part = part
        self.stats = SinkStats()

    def write_windows(self, results: Iterable[WindowResult],
                      offsets: Mapping[str, list] | None = None) -> None:
        for result in results:
            for dataset, data in encode_window(result, offsets).items():
                self.store.put(keys.window_key(dataset, result.size_ms, result.start_ms,
                                               self.part), data)
                self.stats.objects_written += 1
            self.stats.windows_written += 1
            if result.revision > 1:
                self.stats.restatements += 1

    def write_dead_letters(self, records: list[DeadLetter], *, source: str, first: int,
                           last: int, origin: str, source_ms: int) -> None:
        """Dead letters of the input range [first, last]; one object per range and origin."""
        if not records:
            return
        key = keys.dead_letters_key(source_ms, source, first, last, origin)
        self.store.put(key, encode_table(dead_letters_table(records)))
        self.stats.objects_written += 1
        self.stats.dead_letters_written += len(records)
