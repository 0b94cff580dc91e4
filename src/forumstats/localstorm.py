"""Runs a streamparse Topology class in one process with Storm's semantics.

Same components, groupings, parallelism and per-component config as on a cluster; tuples go
through a JSON round trip as they would over multi-lang; Storm's ack tree (a spout tuple is
acked when every tuple anchored to it is acked, failed when any is failed or when it times out
after ``topology.message.timeout.secs``), ``topology.max.spout.pending`` per spout task, and tick
tuples at each bolt's ``topology.tick.tuple.freq.secs``. Acking an unknown id is an error here as
it kills a Storm worker.

A multi-lang task whose subprocess dies is handled as Storm handles a dead worker: the task is
restarted (a fresh subprocess, fresh state), the tuples that were delivered to the dead one are
forgotten, so the spout tuples they belong to time out after ``topology.message.timeout.secs``
and are replayed; a dead spout task loses its pending tuples (their acks go nowhere, the source
replays what it never committed).
"""

from __future__ import annotations

import io
import logging
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pystorm.component import Tuple

log = logging.getLogger("forumstats.localstorm")


class LocalStormError(RuntimeError):
    """A component broke a rule that would kill a Storm worker."""


def java_hash(value: Any) -> int:
    """Java's hashCode for the JSON value types Storm's fields grouping sees."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1231 if value else 1237
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return value  # Integer.hashCode
        value &= 0xFFFFFFFFFFFFFFFF
        return _int32(value ^ (value >> 32))  # Long.hashCode
    if isinstance(value, str):
        h = 0
        for unit in value.encode("utf-16-be").hex(" ", 2).split():
            h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
        return _int32(h)
    if isinstance(value, (list, tuple)):
        h = 1
        for item in value:
            h = (31 * h + java_hash(item)) & 0xFFFFFFFF
        return _int32(h)
    return hash(orjson.dumps(value)) & 0x7FFFFFFF


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - 2**32 if v >= 2**31 else v


@dataclass
class _Task:
    task_id: int
    component: str
    index: int
    instance: Any
    is_spout: bool
    tick_secs: float | None = None
    next_tick: float = 0.0
    pending_roots: int = 0  # spouts: reliable tuples in flight


@dataclass
class _Root:
    key: int
    task: _Task
    msg_id: Any
    started: float
    outstanding: int = 0
    failed: bool = False


@dataclass
class _Instance:
    roots: frozenset
    done: bool = False
    task_id: int = 0  # the task it was delivered to


@dataclass
class LocalStats:
    spout_tuples: int = 0
    bolt_tuples: int = 0
    acked: int = 0
    failed: int = 0
    timed_out: int = 0
    worker_restarts: int = 0
    by_stream: dict = field(default_factory=dict)


class LocalCluster:
    """``multilang_cwd``: when set, every task runs as a ``streamparse_run`` subprocess with
    that working directory (the resources folder), driven over Storm's multi-lang protocol by
    forumstats.multilang, as a Storm worker would; otherwise components run in this process."""

    def __init__(self, topology_cls: type, conf: dict[str, Any], name: str = "local",
                 clock: Callable[[], float] = time.monotonic,
                 multilang_cwd: str | None = None) -> None:
        self.multilang_cwd = multilang_cwd
        self.topology = topology_cls
        self.conf = {"topology.name": name, "topology.message.timeout.secs": 30,
                     "topology.max.spout.pending": None, **conf}
        self.clock = clock
        self.stats = LocalStats()
        self.tasks: dict[int, _Task] = {}
        self.by_component: dict[str, list[_Task]] = {}
        self.subscribers: dict[tuple[str, str], list[tuple[str, Any]]] = {}
        self.queue: deque[tuple[_Task, Tuple, _Instance]] = deque()
        self.instances: dict[str, _Instance] = {}
        self.roots: dict[int, _Root] = {}
        self._next_id = 0
        self._next_root = 0
        # Called as observer(component, task_id, stream, values, msg_id) for every emit.
        self.observers: list[Callable[[str, int, str, list, Any], None]] = []
        self._rng = random.Random(0)
        self._build()

    # -- construction ---------------------------------------------------------------------
    def _build(self) -> None:
        task_id = 1
        for spec in self.topology.specs:
            for index in range(spec.par):
                self.tasks[task_id] = _Task(task_id, spec.name, index, None,
                                            spec.name in self.topology.thrift_spouts)
                self.by_component.setdefault(spec.name, []).append(self.tasks[task_id])
                task_id += 1
            for stream_id, grouping in spec.inputs.items():
                key = (stream_id.componentId, stream_id.streamId)
                self.subscribers.setdefault(key, []).append((spec.name, grouping))
        fields = {spec.name: {s: list(info.output_fields) for s, info in spec.outputs.items()}
                  for spec in self.topology.specs}
        task_to_component = {str(t.task_id): t.component for t in self.tasks.values()}
        for spec in self.topology.specs:
            comp_conf = {**self.conf, **orjson.loads(spec.config or "{}")}
            sources = {s.componentId: fields[s.componentId] for s in spec.inputs}
            for task in self.by_component[spec.name]:
                context = {"taskid": task.task_id, "componentid": spec.name,
                           "task->component": task_to_component,
                           "source->stream->fields": sources}
                if self.multilang_cwd:
                    task.instance = _Subprocess(self, task, spec.name, comp_conf)
                else:
                    task.instance = self._instantiate(spec.component_cls, task, comp_conf,
                                                      context)
                freq = comp_conf.get("topology.tick.tuple.freq.secs")
                if not task.is_spout and freq:
                    task.tick_secs = float(freq)
                    task.next_tick = self.clock() + task.tick_secs

    def _instantiate(self, cls: type, task: _Task, conf: dict, context: dict) -> Any:
        return in_process_component(cls, conf, context,
                                    lambda msg, t=task: self._on_message(t, msg))

    # -- running --------------------------------------------------------------------------
    def run(self, until: Callable[[], bool], idle_sleep: float = 0.001) -> LocalStats:
        """Drive spouts and bolts until ``until()`` is true."""
        while not until():
            progressed = self.step()
            if not progressed:
                time.sleep(idle_sleep)
        return self.stats

    def step(self) -> bool:
        """One round: ticks, timeouts, one next_tuple per eligible spout task, drain bolts."""
        now = self.clock()
        self._ticks(now)
        self._timeouts(now)
        progressed = False
        cap = self.conf.get("topology.max.spout.pending")
        for task in self.tasks.values():
            if task.is_spout and (cap is None or task.pending_roots < cap):
                before = self.stats.spout_tuples
                task.instance.next_tuple()
                progressed |= self.stats.spout_tuples != before
        while self.queue:
            self._deliver(*self.queue.popleft())
            progressed = True
        if self.multilang_cwd:
            for task in self.tasks.values():
                if not task.is_spout:
                    progressed |= task.instance.pump()
        return progressed

    def shutdown(self) -> None:
        """Deactivate spouts (a spout commits what is acked), then stop every task."""
        for task in self.tasks.values():
            if task.is_spout:
                task.instance.deactivate()
        for task in self.tasks.values():
            close = getattr(task.instance, "close", None)
            if close:
                close()

    def _ticks(self, now: float) -> None:
        for task in self.tasks.values():
            if task.tick_secs and now >= task.next_tick:
                task.next_tick = now + task.tick_secs
                self._enqueue(task, "__system", "__tick", -1, [int(task.tick_secs)], frozenset())

    def _timeouts(self, now: float) -> None:
        timeout = float(self.conf["topology.message.timeout.secs"])
        expired = [r for r in self.roots.values() if now - r.started > timeout]
        if expired:
            log.warning("%d spout tuple(s) timed out after topology.message.timeout.secs=%g: "
                        "failed, to be replayed", len(expired), timeout)
        for root in expired:
            self.stats.timed_out += 1
            self._finish_root(root, ok=False)

    # -- tuples ---------------------------------------------------------------------------
    def _new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def _deliver(self, task: _Task, tup: Tuple, inst: _Instance) -> None:
        if inst.done:
            return  # queued for a worker that died since: lost with it, as on Storm
        if self.multilang_cwd:
            task.instance.send(tup)
            return
        bolt = task.instance
        bolt._current_tups = [tup]
        if tup.stream == "__tick":
            bolt.process_tick(tup)
        else:
            bolt.process(tup)
        if bolt.auto_ack:
            bolt.ack(tup)
        bolt._current_tups = []

    def _enqueue(self, task: _Task, comp: str, stream: str, source_task: int, values: list,
                 roots: frozenset, encoded: bytes | None = None) -> None:
        tup_id = self._new_id()
        inst = _Instance(roots, task_id=task.task_id)
        self.instances[tup_id] = inst
        for root_key in roots:
            self.roots[root_key].outstanding += 1
        kind = getattr(task.instance, "_source_tuple_types", {}).get(comp, {}).get(stream)
        # Through JSON, as over multi-lang: each task gets its own copy, with JSON's types
        values = orjson.loads(orjson.dumps(values) if encoded is None else encoded)
        tup = Tuple(tup_id, comp, stream, source_task,
                    tuple(values) if kind is None else kind(*values))
        self.queue.append((task, tup, inst))

    def _route(self, source: _Task, stream: str, values: list, roots: frozenset) -> int:
        delivered = 0
        fields = None
        encoded = None
        for component, grouping in self.subscribers.get((source.component, stream), []):
            targets = self.by_component[component]
            if grouping.fields is not None:
                if fields is None:
                    fields = self._output_fields(source.component, stream)
                key = [values[fields.index(f)] for f in grouping.fields]
                chosen = [targets[java_hash(key) % len(targets)]] if key else [targets[0]]
            elif grouping.all is not None:
                chosen = targets
            else:  # shuffle, local_or_shuffle, none
                chosen = [targets[self._rng.randrange(len(targets))]]
            if encoded is None:
                encoded = orjson.dumps(values)  # once for every subscriber and target
            for target in chosen:
                self._enqueue(target, source.component, stream, source.task_id, values, roots,
                              encoded)
                delivered += 1
        self.stats.by_stream[(source.component, stream)] = (
            self.stats.by_stream.get((source.component, stream), 0) + 1)
        return delivered

    def _output_fields(self, component: str, stream: str) -> list[str]:
        spec = next(s for s in self.topology.specs if s.name == component)
        return list(spec.outputs[stream].output_fields)

    # -- messages from components -------------------------------------------------------
    def _on_message(self, task: _Task, msg: dict) -> None:
        command = msg.get("command")
        if command == "emit":
            self._on_emit(task, msg)
        elif command in ("ack", "fail"):
            self._on_ack(msg["id"], command == "ack")
        elif command == "log":
            log.log(_LEVELS.get(msg.get("level", 2), logging.INFO), "%s[%d] %s",
                    task.component, task.task_id, msg.get("msg"))
        elif command == "error":
            log.error("%s[%d] reported: %s", task.component, task.task_id, msg.get("msg"))
        elif command in ("sync", "metrics"):
            pass
        else:
            raise LocalStormError(f"{task.component} sent unknown command {command!r}")

    def _on_emit(self, task: _Task, msg: dict) -> None:
        stream = msg.get("stream") or "default"
        values = list(msg["tuple"])
        for observer in self.observers:
            observer(task.component, task.task_id, stream, values, msg.get("id"))
        if task.is_spout:
            self.stats.spout_tuples += 1
            msg_id = msg.get("id")
            if msg_id is None:
                self._route(task, stream, values, frozenset())
                return
            self._next_root += 1
            key = self._next_root
            self.roots[key] = _Root(key, task, msg_id, self.clock())
            task.pending_roots += 1
            if self._route(task, stream, values, frozenset({key})) == 0:
                self._finish_root(self.roots[key], ok=True)
            return
        self.stats.bolt_tuples += 1
        roots: set = set()
        for anchor in msg.get("anchors") or []:
            inst = self.instances.get(str(anchor))
            if inst is None or inst.done:
                raise LocalStormError(f"{task.component} anchored to unknown tuple {anchor!r}")
            roots |= inst.roots
        self._route(task, stream, values, frozenset(r for r in roots if r in self.roots))

    def _on_ack(self, tup_id: str, ok: bool) -> None:
        inst = self.instances.pop(str(tup_id), None)
        if inst is None:
            raise LocalStormError(f"ack/fail of unknown or finished tuple {tup_id!r}")
        inst.done = True
        for key in inst.roots:
            root = self.roots.get(key)
            if root is None:
                continue  # already failed or timed out
            if not ok:
                self._finish_root(root, ok=False)
                continue
            root.outstanding -= 1
            if root.outstanding == 0:
                self._finish_root(root, ok=True)

    def _worker_died(self, task: _Task, exc: BaseException) -> None:
        """Storm's answer to a dead worker: restart the task; what it held is lost, so the
        spout tuples behind it time out and are replayed."""
        self.stats.worker_restarts += 1
        log.warning("%s[%d] died (%s); restarting it, its in-flight tuples will time out "
                    "after topology.message.timeout.secs and be replayed",
                    task.component, task.task_id, str(exc).splitlines()[0][:300])
        if task.is_spout:
            for root in [r for r in self.roots.values() if r.task is task]:
                del self.roots[root.key]  # no one left to ack or fail them
            task.pending_roots = 0
        else:
            for tup_id in [i for i, inst in self.instances.items()
                           if inst.task_id == task.task_id]:
                self.instances.pop(tup_id).done = True
        task.instance.restart()

    def _finish_root(self, root: _Root, ok: bool) -> None:
        del self.roots[root.key]
        root.task.pending_roots -= 1
        if ok:
            self.stats.acked += 1
            root.task.instance.ack(root.msg_id)
        else:
            self.stats.failed += 1
            root.task.instance.fail(root.msg_id)


class _Subprocess:
    """One task as a multi-lang subprocess; speaks for it towards the LocalCluster."""

    def __init__(self, cluster: LocalCluster, task: _Task, component: str, conf: dict) -> None:

        self.cluster = cluster
        self.task = task
        self.component = component
        self.conf = conf
        self.shell = self._start()

    def _start(self):
        from . import multilang

        kind = multilang.ShellSpout if self.task.is_spout else multilang.ShellBolt
        extra = {} if self.task.is_spout else {"heartbeat_interval": 1.0}
        return kind.from_topology(self.cluster.topology, self.component,
                                  cwd=self.cluster.multilang_cwd, conf=self.conf,
                                  task_index=self.task.index, **extra)

    def restart(self) -> None:
        try:
            self.shell.kill()
        except Exception:  # noqa: BLE001 - it is dead already; nothing to save
            log.debug("cleaning up a dead %s subprocess failed", self.component, exc_info=True)
        self.shell = self._start()

    def _guarded(self, call: Callable[[], Any]) -> Any:
        from .multilang import WorkerDied

        try:
            return call()
        except WorkerDied as exc:
            self.cluster._worker_died(self.task, exc)
            return None

    # spout side
    def next_tuple(self) -> None:
        self._guarded(lambda: self._relay(self.shell.next()))

    def ack(self, msg_id: Any) -> None:
        self._guarded(lambda: self._relay(self.shell.ack(msg_id)))

    def fail(self, msg_id: Any) -> None:
        self._guarded(lambda: self._relay(self.shell.fail(msg_id)))

    def deactivate(self) -> None:
        self._guarded(lambda: self._relay(self.shell.deactivate()))

    def _relay(self, step: Any) -> None:
        for emit in step.emits:
            self.cluster._on_message(self.task, {"command": "emit", "tuple": emit.values,
                                                 "stream": emit.stream, "id": emit.msg_id})
        for record in step.logs:
            self.cluster._on_message(self.task, {"command": "log", "msg": record.msg,
                                                 "level": record.level})
        for error in step.errors:
            self.cluster._on_message(self.task, {"command": "error", "msg": error})

    # bolt side
    def send(self, tup: Tuple) -> None:
        self._guarded(lambda: self.shell.send_tuple(
            list(tup.values), comp=tup.component, stream=tup.stream, task=tup.task, id=tup.id))

    def pump(self) -> bool:
        messages = self._guarded(lambda: self.shell.pump(0))
        for msg in messages or []:
            if msg["command"] != "sync":
                self.cluster._on_message(self.task, msg)
        return bool(messages)

    def close(self) -> None:
        self.shell.close()


_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING,
           4: logging.ERROR}


def in_process_component(cls: type, conf: dict, context: dict,
                         send_message: Callable[[dict], None]) -> Any:
    """A streamparse component set up in this process; what it would write to Storm goes to
    ``send_message`` instead."""
    instance = cls(input_stream=io.BytesIO(), output_stream=io.BytesIO(), rdb_signal=None)
    root = logging.getLogger()
    handlers, stdout = list(root.handlers), sys.stdout
    instance.send_message = send_message
    try:
        instance._setup_component(conf, context)
        instance.initialize(conf, context)
    finally:
        # In one process the runner's stdout and logging stay ours: what pystorm and the
        # components' stdout guard set up is for a multi-lang subprocess.
        root.handlers[:] = handlers
        sys.stdout = stdout
    return instance
