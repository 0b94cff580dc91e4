"""Bolts that print() while processing: one guarded by protect_protocol_stream(), one not."""

from streamparse import Bolt

from forumstats.stdio_guard import protect_protocol_stream


class PrintingBolt(Bolt):
    outputs = ["value"]

    def initialize(self, storm_conf, context):
        protect_protocol_stream()

    def process(self, tup):
        print("oops")
        self.emit([tup.values[0]])


class UnguardedPrintingBolt(PrintingBolt):
    def initialize(self, storm_conf, context):
        pass
