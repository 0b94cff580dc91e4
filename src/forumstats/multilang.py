"""Drive a multi-lang component subprocess exactly as a Storm worker's Java side does.

Storm cannot run here, so components are proven against this driver: it launches the
component the way Storm's ``ShellProcess`` does (argv ``[execution_command, script]``, no
shell, working directory = the topology's ``resources`` folder, the caller's environment),
performs the handshake, and then plays ``ShellBolt`` (reader thread, writer thread with a
bounded queue of ``topology.shellbolt.max.pending`` tuples, heartbeats) or ``ShellSpout``
(synchronous ``next``/``ack``/``fail``/``activate``/``deactivate``, each ended by ``sync``).

Everything the component writes is validated the way Storm 2.x treats it. Whatever would
kill a Storm worker (exit 11) raises :class:`WorkerDied` or one of its subclasses:

* :class:`ProtocolViolation`: unparseable output, a JSON value that is not an object, no
  or unknown ``command``, a field of the wrong type (a failed cast on the Java side),
  acking/failing an id that is unknown or already finished, anchoring onto one, emitting
  on an undeclared stream or with the wrong number of fields, a direct emit (Storm 2.6+
  reads the task with json-smart as an Integer and casts it to Long), a non-finite number.
* :class:`SubprocessExited`: the pipe closed ("Pipe to subprocess seems to be broken!").
* :class:`SubprocessTimeout`: no message for ``topology.subprocess.timeout.secs``
  ("subprocess heartbeat timeout"), or a heartbeat/``sync`` not answered in time.

Also raised: :class:`MessageDropped` when pystorm logs that it could not serialise a
message and dropped it (a NaN, with simplejson >= 3.19; Storm would never notice),
:class:`WaitTimeout` when a test's own patience runs out, :class:`DriverUsageError` when
a test asks for something Storm never does (acking an id a spout never emitted, feeding
a bolt a stream it does not subscribe to).

Typical use::

    with ShellBolt(STREAMPARSE_RUN, "bolts.windows.WindowBolt", cwd=SRC,
                   outputs={"default": ["key", "count"]},
                   inputs={("events", "default"): ["event"]}) as bolt:
        result = bolt.execute([event])          # send, wait for ack/fail, settle
        assert result.acked and result.values() == [["k", 1]]
        bolt.tick()                             # a tick tuple, acked

    spout = ShellSpout.from_topology(MyTopology, "events", cwd=SRC, conf={...})
    step = spout.next()                         # emits up to the sync
    spout.ack(step.msg_ids[0])

Deliberate differences from Storm, all on the strict side: Storm 2.x's ShellBolt silently
ignores unknown commands (its ShellSpout throws); this driver rejects them for both.
Storm 2.x decodes invalid UTF-8 to U+FFFD; the driver rejects it. The driver also checks
that the pid file exists and that the reported pid is the child's real pid.

Standard library only, so a local runner can import it too.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_CONF",
    "STREAMPARSE_RUN",
    "BackpressureTimeout",
    "DriverUsageError",
    "Emit",
    "Execution",
    "HandshakeError",
    "LogRecord",
    "MessageDropped",
    "MultilangError",
    "ProtocolViolation",
    "ShellBolt",
    "ShellProcess",
    "ShellSpout",
    "SpoutStep",
    "SubprocessExited",
    "SubprocessTimeout",
    "TupleFailed",
    "WaitTimeout",
    "WorkerDied",
    "component_conf",
    "context_from_topology",
    "grouping_json",
    "make_context",
]

HEARTBEAT_STREAM = "__heartbeat"
SYSTEM_COMPONENT = "__system"
TICK_STREAM = "__tick"
SYSTEM_TASK_ID = -1
DEFAULT_STREAM = "default"
LOG_LEVEL_NAMES = {0: "TRACE", 1: "DEBUG", 2: "INFO", 3: "WARN", 4: "ERROR"}

#: The ``streamparse_run`` next to the running interpreter (the project virtualenv's).
STREAMPARSE_RUN = os.path.join(os.path.dirname(sys.executable), "streamparse_run")

#: The base of every handshake conf: the Storm 2.8 defaults (defaults.yaml) the Java side
#: acts on, plus the keys Nimbus adds. ``conf=`` arguments are merged over it.
DEFAULT_CONF: dict[str, Any] = {
    "topology.name": "driver-topology",
    "storm.id": "driver-topology-1-1700000000",
    "storm.cluster.mode": "distributed",
    "topology.debug": False,
    "topology.workers": 1,
    "topology.acker.executors": 1,
    "topology.message.timeout.secs": 30,
    "topology.max.spout.pending": None,
    "topology.shellbolt.max.pending": 100,
    "topology.multilang.serializer": "org.apache.storm.multilang.JsonSerializer",
    "supervisor.worker.timeout.secs": 30,
}

_PYSTORM_DROPPED = "Failed to send message: "
_BOLT_COMMANDS = frozenset({"emit", "ack", "fail", "log", "error", "sync", "metrics"})
_SPOUT_COMMANDS = frozenset({"emit", "log", "error", "sync", "metrics"})
_GROUPING_FIELDS = (
    "fields",
    "shuffle",
    "all",
    "none",
    "direct",
    "custom_object",
    "custom_serialized",
    "local_or_shuffle",
)


# --------------------------------------------------------------------------- errors


class MultilangError(Exception):
    """Base class of everything this driver raises."""


class WorkerDied(MultilangError):
    """What happened would make Storm's Java side kill the worker (exit 11)."""


class ProtocolViolation(WorkerDied):
    """The component wrote something Storm cannot accept."""


class HandshakeError(ProtocolViolation):
    """The handshake failed: no or wrong ``{"pid"}`` reply, or no pid file."""


