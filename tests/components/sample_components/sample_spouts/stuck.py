"""A spout whose next_tuple() blocks for ``stuck.sleep`` seconds (default 60)."""

import time

from streamparse import Spout


class StuckSpout(Spout):
    outputs = ["n"]

    def initialize(self, storm_conf, context):
        self.sleep = float(storm_conf.get("stuck.sleep", 60))

    def next_tuple(self):
        time.sleep(self.sleep)
