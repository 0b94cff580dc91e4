"""forumstats: exact event-time forum statistics from Kafka to Parquet, on Apache Storm.

The modules directly in this package that are listed in ``CORE_MODULES`` are the pure
core: no I/O, no clock reads, no imports of streamparse, kafka or boto3.
"""

__version__ = "0.1.0"

CORE_MODULES = (
    "forumstats.errors",
    "forumstats.settings",
    "forumstats.events",
    "forumstats.deadletters",
    "forumstats.windows",
    "forumstats.watermarks",
    "forumstats.engine",
    "forumstats.schemas",
    "forumstats.keys",
    "forumstats.parquet",
    "forumstats.generator",
    "forumstats.durations",
    "forumstats.rolling",
    "forumstats.trending",
    "forumstats.distinct",
    "forumstats.batching",
    "forumstats.counting",
    "forumstats.packing",
    "forumstats.inflight",
    "forumstats.latest",
    "forumstats.offsets",
    "forumstats.pacing",
    "forumstats.kafka_settings",
)