class SubprocessExited(WorkerDied):
    """The component's stdout closed (it exited or crashed)."""

    def __init__(self, message: str, returncode: int | None = None, trailing: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.trailing = trailing


class SubprocessTimeout(WorkerDied):
    """The component stayed silent longer than Storm tolerates."""


class WaitTimeout(MultilangError, AssertionError):
    """A test's own patience ran out (the worker would not necessarily die)."""


class BackpressureTimeout(WaitTimeout):
    """``send_tuple`` stayed blocked on a full ``topology.shellbolt.max.pending`` queue."""


class TupleFailed(MultilangError, AssertionError):
    """``wait_acked`` saw the bolt fail a tuple."""


class MessageDropped(MultilangError, AssertionError):
    """pystorm logged "Failed to send message": it could not serialise a message (e.g. a
    NaN with simplejson >= 3.19) and dropped it. The tuple is still acked: silent loss."""


class DriverUsageError(MultilangError):
    """The test asked for something Storm would never do."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class LogRecord:
    level: int
    msg: str

    @property
    def level_name(self) -> str:
        return LOG_LEVEL_NAMES.get(self.level, str(self.level))


@dataclass
class Emit:
    stream: str
    values: list
    anchors: tuple[str, ...] = ()
    task: int | None = None  # direct emit target
    need_task_ids: bool = True
    msg_id: Any = None  # spouts: the message id (None = unreliable emit)
    task_ids: list[int] | None = None  # what the driver replied, if it did


@dataclass
class SentTuple:
    id: str
    comp: str
    stream: str
    task: int
    values: list
    sent_at: float


@dataclass
class Execution:
    """What happened while one tuple went through a bolt (see ``ShellBolt.execute``)."""

    id: str
    outcome: str  # "ack" or "fail"
    emits: list[Emit]
    logs: list[LogRecord]
    errors: list[str]

    @property
    def acked(self) -> bool:
        return self.outcome == "ack"

    def values(self, stream: str = DEFAULT_STREAM) -> list[list]:
        return [e.values for e in self.emits if e.stream == stream]


@dataclass
class SpoutStep:
    """What happened during one spout command, up to and including its ``sync``."""

    command: str
    id: Any
    emits: list[Emit]
    logs: list[LogRecord]
    errors: list[str]
    elapsed: float

    def values(self, stream: str = DEFAULT_STREAM) -> list[list]:
        return [e.values for e in self.emits if e.stream == stream]

    @property
    def msg_ids(self) -> list:
        return [e.msg_id for e in self.emits if e.msg_id is not None]


# --------------------------------------------------------------------------- contexts


def grouping_json(grouping: Any) -> dict:
    """Storm's ``groupingToJSONableMap`` for a Thrift ``Grouping`` union (duck-typed)."""
    for name in _GROUPING_FIELDS:
        value = getattr(grouping, name, None)
        if value is not None:
            out: dict[str, Any] = {"type": name.upper()}
            if name == "fields":
                out["fields"] = list(value)
            return out
    raise ValueError(f"grouping with no field set: {grouping!r}")


def make_context(
    component_id: str,
    *,
    task_id: int | None = None,
    outputs: Mapping[str, Sequence[str]] | None = None,
    inputs: Mapping[tuple[str, str], Sequence[str] | None] | None = None,
    targets: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    acker_tasks: int = 1,
) -> dict:
    """Build the ``context`` of the handshake as Storm's ``TopologyContext.toJSONString``.

    ``outputs``: this component's streams, ``{stream: [fields]}``.
    ``inputs``: ``{(source_component, stream): [fields] or None}`` with shuffle grouping;
    ``None`` fields leave the source out of ``source->stream->fields`` (pystorm then
    hands plain tuples to ``process``).
    ``targets``: ``{stream: {target_component: {"type": "SHUFFLE", ...}}}``.
    Task ids follow Storm's layout: components sorted by id, numbered from 1, one task
    each, ``__acker`` included.
    """
    outputs = {s: list(f) for s, f in (outputs or {}).items()}
    inputs = dict(inputs or {})
    targets = {s: dict(t) for s, t in (targets or {}).items()}
    names = {component_id}
    names.update(src for src, _ in inputs)
    for t in targets.values():
        names.update(t)
    if acker_tasks:
        names.add("__acker")
    task_to_component: dict[str, str] = {}
    next_id = 1
    own_task = task_id
    for name in sorted(names):
        count = acker_tasks if name == "__acker" else 1
        for _ in range(count):
            if task_id is not None and next_id == task_id and name != component_id:
                next_id += 1
            if name == component_id and task_id is not None:
                task_to_component[str(task_id)] = name
                continue
            task_to_component[str(next_id)] = name
            if name == component_id:
                own_task = next_id
            next_id += 1
    sources: dict[str, dict[str, dict]] = {}
    source_fields: dict[str, dict[str, list[str]]] = {}
    for (src, stream), fields in inputs.items():
        sources.setdefault(src, {})[stream] = {"type": "SHUFFLE"}
        if fields is not None:
            source_fields.setdefault(src, {})[stream] = list(fields)
    return {
        "task->component": task_to_component,
        "taskid": own_task,
        "componentid": component_id,
        "streams": list(outputs),
        "stream->outputfields": outputs,
        "stream->target->grouping": targets,
        "source->stream->grouping": sources,
        "source->stream->fields": source_fields,
    }


def _components(topology: Any) -> dict[str, Any]:
    topology = getattr(topology, "thrift_topology", topology)
    comps = dict(topology.spouts or {})
    comps.update(topology.bolts or {})
    return comps


def component_conf(topology: Any, component_id: str) -> dict:
    """The component's ``json_conf`` from a (streamparse) Thrift topology, parsed."""
    common = _components(topology)[component_id].common
    return json.loads(common.json_conf or "{}")


def context_from_topology(
    topology: Any, component_id: str, *, task_index: int = 0, acker_tasks: int = 1
) -> dict:
    """The handshake ``context`` Storm would send to one task of ``component_id``.

    ``topology`` is a streamparse ``Topology`` class or a Thrift ``StormTopology``. Task
    counts come from ``topology.tasks`` in the component conf, else its parallelism hint.
    """
    comps = _components(topology)
    if component_id not in comps:
        raise KeyError(f"no component {component_id!r} in topology; have {sorted(comps)}")

    def n_tasks(name: str) -> int:
        common = comps[name].common
        conf = json.loads(common.json_conf or "{}")
        n = conf.get("topology.tasks") or common.parallelism_hint or 1
        if not isinstance(n, int):
            raise ValueError(f"{name}: parallelism {n!r} is per environment; resolve it first")
        return n

    counts = {name: n_tasks(name) for name in comps}
    if acker_tasks:
        counts["__acker"] = acker_tasks
    task_to_component: dict[str, str] = {}
    next_id = 1
    for name in sorted(counts):
        for _ in range(counts[name]):
            task_to_component[str(next_id)] = name
            next_id += 1
    own_tasks = [int(t) for t, c in task_to_component.items() if c == component_id]
    common = comps[component_id].common
    outputs = {s: list(info.output_fields) for s, info in (common.streams or {}).items()}
    sources: dict[str, dict[str, dict]] = {}
    source_fields: dict[str, dict[str, list[str]]] = {}
    for gsid, grouping in (common.inputs or {}).items():
        src, stream = gsid.componentId, gsid.streamId
        sources.setdefault(src, {})[stream] = grouping_json(grouping)
        src_streams = comps[src].common.streams if src in comps else {}
        if stream in (src_streams or {}):
            source_fields.setdefault(src, {})[stream] = list(src_streams[stream].output_fields)
    targets: dict[str, dict[str, dict]] = {}
    for name, comp in comps.items():
        for gsid, grouping in (comp.common.inputs or {}).items():
            if gsid.componentId == component_id:
                targets.setdefault(gsid.streamId, {})[name] = grouping_json(grouping)
    return {
        "task->component": task_to_component,
        "taskid": own_tasks[task_index],
        "componentid": component_id,
        "streams": list(outputs),
        "stream->outputfields": outputs,
        "stream->target->grouping": targets,
        "source->stream->grouping": sources,
        "source->stream->fields": source_fields,
    }


# --------------------------------------------------------------------------- process


def _resolve_command(command: str, env: Mapping[str, str]) -> str:
    """An absolute path for ``execution_command``.

    A relative path is taken relative to the caller (Storm would take it relative to
    the resources dir; after ``sparse submit`` it is absolute anyway). A bare name (the
    ``streamparse_run`` of an unsubmitted topology) is looked up next to this
    interpreter first, the project virtualenv, then on the child's ``PATH``.
    """
    if os.sep in command:
        return os.path.abspath(command)
    beside = os.path.join(os.path.dirname(sys.executable), command)
    if os.path.exists(beside):
        return beside
    return shutil.which(command, path=env.get("PATH")) or command


def _random_id() -> str:
    # Storm: Long.toString(rand.nextLong())
    return str(random.getrandbits(64) - 2**63)


def _key(msg_id: Any) -> str:
    return json.dumps(msg_id, sort_keys=True)


def _reject_constant(token: str) -> Any:
    raise ValueError(token)


def _parse_frame(raw: bytes) -> dict | None:
    """The frame as a message if it is one Storm could read, else None (no checks of ids)."""
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("command"), str):
        return None
    return obj


