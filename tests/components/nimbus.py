"""A stand-in Nimbus: the Thrift calls ``sparse submit`` makes, served on 127.0.0.1.

The service definition is the one streamparse itself ships and speaks
(``streamparse.thrift.storm_thrift``, loaded by thriftpy2); the wire format is the one
``streamparse.util.get_nimbus_client`` and Storm's Nimbus use: framed transport, binary
protocol. Storm cannot run here, so this is how submission is tested: streamparse's own
submit functions talk to this server, which records what it receives (the uploaded jar
bytes, topology name, JSON conf, the ``StormTopology``) and checks it the way Nimbus does
before accepting a topology.

Usage::

    with StandInNimbus() as nimbus:
        client = get_nimbus_client(nimbus.env_config(), host=nimbus.host, port=nimbus.port)
        ...
        submission = nimbus.submissions[-1]

Implemented: beginFileUpload, uploadChunk, finishFileUpload, getClusterInfo,
isTopologyNameAllowed, submitTopology, submitTopologyWithOpts, killTopology,
killTopologyWithOpts, activate, deactivate, getTopologyInfo, getTopologyConf,
getTopology, getUserTopology, getNimbusConf, getLeader. Any other call is answered with
a ``TApplicationException`` naming it, and recorded in ``unexpected``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from streamparse.thrift import storm_thrift
from thriftpy2.protocol import TBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.thrift import TApplicationException, TProcessor
from thriftpy2.transport import TFramedTransportFactory, TServerSocket, TTransportException

from forumstats.multilang import _GROUPING_FIELDS  # Storm's Grouping union members, one list

__all__ = ["NimbusHandler", "StandInNimbus", "Submission", "Upload", "validate_topology"]

Nimbus = storm_thrift.Nimbus
# Storm's Nimbus.validateTopologyName: no '/', '.', ':' or '\'.
_TOPOLOGY_NAME = re.compile(r"^[^/.:\\]+$")


@dataclass
class Upload:
    location: str
    chunks: list[bytes] = field(default_factory=list)
    finished: bool = False

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class Submission:
    """One accepted ``submitTopology(WithOpts)`` call."""

    name: str
    topology_id: str
    jar_location: str
    jar_bytes: bytes
    json_conf: str
    conf: dict
    topology: Any  # storm_thrift.StormTopology
    initial_status: int  # storm_thrift.TopologyInitialStatus
    submitted_at: float
    status: str = "ACTIVE"
    killed: bool = False
    kill_wait_secs: int | None = None

    @property
    def active(self) -> bool:
        return self.status == "ACTIVE"


def _set_grouping(grouping: Any) -> tuple[str, Any]:
    for name in _GROUPING_FIELDS:
        value = getattr(grouping, name, None)
        if value is not None:
            return name, value
    return "", None


def validate_topology(topology: Any) -> list[str]:
    """What Nimbus's ``validateBasic``/``validateStructure`` would reject, as messages."""
    problems: list[str] = []
    spouts = topology.spouts or {}
    bolts = topology.bolts or {}
    state_spouts = topology.state_spouts or {}
    comps: dict[str, Any] = {}
    for kind, group in (("spout", spouts), ("bolt", bolts), ("state spout", state_spouts)):
        for name, comp in group.items():
            if name in comps:
                problems.append(f"Duplicate component ids: {name}")
            comps[name] = comp
            if name.startswith("__"):
                problems.append(f"Component id {name} is a system id")
            common = comp.common
            if common is None:
                problems.append(f"Component {name} has no ComponentCommon")
                continue
            if kind != "bolt" and common.inputs:
                problems.append(f"May not declare inputs for a spout: {name}")
            hint = common.parallelism_hint
            if hint is not None and (not isinstance(hint, int) or hint < 1):
                problems.append(f"Component {name}: parallelism hint {hint!r} is not >= 1")
            try:
                conf = json.loads(common.json_conf) if common.json_conf else {}
            except ValueError:
                conf = None
            if not isinstance(conf, dict):
                problems.append(f"Component {name}: json_conf is not a JSON object")
            for stream, info in (common.streams or {}).items():
                if stream.startswith("__"):
                    problems.append(f"Component {name}: stream id {stream} is a system id")
                fields = list(info.output_fields or [])
                if len(set(fields)) != len(fields):
                    problems.append(f"Component {name} stream {stream}: duplicate fields")
            obj = getattr(comp, "spout_object", None) or getattr(comp, "bolt_object", None)
            shell = getattr(obj, "shell", None) if obj is not None else None
            if shell is not None and not shell.execution_command:
                problems.append(f"Component {name}: shell component without a command")
    for name, comp in comps.items():
        if comp.common is None:
            continue
        for gsid, grouping in (comp.common.inputs or {}).items():
            src, stream = gsid.componentId, gsid.streamId
            if src not in comps:
                problems.append(
                    f"Component: [{name}] subscribes from non-existent component [{src}]"
                )
                continue
            src_streams = comps[src].common.streams or {}
            if stream not in src_streams:
                problems.append(
                    f"Component: [{name}] subscribes from non-existent stream: [{stream}] "
                    f"of component [{src}]"
                )
                continue
            kind, value = _set_grouping(grouping)
            if not kind:
                problems.append(f"Component: [{name}] has an empty grouping on {src}:{stream}")
            elif kind == "fields":
                missing = [f for f in value if f not in src_streams[stream].output_fields]
                if missing:
                    problems.append(
                        f"Component: [{name}] subscribes from stream: [{stream}] of "
                        f"component [{src}] with non-existent fields: {missing}"
                    )
            elif kind == "direct" and not src_streams[stream].direct:
                problems.append(
                    f"Component: [{name}] uses a direct grouping on the non-direct stream "
                    f"[{stream}] of component [{src}]"
                )
    return problems


