"""The dashboard server: one page and a small read-only JSON API over ``latest/``.

Routes (GET and HEAD only; every other method gets 405; anything else 404):

- ``/``, ``/app.js``, ``/app.css``: the page, from this package's ``static/`` folder, read once
  at start-up by fixed names (no request path ever reaches the file system);
- ``/api/manifest``: ``{"manifest": <latest/manifest.json as stored>, "freshness": {...},
  "source": {...}, "refresh_seconds": N, "server_time": ISO}``; 503 while there is no manifest;
- ``/api/snapshot/<kind>``: the bytes of the snapshot file the current manifest names for
  ``kind`` (``series``, ``rolling``, ...), with its key in ``X-Snapshot-Key``. ``kind`` is only
  looked up among the manifest's kinds: a client never supplies a store key or path.

The store is read by :class:`LatestSource`: at most once per ``recheck`` interval it asks for
the manifest with its last ETag (``Store.get_if_changed``); only when the ETag changed does it
read the manifest and the snapshot files it names (snapshots are immutable, so one already read
under the same key is reused). Manifest and snapshots are swapped in together, so the API always
serves one consistent set.

Freshness (see :func:`freshness`) is judged with the server's clock: the watermark age is
``now - watermark`` = (``made_at - watermark``: how far event time trailed when the manifest was
made) + (``now - made_at``: how long ago it was made). Data is *stale* when the input has not
ended and the watermark age exceeds ``stale_after``: either the pipeline stopped publishing or it
is behind. An ended (bounded, backfill) run is never stale: its data is complete.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import orjson

from .. import keys
from ..errors import ConfigError, StoreError
from ..events import parse_iso_ms
from ..latest import iso
from ..stores import Store, StoreNotFound, validate_key

log = logging.getLogger(__name__)

DEFAULT_PORT = 8787
DEFAULT_STALE_AFTER_MS = 120_000
DEFAULT_REFRESH_MS = 5_000
DEFAULT_RECHECK_S = 1.0
_KIND = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_STATIC = {  # route -> (file in static/, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_GZIP_MIN_BYTES = 1024


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


# --------------------------------------------------------------------------- reading latest/


@dataclass
class Document:
    """One immutable snapshot file (or static file) as served."""

    key: str
    body: bytes
    etag: str
    _gzipped: bytes | None = field(default=None, repr=False)

    def gzipped(self) -> bytes:
        if self._gzipped is None:  # a race computes it twice at worst; same bytes
            self._gzipped = gzip.compress(self.body, compresslevel=5, mtime=0)
        return self._gzipped


@dataclass(frozen=True)
class View:
    """A manifest and the snapshot files it names, read together."""

    manifest: dict[str, Any]
    etag: str
    documents: dict[str, Document]
    read_at_ms: int


def parse_manifest(data: bytes) -> dict[str, Any]:
    """The manifest, checked enough that serving it is safe; ValueError says what is wrong."""
    try:
        manifest = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{keys.MANIFEST_KEY} is not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{keys.MANIFEST_KEY} is not a JSON object")
    snapshots = manifest.get("snapshots")
    if not isinstance(snapshots, dict):
        raise ValueError(f"{keys.MANIFEST_KEY} has no 'snapshots' object")
    for kind, key in snapshots.items():
        if not _KIND.match(kind) or not isinstance(key, str):
            raise ValueError(f"{keys.MANIFEST_KEY} names a snapshot kind {kind[:80]!r} that is "
                             "not a plain name")
        try:
            validate_key(key)
        except StoreError as exc:
            raise ValueError(f"{keys.MANIFEST_KEY}: {exc}") from None
        if not key.startswith(keys.SNAPSHOTS_PREFIX):
            raise ValueError(f"{keys.MANIFEST_KEY} names {key[:200]!r} for {kind!r}, which is "
                             f"not below {keys.SNAPSHOTS_PREFIX}")
    return manifest


class LatestSource:
    """The current :class:`View` of a store's ``latest/``, re-read only when the manifest's
    ETag changed, and asked for at most once per ``recheck_s`` however many clients poll."""

    def __init__(self, store: Store, *, recheck_s: float = DEFAULT_RECHECK_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.recheck_s = recheck_s
        self._clock = clock
        self._lock = threading.Lock()
        self._view: View | None = None
        self._etag: str | None = None
        self._error: str | None = None
        self._checked_s = float("-inf")
        self.stats = {"manifest_checks": 0, "manifest_reads": 0, "snapshot_reads": 0}

    @property
    def url(self) -> str:
        return self.store.url

    def current(self) -> tuple[View | None, str | None, int | None]:
        """(view or None, error or None, when the store was last asked, epoch ms)."""
        with self._lock:
            now = self._clock()
            if now - self._checked_s >= self.recheck_s:
                self._checked_s = now
                self._refresh(int(now * 1000))
            checked = int(self._checked_s * 1000) if self._checked_s != float("-inf") else None
            return self._view, self._error, checked

    def _refresh(self, now_ms: int) -> None:
        self.stats["manifest_checks"] += 1
        try:
            data, etag = self.store.get_if_changed(keys.MANIFEST_KEY, self._etag)
        except StoreNotFound:
            self._error = (f"there is no {keys.MANIFEST_KEY} in {self.store.url} yet: is "
                           "`forumstats run` writing to this output?")
            return
        except StoreError as exc:
            self._error = f"cannot read {keys.MANIFEST_KEY}: {exc}"
            return
        if data is None:
            self._error = None
            return
        self.stats["manifest_reads"] += 1
        try:
            manifest = parse_manifest(data)
            documents = self._read_snapshots(manifest["snapshots"])
        except StoreNotFound as exc:
            # A newer manifest replaced this one and its snapshots expired meanwhile: the ETag
            # is not taken, so the next check reads the manifest again.
            self._error = f"a snapshot named by the manifest is gone ({exc}); re-reading"
            return
        except (StoreError, ValueError) as exc:
            self._error = f"cannot use {keys.MANIFEST_KEY}: {exc}"
            return
        self._view = View(manifest, etag, documents, now_ms)
        self._etag = etag
        self._error = None

    def _read_snapshots(self, snapshots: dict[str, str]) -> dict[str, Document]:
        old = self._view.documents if self._view else {}
        documents = {}
        for kind, key in snapshots.items():
            if kind in old and old[kind].key == key:
                documents[kind] = old[kind]
                continue
            body = self.store.get(key)
            self.stats["snapshot_reads"] += 1
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"snapshot {key!r} is not JSON: {exc}") from None
            documents[kind] = Document(key, body, _etag(body))
        return documents


def freshness(manifest: dict[str, Any], now_ms: int, stale_after_ms: int) -> dict[str, Any]:
    """How fresh the data named by ``manifest`` is at ``now_ms`` (the server's clock).

    ``state`` is ``complete`` (input ended: every window final; never stale), ``live``,
    ``waiting`` (no event seen yet, manifests still coming) or ``stale``.
    """
    def secs(ms: int | None) -> float | None:
        return None if ms is None else round(ms / 1000, 1)

    def ms_of(value: Any) -> int | None:
        return parse_iso_ms(value) if isinstance(value, str) else None

    made = ms_of(manifest.get("made_at"))
    mark = ms_of(manifest.get("watermark"))
    ended = manifest.get("ended") is True
    made_age = None if made is None else max(0, now_ms - made)
    mark_age = None if mark is None else max(0, now_ms - mark)
    lag = None if made is None or mark is None else max(0, made - mark)
    limit = _human(stale_after_ms)
    if ended:
        state, reason = "complete", "input complete: every window is final"
    elif made is None:
        state, reason = "stale", "the manifest does not say when it was made"
    elif mark is None:
        state = "stale" if made_age > stale_after_ms else "waiting"
        reason = (f"no new manifest for {_human(made_age)} (more than {limit}): is the "
                  "pipeline running?" if state == "stale" else "waiting for the first events")
    elif mark_age > stale_after_ms:
        state = "stale"
        if made_age > stale_after_ms:
            reason = (f"no new manifest for {_human(made_age)} (more than {limit}): is the "
                      "pipeline running?")
        else:
            reason = (f"event time was {_human(lag)} behind when the manifest was made (more "
                      f"than {limit}): the pipeline is behind, or the input is old or idle")
    else:
        state, reason = "live", f"watermark within {limit} of now"
    return {"state": state, "stale": state == "stale", "reason": reason,
            "stale_after_seconds": secs(stale_after_ms),
            "watermark_age_seconds": secs(mark_age), "made_at_age_seconds": secs(made_age),
            "lag_at_made_seconds": secs(lag)}


def _human(ms: int | None) -> str:
    if ms is None:
        return "-"
    s = ms // 1000
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172_800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


# --------------------------------------------------------------------------- HTTP


def _load_static() -> dict[str, tuple[Document, str]]:
    folder = resources.files(__package__).joinpath("static")
    out = {}
    for route, (name, content_type) in _STATIC.items():
        body = folder.joinpath(name).read_bytes()
        out[route] = (Document(name, body, _etag(body)), content_type)
    return out


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"
    server_version = "forumstats-dashboard"
    timeout = 30  # a client that stops sending loses its thread after this

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def __getattr__(self, name: str):
        # http.server calls do_<METHOD>: every method but GET and HEAD is refused the same way.
        if name.startswith("do_"):
            return self._refuse_method
        raise AttributeError(name)

    def _refuse_method(self) -> None:
        self.close_connection = True  # the request body (if any) is not read
        self._json(405, {"error": "this server is read-only: use GET"},
                   extra={"Allow": "GET, HEAD", "Connection": "close"})

    # -- routing
    def _serve(self, head: bool) -> None:
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # a GET with a body: answer, then drop the connection
        if not self._host_allowed():
            self._json(403, {"error": "unexpected Host header"}, head=head)
            return
        raw = self.path
        if not raw.startswith("/") or raw.startswith("//"):
            self._json(404, {"error": "not found"}, head=head)
            return
        path = raw.split("?", 1)[0].split("#", 1)[0]  # never percent-decoded: routes are fixed
        static = self.server.static.get(path)
        if static is not None:
            document, content_type = static
            self._document(document, content_type, "no-cache", head)
        elif path == "/api/manifest":
            self._manifest(head)
        elif path.startswith("/api/snapshot/"):
            self._snapshot(path[len("/api/snapshot/"):], head)
        else:
            self._json(404, {"error": "not found"}, head=head)

    def _host_allowed(self) -> bool:
        """On a loopback address, only loopback Host names (defeats DNS rebinding)."""
        if not self.server.loopback:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if not host:
            return True
        name = host[:host.find("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]
        return name in _LOOPBACK_NAMES

    def _manifest(self, head: bool) -> None:
        srv = self.server
        view, error, checked_ms = srv.source.current()
        now_ms = int(srv.clock() * 1000)
        source = {"url": srv.source.url, "error": error, "checked_at": iso(checked_ms),
                  "changed_at": iso(view.read_at_ms) if view else None}
        if view is None:
            self._json(503, {"error": error or "no data yet", "source": source,
                             "refresh_seconds": srv.refresh_ms / 1000,
                             "server_time": iso(now_ms)}, head=head)
            return
        self._json(200, {"manifest": view.manifest, "etag": view.etag,
                         "freshness": freshness(view.manifest, now_ms, srv.stale_after_ms),
                         "source": source, "refresh_seconds": srv.refresh_ms / 1000,
                         "server_time": iso(now_ms)}, head=head)

    def _snapshot(self, kind: str, head: bool) -> None:
        view, error, _ = self.server.source.current()
        document = view.documents.get(kind) if view is not None and _KIND.match(kind) else None
        if document is None:
            status = 503 if view is None else 404
            self._json(status, {"error": "no such snapshot kind in the current manifest"
                                if view is not None else (error or "no data yet")}, head=head)
            return
        self._document(document, "application/json", "no-cache", head,
                       extra={"X-Snapshot-Key": document.key})

    # -- responses
    def _document(self, document: Document, content_type: str, cache: str, head: bool,
                  extra: dict[str, str] | None = None) -> None:
        headers = {"ETag": document.etag, "Cache-Control": cache, "Vary": "Accept-Encoding",
                   **(extra or {})}
        match = self.headers.get("If-None-Match")
        if match and document.etag in [tag.strip() for tag in match.split(",")]:
            self._send(304, b"", None, headers, head=True)
            return
        body = document.body
        if len(body) >= _GZIP_MIN_BYTES and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = document.gzipped()
            headers["Content-Encoding"] = "gzip"
        self._send(200, body, content_type, headers, head)

    def _json(self, status: int, payload: dict, head: bool = False,
              extra: dict[str, str] | None = None) -> None:
        self._send(status, orjson.dumps(payload), "application/json",
                   {"Cache-Control": "no-store", **(extra or {})}, head)

    def _send(self, status: int, body: bytes, content_type: str | None,
              headers: dict[str, str], head: bool) -> None:
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Content-Security-Policy", _CSP)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not head and body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        # http.server's own errors (malformed request line, too long headers, ...): JSON too,
        # naming the status only (the request is not echoed back).
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._json(code, {"error": phrase}, head=self.command == "HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class DashboardServer(ThreadingHTTPServer):
    """``make_server(...)`` then ``serve_forever()``; ``url`` says where."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # many tabs polling at once must not wait for SYN retries

    def __init__(self, source: LatestSource, host: str, port: int, *,
                 stale_after_ms: int = DEFAULT_STALE_AFTER_MS,
                 refresh_ms: int = DEFAULT_REFRESH_MS,
                 clock: Callable[[], float] = time.time) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.source = source
        self.stale_after_ms = stale_after_ms
        self.refresh_ms = refresh_ms
        self.clock = clock
        self.static = _load_static()
        self.loopback = _is_loopback(host)
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up in DNS (getfqdn); not needed here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(store: Store, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                stale_after_ms: int = DEFAULT_STALE_AFTER_MS,
                refresh_ms: int = DEFAULT_REFRESH_MS,
                recheck_s: float = DEFAULT_RECHECK_S,
                clock: Callable[[], float] = time.time) -> DashboardServer:
    """A bound (not yet serving) dashboard over ``store``; port 0 picks a free port."""
    if stale_after_ms <= 0 or refresh_ms <= 0:
        raise ConfigError("--stale-after and --refresh must be positive durations")
    source = LatestSource(store, recheck_s=min(recheck_s, refresh_ms / 1000), clock=clock)
    try:
        return DashboardServer(source, host, port, stale_after_ms=stale_after_ms,
                               refresh_ms=refresh_ms, clock=clock)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another "
                          "--port (0 picks a free one) or --host") from exc
