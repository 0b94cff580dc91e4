"""A well-behaved bolt: echoes each tuple, reports tick tuples on a second stream."""

from streamparse import Bolt, Stream


class EchoBolt(Bolt):
    outputs = [Stream(fields=["value"]), Stream(fields=["freq"], name="ticks")]

    def process(self, tup):
        value = tup.values[0]
        if value == "need-task-ids":
            task_ids = self.emit([value], need_task_ids=True)
            self.logger.info("need-task-ids went to tasks %s", task_ids)
        elif value == "log":
            self.logger.warning("asked to log")
        else:
            self.emit([value])

    def process_tick(self, tup):
        self.emit([tup.values[0]], stream="ticks")
