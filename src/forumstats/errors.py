"""Exceptions of the forumstats package. Messages say what the user should do."""


class ForumstatsError(Exception):
    """Base class for every error forumstats raises on purpose."""


class ConfigError(ForumstatsError):
    """A setting is missing, malformed or inconsistent with another one."""


class StoreError(ForumstatsError):
    """The output store (local directory or S3) could not complete an operation."""


class SourceError(ForumstatsError):
    """An input source (generator, NDJSON file, Kafka) could not be opened or read."""
