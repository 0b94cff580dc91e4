"""``forumstats dashboard``: a read-only web page and JSON API over ``latest/``.

See :mod:`forumstats.dashboard.server`. The page (``static/``) draws its charts as plain SVG,
so nothing is fetched from anywhere but this server.
"""

from .server import (
    DEFAULT_PORT,
    DEFAULT_REFRESH_MS,
    DEFAULT_STALE_AFTER_MS,
    DashboardServer,
    LatestSource,
    freshness,
    make_server,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_REFRESH_MS",
    "DEFAULT_STALE_AFTER_MS",
    "DashboardServer",
    "LatestSource",
    "freshness",
    "make_server",
]
