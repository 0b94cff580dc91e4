"""Holds tuples un-acked until a tick, then emits one count anchored to all of them."""

from streamparse import Bolt


class CountingBolt(Bolt):
    outputs = ["count"]
    auto_ack = False
    auto_anchor = False

    def initialize(self, storm_conf, context):
        self.held = []

    def process(self, tup):
        self.held.append(tup)

    def process_tick(self, tup):
        if self.held:
            self.emit([len(self.held)], anchors=self.held)
            for held in self.held:
                self.ack(held)
            self.held = []
        self.ack(tup)
