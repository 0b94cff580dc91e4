"""A bolt that breaks the multi-lang protocol in the way tuple value values[0] names."""

from streamparse import Bolt


class MisbehavingBolt(Bolt):
    outputs = ["value"]
    auto_ack = False

    def _raw(self, text):
        # Bypass pystorm's serializer checks; write straight to the protocol stream.
        with self._writer_lock:
            self.serializer.output_stream.write(text)
            self.serializer.output_stream.flush()

    def process(self, tup):
        action = tup.values[0]
        if action == "ack-unknown":
            self.ack("made-up-id")
        elif action == "fail-unknown":
            self.fail("made-up-id")
        elif action == "double-ack":
            self.ack(tup)
            self.ack(tup)
        elif action == "anchor-unknown":
            self.emit([action], anchors=["made-up-id"])
            self.ack(tup)
        elif action == "anchor-after-ack":
            self.ack(tup)
            self.emit([action], anchors=[tup.id])
        elif action == "not-json":
            self._raw("hello there\nend\n")
        elif action == "json-list":
            self._raw("[1, 2]\nend\n")
        elif action == "no-command":
            self.send_message({"id": tup.id})
        elif action == "unknown-command":
            self.send_message({"command": "bogus"})
        elif action == "undeclared-stream":
            self.emit([action], stream="nowhere")
            self.ack(tup)
        elif action == "wrong-field-count":
            self.emit([action, "extra"])
            self.ack(tup)
        elif action == "nan":
            self.emit([float("nan")])
            self.ack(tup)
        elif action == "direct":
            self.emit([action], direct_task=5)
            self.ack(tup)
        elif action == "exit":
            self._exit(3)
        else:
            self.emit([action])
            self.ack(tup)
