"""A bolt whose process() raises for the value "boom"."""

from streamparse import Bolt


class RaisingBolt(Bolt):
    outputs = ["value"]

    def process(self, tup):
        if tup.values[0] == "boom":
            raise ValueError("cannot process boom")
        self.emit([tup.values[0]])
