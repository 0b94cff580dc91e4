"""Emits 0, 1, 2, ... up to the ``counter.limit`` conf value, one per next(), reliably.

A failed tuple is emitted again with the same message id. ``counter.unreliable`` makes
it emit without message ids instead.
"""

from streamparse import Spout


class CounterSpout(Spout):
    outputs = ["n"]

    def initialize(self, storm_conf, context):
        self.limit = int(storm_conf.get("counter.limit", 3))
        self.reliable = not storm_conf.get("counter.unreliable", False)
        self.n = 0

    def next_tuple(self):
        if self.n >= self.limit:
            return
        if self.reliable:
            self.emit([self.n], tup_id=f"n-{self.n}")
        else:
            self.emit([self.n])
        self.n += 1

    def ack(self, tup_id):
        self.logger.info("acked %s", tup_id)

    def fail(self, tup_id):
        self.logger.info("failed %s, replaying", tup_id)
        self.emit([int(tup_id.split("-")[1])], tup_id=tup_id)

    def activate(self):
        self.logger.info("activated")

    def deactivate(self):
        self.logger.info("deactivated")
