"""`forumstats dashboard`: the JSON API over the output of real runs (local and S3), ETag
caching of the manifest, freshness, and refusal of writes, path traversal and foreign Hosts."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from forumstats import keys
from forumstats.cli import main
from forumstats.dashboard import freshness, make_server
from forumstats.stores import LocalStore, open_store

NOW_MS = 1_800_000_000_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def run_output(tmp_path_factory) -> Path:
    """The output directory of a real (bounded, so ended) `forumstats run`."""
    out = tmp_path_factory.mktemp("dash-api") / "out"
    assert main(["run", "--quiet", "--events", "12000", "--output", str(out)]) == 0
    return out


@contextlib.contextmanager
def serving(store, **options):
    server = make_server(store, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(server, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in {"Host": f"127.0.0.1:{port}", **(headers or {})}.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def get_json(server, path: str):
    status, headers, body = request(server, "GET", path)
    return status, json.loads(body)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


# --------------------------------------------------------------------------- the API


def test_manifest_and_snapshots_are_the_files(run_output):
    manifest = json.loads((run_output / keys.MANIFEST_KEY).read_bytes())
    with serving(LocalStore(run_output)) as server:
        status, envelope = get_json(server, "/api/manifest")
        assert status == 200
        assert envelope["manifest"] == manifest
        assert envelope["freshness"]["state"] == "complete"  # a bounded run has ended
        assert envelope["freshness"]["stale"] is False
        assert envelope["source"] == {**envelope["source"], "url": run_output.as_uri(),
                                      "error": None}
        assert set(manifest["snapshots"]) == {"series", "rolling", "trending", "open_windows",
                                              "distinct_users"}
        for kind, key in manifest["snapshots"].items():
            status, headers, body = request(server, "GET", f"/api/snapshot/{kind}")
            assert status == 200
            assert body == (run_output / key).read_bytes()
            assert headers["X-Snapshot-Key"] == key
            assert headers["Content-Type"] == "application/json"
            # gzip when asked, same bytes inside
            status, headers, zipped = request(server, "GET", f"/api/snapshot/{kind}",
                                              {"Accept-Encoding": "gzip, deflate"})
            if len(body) >= 1024:
                assert headers["Content-Encoding"] == "gzip"
                assert gzip.decompress(zipped) == body
            # revalidation is free
            status, _, empty = request(server, "GET", f"/api/snapshot/{kind}",
                                       {"If-None-Match": headers["ETag"]})
            assert (status, empty) == (304, b"")
        status, headers, body = request(server, "HEAD", "/api/snapshot/series")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
        status, _ = get_json(server, "/api/snapshot/not_a_kind")
        assert status == 404  # only kinds the manifest names


def test_static_page_is_self_contained(run_output):
    with serving(LocalStore(run_output)) as server:
        status, headers, page = request(server, "GET", "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        for path, kind in (("/app.js", "text/javascript"), ("/app.css", "text/css")):
            status, headers, body = request(server, "GET", path)
            assert status == 200 and headers["Content-Type"].startswith(kind)
            text = body.decode()
            # nothing from the internet: the only absolute URL is the SVG namespace name
            assert text.replace("http://www.w3.org/2000/svg", "").count("://") == 0
        assert b"://" not in page
        assert b'src="/app.js"' in page and b'href="/app.css"' in page


def test_writes_and_other_methods_are_refused(run_output):
    before = _tree(run_output)
    with serving(LocalStore(run_output)) as server:
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND",
                       "MKCOL", "COPY", "MOVE", "CONNECT", "FOO"):
            for path in ("/", "/api/manifest", "/api/snapshot/series", f"/{keys.MANIFEST_KEY}"):
                status, headers, body = request(server, method, path, body=b'{"x": 1}')
                assert status == 405, (method, path)
                assert headers["Allow"] == "GET, HEAD"
        status, _ = get_json(server, "/api/manifest")  # still serving
        assert status == 200
    assert _tree(run_output) == before


TRAVERSALS = [
    "/../latest/manifest.json", "/latest/manifest.json", "/api/snapshot/../manifest",
    "/api/snapshot/..%2F..%2Flatest%2Fmanifest.json", "/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2f..%2fetc%2fpasswd", "/static/app.js", "/app.js/../../server.py",
    "/api/snapshot/latest/snapshots/x/series.json", "/api/snapshot/", "/api/snapshot/series.json",
    "/api/snapshot/series/", "/api/snapshot/series/../rolling", "//etc/passwd", "/server.py",
    "/dashboard/server.py", "/index.html/..", "/api/snapshot/%73eries", "/api/manifest/..",
    "/api/snapshot/..", "/api/snapshot/....//secret.txt", "/secret.txt", "/../secret.txt",
    "/api/snapshot/\\..\\secret.txt", "/vendor/../../secret.txt", "/app.js%00.png",
    "http://127.0.0.1/secret.txt", "*",
]


def test_path_traversal_is_refused(run_output, tmp_path):
    # A secret next to the store root, and a copy of the output that holds one too.
    root = tmp_path / "out"
    shutil.copytree(run_output, root)
    (tmp_path / "secret.txt").write_text("TOP-SECRET-1")
    (root / "secret.txt").write_text("TOP-SECRET-2")
    with serving(LocalStore(root)) as server:
        for path in TRAVERSALS:
            status, headers, body = request(server, "GET", path)
            assert status in (400, 404), path
            assert b"SECRET" not in body and b"import" not in body, path
            assert headers["Content-Type"] == "application/json", path
        # a raw request line with a dot-dot target, bypassing any client normalisation
        host, port = server.server_address[:2]
        with socket.create_connection((host, port), timeout=5) as raw:
            raw.sendall(b"GET /../../../../etc/passwd HTTP/1.0\r\n\r\n")
            reply = raw.recv(65536)
        assert reply.split(b"\r\n", 1)[0].endswith(b" 404 Not Found") and b"root:" not in reply
        with socket.create_connection((host, port), timeout=5) as raw:
            raw.sendall(b"GET /<script>alert(1)</script> HTTP/9.9\r\n\r\n")
            reply = raw.recv(65536)
        assert b"<script>" not in reply and b"error" in reply  # not echoed back


def test_manifest_naming_keys_outside_snapshots_is_not_served(tmp_path):
    store = LocalStore(tmp_path)
    store.put("secret/data.json", b'{"secret": "TOP-SECRET"}')
    store.put(keys.MANIFEST_KEY, json.dumps({
        "made_at": _iso(NOW_MS), "watermark": None, "ended": True,
        "snapshots": {"series": "secret/data.json"}}).encode())
    with serving(store) as server:
        status, envelope = get_json(server, "/api/manifest")
        assert status == 503 and "not below latest/snapshots/" in envelope["error"]
        status, headers, body = request(server, "GET", "/api/snapshot/series")
        assert status == 503 and b"SECRET" not in body


def test_foreign_host_header_is_refused(run_output):
    """DNS rebinding: a page on another name resolving to 127.0.0.1 must not read the API."""
    with serving(LocalStore(run_output)) as server:
        port = server.server_address[1]
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
            status, _, _ = request(server, "GET", "/api/manifest", {"Host": host})
            assert status == 403, host
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", "LOCALHOST"):
            status, _, _ = request(server, "GET", "/api/manifest", {"Host": host})
            assert status == 200, host


# --------------------------------------------------------------------------- freshness


def _manifest(made_ms: int, watermark_ms: int | None, ended: bool = False) -> dict:
    return {"made_at": _iso(made_ms), "watermark": _iso(watermark_ms) if watermark_ms else None,
            "ended": ended, "snapshots": {}}


@pytest.mark.parametrize(("made_age", "lag", "ended", "state", "reason"), [
    (5_000, 35_000, False, "live", "within 2 min"),
    (300_000, 35_000, False, "stale", "no new manifest for 5 min"),
    (5_000, 600_000, False, "stale", "event time was 10 min behind"),
    (5_000, None, False, "waiting", "first events"),
    (600_000, None, False, "stale", "no new manifest"),
    (10 * 86_400_000, None, True, "complete", "input complete"),
])
def test_freshness(made_age, lag, ended, state, reason):
    made = NOW_MS - made_age
    got = freshness(_manifest(made, None if lag is None else made - lag, ended), NOW_MS, 120_000)
    assert got["state"] == state and got["stale"] is (state == "stale")
    assert reason in got["reason"]
    assert got["made_at_age_seconds"] == made_age / 1000
    if lag is not None:
        assert got["watermark_age_seconds"] == (made_age + lag) / 1000
        assert got["lag_at_made_seconds"] == lag / 1000


def test_freshness_follows_the_server_clock_and_new_manifests(tmp_path):
    store = LocalStore(tmp_path)
    clock = [NOW_MS / 1000]
    with serving(store, clock=lambda: clock[0], stale_after_ms=60_000) as server:
        status, envelope = get_json(server, "/api/manifest")
        assert status == 503 and "no latest/manifest.json" in envelope["error"]
        live = _manifest(NOW_MS - 2_000, NOW_MS - 32_000)
        store.put(keys.MANIFEST_KEY, json.dumps(live).encode())
        clock[0] += 2  # past the re-check interval
        status, envelope = get_json(server, "/api/manifest")
        assert status == 200 and envelope["freshness"]["state"] == "live"
        clock[0] += 120  # the pipeline stopped publishing
        status, envelope = get_json(server, "/api/manifest")
        assert envelope["freshness"]["state"] == "stale"
        assert "no new manifest for 2 min" in envelope["freshness"]["reason"]
        (tmp_path / keys.MANIFEST_KEY).unlink()  # the source broke: keep the last data, say so
        clock[0] += 2
        status, envelope = get_json(server, "/api/manifest")
        assert status == 200 and envelope["manifest"]["made_at"] == _iso(NOW_MS - 2_000)
        assert "no latest/manifest.json" in envelope["source"]["error"]


def test_snapshot_that_vanished_is_retried(run_output, tmp_path):
    root = tmp_path / "out"
    shutil.copytree(run_output, root)
    manifest = json.loads((root / keys.MANIFEST_KEY).read_bytes())
    series = root / manifest["snapshots"]["series"]
    kept = series.read_bytes()
    series.unlink()
    clock = [NOW_MS / 1000]
    with serving(LocalStore(root), clock=lambda: clock[0]) as server:
        status, envelope = get_json(server, "/api/manifest")
        assert status == 503 and "gone" in envelope["error"]
        series.write_bytes(kept)  # the same manifest (same ETag) must be read again
        clock[0] += 2
        status, envelope = get_json(server, "/api/manifest")
        assert status == 200
        assert request(server, "GET", "/api/snapshot/series")[2] == kept


# --------------------------------------------------------------------------- S3 and the CLI


class CountingStore:
    """Wraps a store and counts its reads."""

    def __init__(self, store):
        self.store, self.url = store, store.url
        self.gets: list[str] = []
        self.checks: list[bool] = []  # one per get_if_changed: did it return bytes?

    def get(self, key):
        self.gets.append(key)
        return self.store.get(key)

    def get_if_changed(self, key, etag):
        data, new = self.store.get_if_changed(key, etag)
        self.checks.append(data is not None)
        return data, new


def test_s3_bucket_is_read_again_only_when_the_manifest_etag_changed(seaweed, s3_bucket):
    url = f"s3://{s3_bucket}/forumstats"
    assert main(["run", "--quiet", "--events", "5000", "--output", url,
                 "--endpoint-url", seaweed.endpoint_url]) == 0
    s3 = open_store(url, endpoint_url=seaweed.endpoint_url)
    manifest = json.loads(s3.get(keys.MANIFEST_KEY))
    store = CountingStore(s3)
    clock = [NOW_MS / 1000]
    with serving(store, clock=lambda: clock[0]) as server:
        for _ in range(3):
            status, envelope = get_json(server, "/api/manifest")
            assert status == 200 and envelope["manifest"] == manifest
            for kind, key in manifest["snapshots"].items():
                assert request(server, "GET", f"/api/snapshot/{kind}")[2] == s3.get(key)
            clock[0] += 2
        # one full read, then conditional GETs that S3 answered 304
        assert store.checks == [True, False, False]
        assert sorted(store.gets) == sorted(manifest["snapshots"].values())
        # a new manifest naming one new snapshot: the manifest and that one file are read
        new_key = manifest["snapshots"]["series"].replace("/series.json", "-b/series.json")
        s3.put(new_key, s3.get(manifest["snapshots"]["series"]), "application/json")
        changed = {**manifest, "made_at": _iso(NOW_MS),
                   "snapshots": {**manifest["snapshots"], "series": new_key}}
        s3.put(keys.MANIFEST_KEY, json.dumps(changed).encode(), "application/json")
        status, envelope = get_json(server, "/api/manifest")
        assert envelope["manifest"] == changed
        assert store.checks[-1] is True and store.gets[-1] == new_key
        assert len(store.gets) == len(manifest["snapshots"]) + 1
        status, headers, _ = request(server, "GET", "/api/snapshot/series")
        assert headers["X-Snapshot-Key"] == new_key


def test_cli_serves_on_loopback(run_output):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "forumstats.cli", "dashboard", "--source", str(run_output),
         "--port", "0"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "forumstats dashboard on http://127.0.0.1:" in line, line
        port = int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/manifest")
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["freshness"]["state"] == "complete"
        conn.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_reports_a_busy_port(run_output, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["dashboard", "--source", str(run_output), "--port", str(port)]) == 2
    assert "pick another --port" in " ".join(capsys.readouterr().err.split())


def test_cli_rejects_bad_durations(run_output, capsys):
    assert main(["dashboard", "--source", str(run_output), "--stale-after", "soon"]) == 2
    assert "duration 'soon' is not understood" in capsys.readouterr().err


def test_waits_politely_for_many_polls(run_output):
    """Many clients polling at once cost one conditional read per re-check interval."""
    store = CountingStore(LocalStore(run_output))
    with serving(store, recheck_s=60) as server:
        threads = [threading.Thread(target=get_json, args=(server, "/api/manifest"))
                   for _ in range(20)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert time.monotonic() - start < 10
    assert store.checks == [True]