class NimbusHandler:
    """The Nimbus calls, with state. Thread-safe; every call is recorded in ``calls``."""

    def __init__(self, *, version: str = "2.8.1", host: str = "127.0.0.1", port: int = 0):
        self.version = version
        self.host = host
        self.port = port
        self.started = time.time()
        self.lock = threading.RLock()
        self.calls: list[tuple[str, tuple]] = []
        self.unexpected: list[str] = []
        self.uploads: dict[str, Upload] = {}
        self.submissions: list[Submission] = []
        self.alive: dict[str, Submission] = {}
        self._counter = 0

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in Nimbus.thrift_services:
            raise AttributeError(name)

        def not_implemented(*args: Any) -> None:
            with self.lock:
                self.calls.append((name, args))
                self.unexpected.append(name)
            raise TApplicationException(
                TApplicationException.UNKNOWN_METHOD,
                f"stand-in Nimbus does not implement {name}",
            )

        return not_implemented

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    @property
    def call_names(self) -> list[str]:
        with self.lock:
            return [name for name, _ in self.calls]

    def _uptime(self) -> int:
        return int(time.time() - self.started)

    # -------------------------------------------------------------- jar upload

    def beginFileUpload(self) -> str:  # noqa: N802 - Thrift method names
        with self.lock:
            self._record("beginFileUpload")
            location = f"/var/storm/nimbus/inbox/stormjar-{uuid.uuid4()}.jar"
            self.uploads[location] = Upload(location)
            return location

    def uploadChunk(self, location: str, chunk: bytes) -> None:  # noqa: N802
        with self.lock:
            self._record("uploadChunk", location, len(chunk))
            upload = self.uploads.get(location)
            if upload is None or upload.finished:
                raise TApplicationException(
                    TApplicationException.INTERNAL_ERROR,
                    f"File for that location does not exist (or timed out): {location}",
                )
            upload.chunks.append(bytes(chunk))

    def finishFileUpload(self, location: str) -> None:  # noqa: N802
        with self.lock:
            self._record("finishFileUpload", location)
            upload = self.uploads.get(location)
            if upload is None or upload.finished:
                raise TApplicationException(
                    TApplicationException.INTERNAL_ERROR,
                    f"File for that location does not exist (or timed out): {location}",
                )
            upload.finished = True

    # -------------------------------------------------------------- cluster state

    def _nimbus_summary(self) -> Any:
        return storm_thrift.NimbusSummary(
            host=self.host,
            port=self.port,
            uptime_secs=self._uptime(),
            isLeader=True,
            version=self.version,
        )

    def getClusterInfo(self) -> Any:  # noqa: N802
        with self.lock:
            self._record("getClusterInfo")
            topologies = [
                storm_thrift.TopologySummary(
                    id=sub.topology_id,
                    name=sub.name,
                    num_tasks=0,
                    num_executors=0,
                    num_workers=int(sub.conf.get("topology.workers") or 1),
                    uptime_secs=int(time.time() - sub.submitted_at),
                    status=sub.status,
                )
                for sub in self.alive.values()
            ]
            supervisor = storm_thrift.SupervisorSummary(
                host=self.host,
                uptime_secs=self._uptime(),
                num_workers=4,
                num_used_workers=min(4, len(topologies)),
                supervisor_id="stand-in-supervisor",
                version=self.version,
            )
            return storm_thrift.ClusterSummary(
                supervisors=[supervisor],
                nimbus_uptime_secs=self._uptime(),
                topologies=topologies,
                nimbuses=[self._nimbus_summary()],
            )

    def getLeader(self) -> Any:  # noqa: N802
        with self.lock:
            self._record("getLeader")
            return self._nimbus_summary()

    def getNimbusConf(self) -> str:  # noqa: N802
        with self.lock:
            self._record("getNimbusConf")
            return json.dumps(
                {
                    "nimbus.seeds": [self.host],
                    "nimbus.thrift.port": self.port,
                    "storm.version": self.version,
                    "supervisor.worker.timeout.secs": 30,
                }
            )

    def isTopologyNameAllowed(self, name: str) -> bool:  # noqa: N802
        with self.lock:
            self._record("isTopologyNameAllowed", name)
            return bool(_TOPOLOGY_NAME.match(name or "")) and name not in self.alive

    # -------------------------------------------------------------- submission

    def submitTopology(  # noqa: N802
        self,
        name: str,
        uploadedJarLocation: str,
        jsonConf: str,
        topology: Any,  # noqa: N803
    ) -> None:
        options = storm_thrift.SubmitOptions(
            initial_status=storm_thrift.TopologyInitialStatus.ACTIVE
        )
        self._submit("submitTopology", name, uploadedJarLocation, jsonConf, topology, options)

    def submitTopologyWithOpts(  # noqa: N802
        self,
        name: str,
        uploadedJarLocation: str,  # noqa: N803
        jsonConf: str,  # noqa: N803
        topology: Any,
        options: Any,
    ) -> None:
        self._submit(
            "submitTopologyWithOpts", name, uploadedJarLocation, jsonConf, topology, options
        )

    def _submit(
        self, call: str, name: str, jar: str, json_conf: str, topology: Any, options: Any
    ) -> None:
        with self.lock:
            self._record(call, name, jar, json_conf, topology, options)
            if not name or not _TOPOLOGY_NAME.match(name):
                raise storm_thrift.InvalidTopologyException(
                    msg=f"Topology name must match {_TOPOLOGY_NAME.pattern}: {name!r}"
                )
            if name in self.alive:
                raise storm_thrift.AlreadyAliveException(msg=f"{name} is already alive")
            upload = self.uploads.get(jar)
            if upload is None or not upload.finished:
                raise TApplicationException(
                    TApplicationException.INTERNAL_ERROR,
                    f"uploaded jar {jar!r} does not exist (upload not finished?)",
                )
            try:
                conf = json.loads(json_conf)
            except (TypeError, ValueError):
                conf = None
            if not isinstance(conf, dict):
                raise storm_thrift.InvalidTopologyException(
                    msg=f"jsonConf is not a JSON object: {json_conf!r}"
                )
            if topology is None:
                raise storm_thrift.InvalidTopologyException(msg="no topology")
            problems = validate_topology(topology)
            if problems:
                raise storm_thrift.InvalidTopologyException(msg="; ".join(problems))
            self._counter += 1
            status = (
                options.initial_status
                if options is not None and options.initial_status is not None
                else storm_thrift.TopologyInitialStatus.ACTIVE
            )
            submission = Submission(
                name=name,
                topology_id=f"{name}-{self._counter}-{int(time.time())}",
                jar_location=jar,
                jar_bytes=upload.data,
                json_conf=json_conf,
                conf=conf,
                topology=topology,
                initial_status=status,
                submitted_at=time.time(),
                status=(
                    "ACTIVE" if status == storm_thrift.TopologyInitialStatus.ACTIVE else "INACTIVE"
                ),
            )
            self.submissions.append(submission)
            self.alive[name] = submission

    # -------------------------------------------------------------- lifecycle

    def _alive(self, name: str) -> Submission:
        submission = self.alive.get(name)
        if submission is None:
            raise storm_thrift.NotAliveException(msg=f"{name} is not alive")
        return submission

    def killTopology(self, name: str) -> None:  # noqa: N802
        self.killTopologyWithOpts(name, storm_thrift.KillOptions())

    def killTopologyWithOpts(self, name: str, options: Any) -> None:  # noqa: N802
        with self.lock:
            self._record("killTopologyWithOpts", name, options)
            submission = self._alive(name)
            # Nimbus keeps it KILLED for wait_secs; here it is gone at once.
            submission.killed = True
            submission.status = "KILLED"
            submission.kill_wait_secs = getattr(options, "wait_secs", None)
            del self.alive[name]

    def activate(self, name: str) -> None:
        with self.lock:
            self._record("activate", name)
            self._alive(name).status = "ACTIVE"

    def deactivate(self, name: str) -> None:
        with self.lock:
            self._record("deactivate", name)
            self._alive(name).status = "INACTIVE"

    def _by_id(self, topology_id: str) -> Submission:
        for submission in self.alive.values():
            if submission.topology_id == topology_id:
                return submission
        raise storm_thrift.NotAliveException(msg=f"{topology_id} is not alive")

    def getTopologyInfo(self, id: str) -> Any:  # noqa: N802, A002
        with self.lock:
            self._record("getTopologyInfo", id)
            sub = self._by_id(id)
            return storm_thrift.TopologyInfo(
                id=sub.topology_id,
                name=sub.name,
                uptime_secs=int(time.time() - sub.submitted_at),
                executors=[],
                status=sub.status,
                errors={},
            )

    def getTopologyConf(self, id: str) -> str:  # noqa: N802, A002
        with self.lock:
            self._record("getTopologyConf", id)
            return self._by_id(id).json_conf

    def getUserTopology(self, id: str) -> Any:  # noqa: N802, A002
        with self.lock:
            self._record("getUserTopology", id)
            return self._by_id(id).topology

    def getTopology(self, id: str) -> Any:  # noqa: N802, A002
        with self.lock:
            self._record("getTopology", id)
            return self._by_id(id).topology


