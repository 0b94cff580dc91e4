"""The multi-lang driver lives in forumstats.multilang (``forumstats run --multilang`` uses it
too); this module is that same module under its test-suite name."""

import sys

from forumstats import multilang as _driver

sys.modules[__name__] = _driver
