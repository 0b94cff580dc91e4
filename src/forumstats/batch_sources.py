"""Opens the spout's batch source from the topology conf: Kafka, or a local generator/file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .errors import SourceError
from .settings import Settings


def open_batch_source(settings: Settings, conf: dict[str, Any]):
    """A KafkaBatchSource, or for local runs a LocalBatchSource with the same interface."""
    batch_size = int(conf.get("forumstats.kafka.batch_size", 2000))
    max_in_flight = int(conf.get("topology.max.spout.pending") or 64)
    if settings.source == "kafka":
        from .kafka_settings import KafkaSourceSettings
        from .kafka_source import KafkaBatchSource

        return KafkaBatchSource(KafkaSourceSettings.from_options(conf))
    from .local_source import LocalBatchSource
    from .sources import GeneratorSource, NdjsonSource

    events = conf.get("forumstats.generator.events")
    if settings.source == "generator":
        source = GeneratorSource(events=int(events or 300_000),
                                 seed=int(conf.get("forumstats.generator.seed", 7)))
    elif Path(settings.source).is_file():
        source = NdjsonSource(Path(settings.source), limit=int(events) if events else None)
    else:
        raise SourceError(f"forumstats.source={settings.source!r} is neither kafka, generator "
                          "nor an existing NDJSON file")
    return LocalBatchSource(source, batch_size=batch_size, max_in_flight=max_in_flight,
                            started_ms=int(time.time() * 1000))