class _Processor(TProcessor):
    """thriftpy2's processor, but an undeclared exception becomes a
    ``TApplicationException`` reply (as Java Thrift servers do) instead of a dropped
    connection."""

    def __init__(self, service: Any, handler: NimbusHandler) -> None:
        super().__init__(service, handler)
        self.errors: list[str] = []

    def process(self, iprot: Any, oprot: Any) -> None:
        api, seqid, result, call = self.process_in(iprot)
        if isinstance(result, TApplicationException):
            return self.send_exception(oprot, api, result, seqid)
        assert call is not None
        try:
            result.success = call()
        except TApplicationException as exc:
            return self.send_exception(oprot, api, exc, seqid)
        except Exception as exc:
            if not self.handle_exception(exc, result):
                self.errors.append(f"{api}: {exc!r}")
                error = TApplicationException(
                    TApplicationException.INTERNAL_ERROR,
                    f"Internal error processing {api}: {exc!r}",
                )
                return self.send_exception(oprot, api, error, seqid)
        if not result.oneway:
            self.send_result(oprot, api, result, seqid)


class StandInNimbus:
    """A Nimbus Thrift server on ``host``:``port`` (0: a free port) in background threads.

    A context manager; ``host``/``port`` are set once started. ``handler`` holds all
    state; ``submissions``, ``uploads`` and ``calls`` are shortcuts to it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        version: str = "2.8.1",
        client_timeout_ms: int = 10000,
    ) -> None:
        self.host = host
        self.port = port
        self.handler = NimbusHandler(version=version, host=host, port=port)
        self._processor = _Processor(Nimbus, self.handler)
        self._itrans = TFramedTransportFactory()
        self._iprot = TBinaryProtocolFactory()
        self._client_timeout_ms = client_timeout_ms
        self._socket: TServerSocket | None = None
        self._thread: threading.Thread | None = None
        self._clients: list[Any] = []
        self._closed = threading.Event()

    # -------------------------------------------------------------- shortcuts

    @property
    def submissions(self) -> list[Submission]:
        return self.handler.submissions

    @property
    def uploads(self) -> dict[str, Upload]:
        return self.handler.uploads

    @property
    def calls(self) -> list[tuple[str, tuple]]:
        return self.handler.calls

    @property
    def call_names(self) -> list[str]:
        return self.handler.call_names

    @property
    def errors(self) -> list[str]:
        """Undeclared exceptions raised by handler methods (sent as TApplicationException)."""
        return self._processor.errors

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def env_config(self, **overrides: Any) -> dict:
        """A streamparse ``config.json`` environment pointing at this Nimbus (no SSH)."""
        config: dict[str, Any] = {
            "nimbus": self.address,
            "use_ssh_for_nimbus": False,
            "use_virtualenv": False,
        }
        config.update(overrides)
        return config

    def client(self, timeout_ms: int = 7000) -> Any:
        """A Thrift client configured like ``streamparse.util.get_nimbus_client``."""
        return make_client(
            Nimbus,
            host=self.host,
            port=self.port,
            proto_factory=TBinaryProtocolFactory(),
            trans_factory=TFramedTransportFactory(),
            timeout=timeout_ms,
        )

    # -------------------------------------------------------------- serving

    def start(self) -> StandInNimbus:
        if self._socket is not None:
            raise RuntimeError("already started")
        sock = TServerSocket(host=self.host, port=self.port, client_timeout=self._client_timeout_ms)
        sock.listen()
        assert sock.sock is not None
        self.port = sock.sock.getsockname()[1]
        self.handler.port = self.port
        self._socket = sock
        self._thread = threading.Thread(
            target=self._serve, name=f"stand-in-nimbus-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._socket is not None
        while not self._closed.is_set():
            try:
                client = self._socket.accept()
            except (OSError, AttributeError, AssertionError):
                if self._closed.is_set():
                    return
                continue
            self._clients.append(client)
            threading.Thread(
                target=self._handle, args=(client,), name="stand-in-nimbus-conn", daemon=True
            ).start()

    def _handle(self, client: Any) -> None:
        itrans = self._itrans.get_transport(client)
        iprot = self._iprot.get_protocol(itrans)
        try:
            while not self._closed.is_set():
                self._processor.process(iprot, iprot)
        except (TTransportException, OSError, EOFError):
            pass
        except Exception as exc:  # a malformed request: record it, drop the connection
            self._processor.errors.append(f"connection: {exc!r}")
        finally:
            itrans.close()

    def stop(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._socket is not None:
            self._socket.close()
        for client in self._clients:
            try:
                if client.sock is not None:
                    client.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def __enter__(self) -> StandInNimbus:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