class ShellProcess:
    """A component subprocess with Storm's launch, handshake and message validation.

    Use :class:`ShellBolt` or :class:`ShellSpout`. Both are context managers.

    ``execution_command``/``script``: the ``ShellComponent`` pair, e.g.
    ``(STREAMPARSE_RUN, "sample_bolts.echo.EchoBolt")``; ``script`` is passed as one argv
    element, as Storm does (``"-s json mod.Cls"`` included). ``cwd``: the resources dir.
    ``env``: the child's full environment (default: a copy of ``os.environ``).
    ``conf``: merged over :data:`DEFAULT_CONF`. ``context``: the handshake context
    (default: :func:`make_context` from ``component_id``, ``task_id``, ``outputs``,
    ``inputs``, ``targets``; emits are checked against ``outputs`` only when given).
    ``subprocess_timeout``: overrides ``topology.subprocess.timeout.secs`` (and is put in
    the conf the component sees). ``workdir``: where the pid dir and stderr file go
    (default: a temporary directory removed by ``close()``).
    """

    kind = "component"
    _known_commands: frozenset[str] = _BOLT_COMMANDS

    def __init__(
        self,
        execution_command: str,
        script: str,
        *,
        cwd: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        conf: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        component_id: str | None = None,
        task_id: int | None = None,
        outputs: Mapping[str, Sequence[str]] | None = None,
        inputs: Mapping[tuple[str, str], Sequence[str] | None] | None = None,
        targets: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
        subprocess_timeout: float | None = None,
        handshake_timeout: float = 60.0,
        workdir: str | os.PathLike[str] | None = None,
        allow_non_finite: bool = False,
        allow_direct_emits: bool = False,
        registered_metrics: Iterable[str] = (),
        raise_on_dropped: bool = True,
        emit_task_ids: Callable[[str, list], list[int]] | None = None,
        start: bool = True,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.argv = [_resolve_command(os.fspath(execution_command), self.env), script]
        self.cwd = os.fspath(cwd)
        self.conf: dict[str, Any] = {**DEFAULT_CONF, **(conf or {})}
        if subprocess_timeout is not None:
            self.conf["topology.subprocess.timeout.secs"] = subprocess_timeout
        self.subprocess_timeout = float(
            self.conf.get("topology.subprocess.timeout.secs")
            or self.conf.get("supervisor.worker.timeout.secs")
            or 30
        )
        self.handshake_timeout = handshake_timeout
        validate_streams = context is not None and "stream->outputfields" in context
        if context is None:
            validate_streams = outputs is not None
            if component_id is None:
                component_id = script.split()[-1].rsplit(".", 1)[-1]
            context = make_context(
                component_id,
                task_id=task_id,
                outputs=outputs,
                inputs=inputs,
                targets=targets,
                acker_tasks=int(self.conf.get("topology.acker.executors") or 0),
            )
        self.context: dict[str, Any] = dict(context)
        self.component_id: str = self.context.get("componentid") or ""
        self.task_id = self.context.get("taskid")
        # Declared output streams; None when the caller declared none (nothing checked).
        self.outputs: dict[str, list[str]] | None = (
            {s: list(f) for s, f in self.context["stream->outputfields"].items()}
            if validate_streams
            else None
        )
        self.allow_non_finite = allow_non_finite
        self.allow_direct_emits = allow_direct_emits
        self.registered_metrics = set(registered_metrics)
        self.raise_on_dropped = raise_on_dropped
        self.emit_task_ids = emit_task_ids

        self._own_workdir = workdir is None
        self.workdir = os.fspath(workdir) if workdir else tempfile.mkdtemp(prefix="multilang-")
        self.pid_dir = os.path.join(self.workdir, "pids")
        self.stderr_path = os.path.join(self.workdir, "stderr.log")

        self.pid: int | None = None
        self.returncode: int | None = None
        self.logs: list[LogRecord] = []
        self.errors: list[str] = []
        self.metrics: list[tuple[str, Any]] = []
        self.emits: list[Emit] = []
        self.sync_count = 0
        self.messages_received = 0
        self.received_commands: list[str] = []
        # Filled by close(): valid frames nobody read, and output that was no valid frame
        # (including text after the last frame: ``trailing_output``).
        self.unread: list[dict] = []
        self.garbage: list[str] = []
        self.trailing_output = ""
        self.transcript: collections.deque[tuple[str, str]] = collections.deque(maxlen=40)

        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_file: Any = None
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._death: BaseException | None = None
        self._closed = False
        self._stderr_final: str | None = None
        self._last_message_at = time.monotonic()
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def from_topology(
        cls,
        topology: Any,
        component_id: str,
        *,
        cwd: str | os.PathLike[str],
        conf: Mapping[str, Any] | None = None,
        task_index: int = 0,
        execution_command: str | None = None,
        **kwargs: Any,
    ):
        """Run one task of ``component_id`` from a streamparse ``Topology`` (or Thrift one)
        with the conf (topology conf + component ``json_conf``) and context Storm builds."""
        comps = _components(topology)
        comp = comps[component_id]
        obj = getattr(comp, "spout_object", None) or getattr(comp, "bolt_object", None)
        shell = obj.shell
        if shell is None:
            raise DriverUsageError(f"{component_id} is not a shell component")
        merged = {**DEFAULT_CONF, **(conf or {})}
        context = context_from_topology(
            topology,
            component_id,
            task_index=task_index,
            acker_tasks=int(merged.get("topology.acker.executors") or 0),
        )
        merged.update(component_conf(topology, component_id))
        return cls(
            execution_command or shell.execution_command,
            shell.script,
            cwd=cwd,
            conf=merged,
            context=context,
            **kwargs,
        )

    def start(self) -> None:
        if self._proc is not None:
            raise DriverUsageError("already started")
        os.makedirs(self.pid_dir, exist_ok=True)
        self._stderr_file = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            close_fds=True,
        )
        self._last_message_at = time.monotonic()
        self._reader = threading.Thread(
            target=self._read_loop, name=f"multilang-reader-{self._proc.pid}", daemon=True
        )
        self._reader.start()
        try:
            self._handshake()
        except BaseException:
            self.close()
            raise
        self._after_handshake()

    def _handshake(self) -> None:
        setup = {"pidDir": self.pid_dir, "conf": self.conf, "context": self.context}
        try:
            self._write_now(self._encode(setup))
        except SubprocessExited as exc:  # died before reading the handshake
            self._death = HandshakeError(str(exc))
            raise self._death from None
        item = self._get_raw(time.monotonic() + self.handshake_timeout)
        if item is None:
            self._die(HandshakeError, f"no handshake reply within {self.handshake_timeout:g}s")
        kind, raw = item
        if kind == "eof":
            self._on_eof(raw, during="the handshake", exc_type=HandshakeError)
        reply = self._decode(raw, require_command=False, exc_type=HandshakeError)
        pid = reply.get("pid")
        if isinstance(pid, bool) or not isinstance(pid, int):
            self._die(HandshakeError, f"handshake reply without a numeric pid: {reply!r}")
        assert self._proc is not None
        if pid != self._proc.pid:
            self._die(
                HandshakeError,
                f"handshake pid {pid} is not the child's pid {self._proc.pid}; Storm would "
                "later kill the wrong process",
            )
        pid_file = os.path.join(self.pid_dir, str(pid))
        if not os.path.isfile(pid_file):
            self._die(HandshakeError, f"pid file {pid_file} was not created")
        self.pid = pid

    def _after_handshake(self) -> None:
        pass

    def kill(self) -> int | None:
        """SIGKILL the component (a crashed worker), then clean up."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        return self.close()

    def close(self, timeout: float = 5.0) -> int | None:
        """Close stdin (pystorm then exits with status 2), wait, and clean up.

        Escalates to SIGTERM (Storm's ``Process.destroy``) and SIGKILL. Never raises for
        the component's behaviour: valid frames left unread go to ``unread``, anything
        else to ``garbage`` (text after the last frame also to ``trailing_output``).
        Returns the exit status.
        """
        if self._closed:
            return self.returncode
        self._closed = True
        self._stopping.set()
        proc = self._proc
        if self._death is not None and proc is not None and proc.poll() is None:
            # The worker died; its supervisor kills the subprocess.
            proc.terminate()
        if not self._stop_threads(0.5) and proc is not None:
            # The writer is stuck on a full pipe: the child stopped reading. End it.
            proc.terminate()
            if not self._stop_threads(2.0):
                proc.kill()
                self._stop_threads(2.0)
        if proc is not None:
            try:
                if proc.stdin and not proc.stdin.closed:
                    proc.stdin.close()
            except OSError:
                pass
            for action in (None, proc.terminate, proc.kill):
                if action is not None and proc.poll() is None:
                    action()
                try:
                    proc.wait(timeout=timeout if action is None else 2.0)
                    break
                except subprocess.TimeoutExpired:
                    continue
            self.returncode = proc.returncode
            reader_done = True
            if self._reader is not None:
                self._reader.join(timeout=2.0)
                reader_done = not self._reader.is_alive()
            while True:
                try:
                    kind, raw = self._inbox.get_nowait()
                except queue.Empty:
                    break
                text = raw.decode("utf-8", "replace")
                if kind == "eof":
                    if text:
                        self.trailing_output += text
                        self.garbage.append(text)
                    continue
                parsed = _parse_frame(raw)
                if parsed is None:
                    self.garbage.append(text)
                else:
                    self.unread.append(parsed)
            if proc.stdout and reader_done:  # else a grandchild holds the pipe open
                proc.stdout.close()
        if self._stderr_file is not None:
            self._stderr_file.close()
        self._stderr_final = self._read_stderr()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.returncode

    def _stop_threads(self, timeout: float) -> bool:
        """Join helper threads (``_stopping`` is set); True when all have ended."""
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stderr_text(self) -> str:
        """Everything the component wrote to stderr so far (Storm: the worker log)."""
        if self._stderr_final is not None:
            return self._stderr_final
        return self._read_stderr()

    def _read_stderr(self) -> str:
        try:
            with open(self.stderr_path, "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ I/O

    def _read_loop(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        out = self._proc.stdout
        lines: list[bytes] = []
        try:
            while True:
                line = out.readline()
                if not line:
                    break
                line = line.rstrip(b"\n").rstrip(b"\r")
                if line == b"end":
                    self._last_message_at = time.monotonic()
                    self._inbox.put(("frame", b"\n".join(lines)))
                    lines = []
                else:
                    lines.append(line)
        except (OSError, ValueError):
            pass
        self._inbox.put(("eof", b"\n".join(lines)))

    def _encode(self, obj: Any) -> bytes:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
        self.transcript.append(("->", text))
        return text.encode("utf-8") + b"\nend\n"

    def _write_now(self, data: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            # The reader will see EOF; report that with the exit status.
            self._pump_eof(reason=f"writing to the subprocess failed: {exc!r}")

    def _pump_eof(self, reason: str) -> None:
        deadline = time.monotonic() + 2.0
        while True:
            item = self._get_raw(deadline)
            if item is None:
                self._die(SubprocessExited, reason)
            kind, raw = item
            if kind == "eof":
                self._on_eof(raw, during=reason)
            self._process_raw(raw)

    def _get_raw(self, deadline: float) -> tuple[str, bytes] | None:
        while True:
            self._check_dead()
            remaining = deadline - time.monotonic()
            try:
                return self._inbox.get(timeout=max(0.0, min(remaining, 0.05)))
            except queue.Empty:
                if remaining <= 0:
                    return None

    def _on_eof(self, partial: bytes, during: str = "", exc_type: type = SubprocessExited):
        proc = self._proc
        returncode = None
        if proc is not None:
            try:
                returncode = proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                returncode = None
        self.returncode = returncode
        trailing = partial.decode("utf-8", "replace")
        if trailing:
            self.trailing_output += trailing
            self.garbage.append(trailing)
        msg = f"Pipe to subprocess seems to be broken! (exit status {returncode})"
        if during:
            msg += f" during {during}"
        if trailing:
            msg += f"; currently read output: {trailing!r}"
        exc = exc_type(self._describe(msg))
        if isinstance(exc, SubprocessExited):
            exc.returncode = returncode
            exc.trailing = trailing
        self._death = exc
        raise exc

    def _check_dead(self) -> None:
        if self._death is not None:
            raise self._death
        if self._closed:
            raise DriverUsageError("the driver was closed")

    def _die(self, exc_type: type[MultilangError], message: str) -> None:
        exc = exc_type(self._describe(message))
        if isinstance(exc, WorkerDied):
            self._death = exc
        raise exc

    def _describe(self, message: str) -> str:
        parts = [f"{self.kind} {self.component_id or self.argv[1]!r}: {message}"]
        if self.transcript:
            parts.append("  recent frames:")
            parts.extend(f"    {d} {t[:300]}" for d, t in list(self.transcript)[-8:])
        err = self.stderr_text()
        if err.strip():
            parts.append("  stderr (tail):")
            parts.extend(f"    {line}" for line in err[-3000:].splitlines())
        return "\n".join(parts)

    # ------------------------------------------------------------------ decoding

    def _non_finite(self, token: str) -> Any:
        if self.allow_non_finite:
            return token  # json-smart turns a bare NaN/Infinity into a string
        self._die(
            ProtocolViolation,
            f"non-finite number {token} in output: Storm 2.x's json-smart reads it as the "
            f"string {token!r}, silently corrupting the tuple",
        )

    def _decode(
        self,
        raw: bytes,
        *,
        require_command: bool = True,
        exc_type: type[ProtocolViolation] = ProtocolViolation,
    ) -> dict:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._die(exc_type, f"output is not valid UTF-8 ({exc}): {raw[:200]!r}")
        self.transcript.append(("<-", text))
        try:
            obj = json.loads(text, parse_constant=self._non_finite)
        except ValueError as exc:
            self._die(exc_type, f"unparseable output ({exc}): {text[:300]!r}")
        if not isinstance(obj, dict):
            self._die(exc_type, f"JSON value is not an object (ClassCastException): {text[:300]!r}")
        if require_command:
            self._check_types(obj)
        return obj

    def _check_types(self, msg: dict) -> None:
        """The casts in Storm's ``JsonSerializer.readShellMsg``, applied to every message."""
        command = msg.get("command")
        if command is None:
            self._die(ProtocolViolation, f"Command not found in message: {msg!r}")
        checks = [
            ("command", str, False),
            ("msg", str, True),
            ("stream", str, True),
            ("need_task_ids", bool, True),
            ("tuple", list, True),
        ]
        for key, typ, nullable in checks:
            value = msg.get(key)
            if value is None and nullable:
                continue
            if not isinstance(value, typ):
                self._die(
                    ProtocolViolation,
                    f"{key!r} must be {typ.__name__}, got {value!r} (ClassCastException)",
                )
        task = msg.get("task")
        if task is not None and (isinstance(task, bool) or not isinstance(task, int)):
            self._die(ProtocolViolation, f"'task' must be an integer, got {task!r}")
        anchors = msg.get("anchors")
        if anchors is not None and not isinstance(anchors, str):
            if not isinstance(anchors, list) or not all(isinstance(a, str) for a in anchors):
                self._die(
                    ProtocolViolation,
                    f"'anchors' must be a string or a list of strings, got {anchors!r}",
                )

    # ------------------------------------------------------------------ processing

    def _next_message(self, deadline: float) -> dict | None:
        """Wait until ``deadline`` for one message; validate and process it."""
        item = self._get_raw(deadline)
        if item is None:
            return None
        kind, raw = item
        if kind == "eof":
            self._on_eof(raw)
        return self._process_raw(raw)

    def _process_raw(self, raw: bytes) -> dict:
        msg = self._decode(raw)
        self.messages_received += 1
        command = msg["command"]
        self.received_commands.append(command)
        if command not in self._known_commands:
            self._die(
                ProtocolViolation,
                f"Unknown command received: {command!r} (a {self.kind} may send "
                f"{sorted(self._known_commands)})",
            )
        self._handle(msg)
        return msg

    def _handle(self, msg: dict) -> None:
        command = msg["command"]
        if command == "log":
            level = msg.get("level")
            if isinstance(level, bool) or not isinstance(level, int):
                level = 2
            record = LogRecord(level, msg.get("msg") or "")
            self.logs.append(record)
            if self.raise_on_dropped and _PYSTORM_DROPPED in record.msg:
                raise MessageDropped(self._describe(f"pystorm dropped a message: {record.msg}"))
        elif command == "error":
            self.errors.append(msg.get("msg") or "")
        elif command == "sync":
            self.sync_count += 1
        elif command == "metrics":
            name = msg.get("name")
            if not isinstance(name, str) or not name:
                self._die(ProtocolViolation, "Receive Metrics name is empty")
            if name not in self.registered_metrics:
                self._die(ProtocolViolation, f"Could not find metric by name[{name}]")
            self.metrics.append((name, msg.get("params")))
        elif command == "emit":
            self._on_emit(msg)

    def _on_emit(self, msg: dict) -> None:
        raise NotImplementedError

    def _validate_emit(self, msg: dict) -> tuple[str, list, int | None]:
        values = msg.get("tuple")
        if values is None:
            self._die(ProtocolViolation, f"emit without a tuple: {msg!r}")
        stream = msg.get("stream")
        if stream is None:
            stream = DEFAULT_STREAM
        task = msg.get("task")
        direct = task not in (None, 0)
        if direct and not self.allow_direct_emits:
            self._die(
                ProtocolViolation,
                f"direct emit to task {task}: Storm 2.6+ parses the task as an Integer and "
                "casts it to Long (ClassCastException); use a fields grouping instead "
                "(allow_direct_emits=True to accept it)",
            )
        if self.outputs is not None:
            if stream not in self.outputs:
                self._die(ProtocolViolation, f"Unknown stream ID: {stream!r} (emit {msg!r})")
            fields = self.outputs[stream]
            if len(values) != len(fields):
                self._die(
                    ProtocolViolation,
                    f"Tuple created with wrong number of fields. Expected {len(fields)} "
                    f"fields {fields} but got {len(values)} fields on stream {stream!r}: "
                    f"{values!r}",
                )
        targets = self.context.get("stream->target->grouping", {}).get(stream, {})
        if not direct and any(g.get("type") == "DIRECT" for g in targets.values()):
            self._die(ProtocolViolation, "Cannot do regular emit to direct stream")
        return stream, values, (task if direct else None)

    def _task_ids_for(self, stream: str, values: list) -> list[int]:
        if self.emit_task_ids is not None:
            return list(self.emit_task_ids(stream, values))
        targets = self.context.get("stream->target->grouping", {}).get(stream, {})
        t2c = self.context.get("task->component", {})
        out: list[int] = []
        for comp, grouping in sorted(targets.items()):
            tasks = sorted(int(t) for t, c in t2c.items() if c == comp)
            if not tasks:
                continue
            out.extend(tasks if grouping.get("type") == "ALL" else tasks[:1])
        return out

    # ------------------------------------------------------------------ pumping

    def pump(self, timeout: float = 0.0) -> list[dict]:
        """Process messages for ``timeout`` seconds (0: only those already received)."""
        self._check_dead()
        deadline = time.monotonic() + timeout
        processed = []
        while True:
            msg = self._next_message(deadline)
            if msg is None:
                return processed
            processed.append(msg)

    def pump_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        """Process messages until ``predicate()`` holds; :class:`WaitTimeout` otherwise.

        The predicate is checked after every message and at least every 20 ms.
        """
        self._check_dead()
        deadline = time.monotonic() + timeout
        while not predicate():
            now = time.monotonic()
            if now >= deadline:
                raise WaitTimeout(
                    self._describe(f"timed out after {timeout:g}s waiting for {what}")
                )
            self._next_message(min(deadline, now + 0.02))

    def emitted(self, stream: str = DEFAULT_STREAM) -> list[list]:
        """Values of every tuple emitted on ``stream`` so far."""
        return [e.values for e in self.emits if e.stream == stream]

    def log_messages(self, min_level: int = 0) -> list[str]:
        return [r.msg for r in self.logs if r.level >= min_level]


# --------------------------------------------------------------------------- bolt


class ShellBolt(ShellProcess):
    """Storm's ``ShellBolt``: tuples in through a writer thread, output read concurrently.

    ``max_pending`` (default: ``topology.shellbolt.max.pending``, 100) bounds the queue of
    tuples waiting to be written to the subprocess, as in Storm: ``send_tuple`` blocks
    (pumping meanwhile) while it is full, up to ``send_timeout`` seconds. Tuples already
    written but not yet acked do not count; Storm bounds those only through
    ``topology.max.spout.pending`` upstream.

    ``heartbeat_interval``: when set, a timer does what Storm's does every second:
    request a heartbeat tuple and declare "subprocess heartbeat timeout" if nothing has
    been received for ``topology.subprocess.timeout.secs``. Off by default, for
    deterministic tests; ``send_heartbeat()`` sends one on demand.
    """

    kind = "bolt"
    _known_commands = _BOLT_COMMANDS

    def __init__(
        self,
        execution_command: str,
        script: str,
        *,
        max_pending: int | None = None,
        heartbeat_interval: float | None = None,
        send_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        conf = dict(kwargs.pop("conf", None) or {})
        if max_pending is not None:
            conf["topology.shellbolt.max.pending"] = max_pending
        kwargs["conf"] = conf
        self.pending: dict[str, SentTuple] = {}
        self.sent: list[SentTuple] = []
        self.acked: list[str] = []
        self.failed: list[str] = []
        self.outcomes: dict[str, str] = {}
        self.heartbeats_sent = 0
        self.max_outstanding_seen = 0
        self.heartbeat_interval = heartbeat_interval
        self._send_timeout = send_timeout
        # Storm's ShellBoltMessageQueue: task-id replies first, then up to max_pending
        # tuples; the writer sends a requested heartbeat before either.
        self._cond = threading.Condition()
        self._replies: collections.deque[bytes] = collections.deque()
        self._queue: collections.deque[bytes] = collections.deque()
        self._heartbeat_wanted = False
        self._writing = False
        self._writer: threading.Thread | None = None
        self._timer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        super().__init__(execution_command, script, **kwargs)

    @property
    def max_pending(self) -> int:
        value = self.conf.get("topology.shellbolt.max.pending")
        return int(value) if value else 0

    @property
    def outstanding(self) -> int:
        """Tuples queued for the subprocess but not yet written to its stdin."""
        return len(self._queue)

    def _after_handshake(self) -> None:
        self._writer = threading.Thread(
            target=self._write_loop, name=f"multilang-writer-{self.pid}", daemon=True
        )
        self._writer.start()
        if self.heartbeat_interval:
            self._timer = threading.Thread(
                target=self._heartbeat_loop, name=f"multilang-heartbeat-{self.pid}", daemon=True
            )
            self._timer.start()

    def _stop_threads(self, timeout: float) -> bool:
        with self._cond:
            self._cond.notify_all()
        for thread in (self._timer, self._writer):
            if thread is not None:
                thread.join(timeout=timeout)
        return not any(t is not None and t.is_alive() for t in (self._timer, self._writer))

    def _write_loop(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        stdin = self._proc.stdin
        try:
            while True:
                with self._cond:
                    while not (
                        self._stopping.is_set()
                        or self._heartbeat_wanted
                        or self._replies
                        or self._queue
                    ):
                        self._cond.wait(0.1)
                    if self._stopping.is_set():
                        return
                    self._writing = True
                    if self._heartbeat_wanted:
                        self._heartbeat_wanted = False
                        self.heartbeats_sent += 1
                        data = self._encode(
                            {
                                "id": _random_id(),
                                "comp": None,
                                "stream": HEARTBEAT_STREAM,
                                "task": SYSTEM_TASK_ID,
                                "tuple": [],
                            }
                        )
                    elif self._replies:
                        data = self._replies.popleft()
                    else:
                        data = self._queue.popleft()
                        self._cond.notify_all()
                stdin.write(data)
                stdin.flush()
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
        except (BrokenPipeError, OSError, ValueError) as exc:
            if not self._stopping.is_set():
                self._writer_error = exc

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued tuple has been written to the subprocess's stdin."""

        def written() -> bool:
            with self._cond:
                return not (self._queue or self._replies or self._writing)

        self.pump_until(written, timeout, "queued tuples to be written")

    def _request_heartbeat(self) -> None:
        with self._cond:
            self._heartbeat_wanted = True
            self._cond.notify_all()

    def _heartbeat_loop(self) -> None:
        assert self.heartbeat_interval
        while not self._stopping.wait(self.heartbeat_interval):
            silent = time.monotonic() - self._last_message_at
            if silent > self.subprocess_timeout:
                self._death = SubprocessTimeout(
                    self._describe(
                        f"subprocess heartbeat timeout: nothing received for {silent:.1f}s "
                        f"(topology.subprocess.timeout.secs={self.subprocess_timeout:g})"
                    )
                )
                return
            self._request_heartbeat()

    def _check_dead(self) -> None:
        super()._check_dead()
        if self._writer_error is not None:
            error, self._writer_error = self._writer_error, None
            self._pump_eof(reason=f"writing to the subprocess failed: {error!r}")

    # ------------------------------------------------------------------ input

    def send_tuple(
        self,
        values: Sequence[Any],
        comp: str = "spout",
        stream: str = DEFAULT_STREAM,
        task: int | None = None,
        id: str | None = None,
        *,
        send_timeout: float | None = None,
    ) -> str:
        """Queue one input tuple as Storm's ``ShellBolt.execute`` does; returns its id.

        ``task`` defaults to the first task of ``comp`` in the context (else 1). Blocks
        while ``max_pending`` tuples are already queued.
        """
        self._check_dead()
        if not isinstance(values, (list, tuple)):
            raise DriverUsageError(f"values must be a list, got {type(values).__name__}")
        values = list(values)
        system = comp == SYSTEM_COMPONENT
        if not system:
            self._check_subscription(comp, stream, values)
        if task is None:
            task = SYSTEM_TASK_ID if system else self._first_task(comp)
        if id is None:
            id = _random_id()
            while id in self.pending or id in self.outcomes:
                id = _random_id()
        elif not isinstance(id, str):
            raise DriverUsageError("tuple ids are strings in the multi-lang protocol")
        elif id in self.pending:
            raise DriverUsageError(f"tuple id {id!r} is already pending")
        data = self._encode(
            {"id": id, "comp": comp, "stream": stream, "task": task, "tuple": values}
        )
        sent = SentTuple(id, comp, stream, task, values, time.monotonic())
        self.pending[id] = sent
        timeout = self._send_timeout if send_timeout is None else send_timeout
        if timeout is None:
            timeout = self.subprocess_timeout
        deadline = time.monotonic() + timeout
        while True:
            self._check_dead()
            with self._cond:
                if not self.max_pending or len(self._queue) < self.max_pending:
                    self._queue.append(data)
                    self._cond.notify_all()
                    break
                self._cond.wait(0.02)
            self.pump(0)
            if time.monotonic() > deadline:
                del self.pending[id]
                raise BackpressureTimeout(
                    self._describe(
                        f"send_tuple blocked {timeout:g}s: {self.outstanding} tuples "
                        f"queued (topology.shellbolt.max.pending={self.max_pending})"
                    )
                )
        self.sent.append(sent)
        self.max_outstanding_seen = max(self.max_outstanding_seen, self.outstanding)
        return id

    def send_tick(self, freq: int = 1) -> str:
        """A tick tuple (``__system``/``__tick``, task -1, ``[freq]``); it must be acked."""
        return self.send_tuple(
            [freq], comp=SYSTEM_COMPONENT, stream=TICK_STREAM, task=SYSTEM_TASK_ID
        )

    def send_heartbeat(self, timeout: float | None = None) -> float:
        """Send a heartbeat tuple and wait for its ``sync``; returns the latency in seconds.

        The deadline defaults to ``topology.subprocess.timeout.secs``; missing it raises
        :class:`SubprocessTimeout`, as Storm would kill the worker. As in Storm, the
        heartbeat is written before tuples still queued (``flush()`` first to measure
        behind them).
        """
        self._check_dead()
        timeout = self.subprocess_timeout if timeout is None else timeout
        before = self.sync_count
        start = time.monotonic()
        self._request_heartbeat()
        try:
            self.pump_until(lambda: self.sync_count > before, timeout, "a heartbeat sync")
        except WaitTimeout:
            self._die(
                SubprocessTimeout,
                f"subprocess heartbeat timeout: no sync within {timeout:g}s of a heartbeat",
            )
        return time.monotonic() - start

    def _first_task(self, comp: str) -> int:
        tasks = sorted(
            int(t) for t, c in self.context.get("task->component", {}).items() if c == comp
        )
        return tasks[0] if tasks else 1

    def _check_subscription(self, comp: str, stream: str, values: list) -> None:
        sources = self.context.get("source->stream->grouping") or {}
        if sources and stream not in sources.get(comp, {}):
            raise DriverUsageError(
                f"{self.component_id} does not subscribe to {comp}:{stream}; Storm would "
                f"never deliver it (subscriptions: {sources})"
            )
        fields = (self.context.get("source->stream->fields") or {}).get(comp, {}).get(stream)
        if fields is not None and len(fields) != len(values):
            raise DriverUsageError(
                f"{comp}:{stream} declares fields {fields} but the tuple has {len(values)} "
                f"values: {values!r}"
            )

    # ------------------------------------------------------------------ output

    def _handle(self, msg: dict) -> None:
        command = msg["command"]
        if command in ("ack", "fail"):
            tup_id = msg.get("id")
            if not isinstance(tup_id, str) or tup_id not in self.pending:
                verb = "Acked" if command == "ack" else "Failed"
                self._die(
                    ProtocolViolation,
                    f"{verb} a non-existent or already acked/failed id: {tup_id!r}",
                )
            del self.pending[tup_id]
            (self.acked if command == "ack" else self.failed).append(tup_id)
            self.outcomes[tup_id] = command
        else:
            super()._handle(msg)

    def _on_emit(self, msg: dict) -> None:
        anchors = msg.get("anchors")
        if anchors is None:
            anchors = []
        elif isinstance(anchors, str):
            anchors = [anchors]
        for anchor in anchors:
            if anchor not in self.pending:
                self._die(ProtocolViolation, f"Anchored onto {anchor} after ack/fail")
        stream, values, task = self._validate_emit(msg)
        need = msg.get("need_task_ids")
        emit = Emit(
            stream=stream,
            values=values,
            anchors=tuple(anchors),
            task=task,
            need_task_ids=True if need is None else need,
        )
        if task is None and emit.need_task_ids:
            emit.task_ids = self._task_ids_for(stream, values)
            with self._cond:
                self._replies.append(self._encode(emit.task_ids))
                self._cond.notify_all()
        self.emits.append(emit)

    # ------------------------------------------------------------------ waiting

    def wait_finished(self, ids: Iterable[str], timeout: float = 5.0) -> dict[str, str]:
        """Pump until every id is acked or failed; returns ``{id: "ack" | "fail"}``."""
        ids = list(ids)
        self.pump_until(lambda: all(i in self.outcomes for i in ids), timeout, f"ack/fail of {ids}")
        return {i: self.outcomes[i] for i in ids}

    def wait_acked(self, ids: Iterable[str] | str, timeout: float = 5.0) -> None:
        """Pump until every id is acked; :class:`TupleFailed` if one was failed."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        outcomes = self.wait_finished(ids, timeout)
        failed = [i for i, o in outcomes.items() if o != "ack"]
        if failed:
            raise TupleFailed(self._describe(f"tuples failed instead of acked: {failed}"))

    def execute(
        self,
        values: Sequence[Any],
        comp: str = "spout",
        stream: str = DEFAULT_STREAM,
        *,
        timeout: float = 5.0,
        settle: bool = True,
        **kwargs: Any,
    ) -> Execution:
        """Send one tuple and wait until it is acked or failed; returns everything
        emitted, logged and reported meanwhile.

        ``settle``: then send a heartbeat and wait for its ``sync``. pystorm reads input
        one message at a time, so everything the bolt wrote for the tuple (an emit or a
        second ack after the ack) has been checked by the time ``execute`` returns.
        """
        marks = len(self.emits), len(self.logs), len(self.errors)
        tup_id = self.send_tuple(values, comp, stream, **kwargs)
        outcome = self.wait_finished([tup_id], timeout)[tup_id]
        if settle:
            self.send_heartbeat()
        return Execution(
            tup_id,
            outcome,
            self.emits[marks[0] :],
            self.logs[marks[1] :],
            self.errors[marks[2] :],
        )

    def tick(self, freq: int = 1, timeout: float = 5.0, settle: bool = True) -> Execution:
        """Send a tick tuple and wait for its ack (or fail)."""
        return self.execute([freq], SYSTEM_COMPONENT, TICK_STREAM, timeout=timeout, settle=settle)


# --------------------------------------------------------------------------- spout


class ShellSpout(ShellProcess):
    """Storm's ``ShellSpout``: each command is written, then output is read until ``sync``.

    Storm kills the worker when, while it waits for that ``sync``, nothing arrives for
    ``topology.subprocess.timeout.secs``; the same deadline raises
    :class:`SubprocessTimeout` here (``sync_timeout`` overrides it per call).
    ``ack``/``fail`` are only allowed for message ids the spout emitted and that are
    still pending, and ``next`` refuses to run past ``topology.max.spout.pending``.
    """

    kind = "spout"
    _known_commands = _SPOUT_COMMANDS

    def __init__(self, execution_command: str, script: str, **kwargs: Any) -> None:
        self._pending: collections.Counter[str] = collections.Counter()
        self._pending_ids: dict[str, Any] = {}
        self.acked: list[Any] = []
        self.failed: list[Any] = []
        super().__init__(execution_command, script, **kwargs)

    @property
    def pending_ids(self) -> list:
        """Message ids emitted and not yet acked/failed (repeated if emitted twice)."""
        return [self._pending_ids[k] for k, n in self._pending.items() for _ in range(n)]

    def next(self, sync_timeout: float | None = None) -> SpoutStep:
        limit = self.conf.get("topology.max.spout.pending")
        if limit and sum(self._pending.values()) >= int(limit):
            raise DriverUsageError(
                f"{sum(self._pending.values())} tuples pending >= topology.max.spout.pending="
                f"{limit}: Storm would not call nextTuple now"
            )
        return self._command("next", "", sync_timeout)

    def ack(self, msg_id: Any, sync_timeout: float | None = None) -> SpoutStep:
        self._complete(msg_id, "ack")
        self.acked.append(msg_id)
        return self._command("ack", msg_id, sync_timeout)

    def fail(self, msg_id: Any, sync_timeout: float | None = None) -> SpoutStep:
        self._complete(msg_id, "fail")
        self.failed.append(msg_id)
        return self._command("fail", msg_id, sync_timeout)

    def activate(self, sync_timeout: float | None = None) -> SpoutStep:
        return self._command("activate", "", sync_timeout)

    def deactivate(self, sync_timeout: float | None = None) -> SpoutStep:
        return self._command("deactivate", "", sync_timeout)

    def next_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,
        idle_sleep: float = 0.0,
    ) -> list[SpoutStep]:
        """Call ``next()`` until ``predicate()`` holds (:class:`WaitTimeout` otherwise).

        ``idle_sleep`` pauses after a ``next`` that emitted nothing, as Storm's spout
        wait strategy does.
        """
        deadline = time.monotonic() + timeout
        steps = []
        while not predicate():
            if time.monotonic() > deadline:
                raise WaitTimeout(self._describe(f"next() {len(steps)} times in {timeout:g}s"))
            step = self.next()
            steps.append(step)
            if not step.emits and idle_sleep:
                time.sleep(idle_sleep)
        return steps

    def _complete(self, msg_id: Any, how: str) -> None:
        self._check_dead()
        key = _key(msg_id)
        if self._pending[key] <= 0:
            raise DriverUsageError(
                f"Storm never {how}s message id {msg_id!r}: the spout did not emit it, or it "
                f"already completed (pending: {self.pending_ids})"
            )
        self._pending[key] -= 1
        if not self._pending[key]:
            del self._pending[key]
            del self._pending_ids[key]

    def _command(self, command: str, msg_id: Any, sync_timeout: float | None) -> SpoutStep:
        self._check_dead()
        timeout = self.subprocess_timeout if sync_timeout is None else sync_timeout
        marks = len(self.emits), len(self.logs), len(self.errors)
        syncs = self.sync_count
        start = time.monotonic()
        self._write_now(self._encode({"command": command, "id": msg_id}))
        while self.sync_count == syncs:
            # Storm's clock restarts with every message received while it waits.
            msg = self._next_message(max(start, self._last_message_at) + timeout)
            if msg is None:
                self._die(
                    SubprocessTimeout,
                    f"subprocess heartbeat timeout: no sync for {command!r} and nothing "
                    f"received for {timeout:g}s",
                )
        return SpoutStep(
            command,
            msg_id,
            self.emits[marks[0] :],
            self.logs[marks[1] :],
            self.errors[marks[2] :],
            time.monotonic() - start,
        )

    def _on_emit(self, msg: dict) -> None:
        stream, values, task = self._validate_emit(msg)
        need = msg.get("need_task_ids")
        msg_id = msg.get("id")
        emit = Emit(
            stream=stream,
            values=values,
            task=task,
            need_task_ids=True if need is None else need,
            msg_id=msg_id,
        )
        if msg_id is not None:
            key = _key(msg_id)
            self._pending[key] += 1
            self._pending_ids[key] = msg_id
        self.emits.append(emit)
        if task is None and emit.need_task_ids:
            emit.task_ids = self._task_ids_for(stream, values)
            self._write_now(self._encode(emit.task_ids))
