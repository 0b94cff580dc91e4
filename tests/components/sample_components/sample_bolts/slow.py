"""A bolt that sleeps for values[0] seconds inside process() before acking."""

import time

from streamparse import Bolt


class SleepyBolt(Bolt):
    outputs = ["slept"]

    def process(self, tup):
        time.sleep(float(tup.values[0]))
        self.emit([tup.values[0]])
