"""The dashboard page in headless Chromium (Debian's `chromium`) over the output of a real run:
the numbers it shows are the snapshot files' numbers; freshness states; a screenshot is kept in
test-artifacts/dashboard*.png."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from forumstats import keys
from forumstats.cli import main
from forumstats.dashboard import make_server
from forumstats.stores import LocalStore

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


# --------------------------------------------------------------------------- chromium


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed by scripts/ensure-chromium when missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        done = subprocess.run(["bash", str(ROOT / "scripts" / "ensure-chromium")],
                              capture_output=True, text=True, timeout=600)
        found = shutil.which("chromium") or shutil.which("chromium-browser")
        if not found:
            message = f"no headless chromium: {done.stderr.strip()[-400:]}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    return found


def _browse(chromium: str, profile: Path, url: str, *extra: str) -> str:
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--no-first-run", "--no-default-browser-check",
        "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}",
        # nothing but this machine's loopback server may be reached
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=5000", "--window-size=1280,1600", *extra, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(chromium: str, tmp_path: Path, url: str) -> Node:
    return parse(_browse(chromium, tmp_path / "profile-dom", url, "--dump-dom"))


def screenshot(chromium: str, tmp_path: Path, url: str, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    target.unlink(missing_ok=True)
    _browse(chromium, tmp_path / "profile-shot", url, f"--screenshot={target}")
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    return target


# --------------------------------------------------------------------------- a tiny DOM


class Node:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.children = tag, attrs, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find(self, tag: str | None = None, **attrs: str) -> list[Node]:
        return [n for n in self.iter() if (tag is None or n.tag == tag)
                and all(n.attrs.get(k.rstrip("_").replace("_", "-")) == v
                        for k, v in attrs.items())]

    def by_id(self, ident: str) -> Node:
        (node,) = self.find(id=ident)
        return node


def parse(html: str) -> Node:
    root = Node("#document", {})
    stack = [root]

    class Builder(HTMLParser):
        def handle_starttag(self, tag, attrs):
            node = Node(tag, {k: v or "" for k, v in attrs})
            stack[-1].children.append(node)
            if tag not in VOID:
                stack.append(node)

        def handle_startendtag(self, tag, attrs):
            stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

        def handle_endtag(self, tag):
            for i in range(len(stack) - 1, 0, -1):
                if stack[i].tag == tag:
                    del stack[i:]
                    break

        def handle_data(self, data):
            stack[-1].children.append(data)

    builder = Builder(convert_charrefs=True)
    builder.feed(html)
    builder.close()
    return root


def number(text: str) -> int:
    return int(text.strip().replace(",", ""))


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def run_output(tmp_path_factory) -> Path:
    """The output of a real, bounded `forumstats run` (so its input has ended)."""
    out = tmp_path_factory.mktemp("dash-browser") / "out"
    assert main(["run", "--quiet", "--events", "30000", "--output", str(out)]) == 0
    return out


@contextlib.contextmanager
def serving(root: Path):
    server = make_server(LocalStore(root), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _files(root: Path) -> dict:
    manifest = json.loads((root / keys.MANIFEST_KEY).read_bytes())
    docs = {kind: json.loads((root / key).read_bytes())
            for kind, key in manifest["snapshots"].items()}
    return {"manifest": manifest, **docs}


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- tests


def test_page_shows_the_numbers_of_the_files(chromium, run_output, tmp_path):
    files = _files(run_output)
    rolling, trending, series = files["rolling"], files["trending"], files["series"]
    hourly = rolling["1h"]["forums"]
    by_count = sorted(hourly, key=lambda f: (-hourly[f], f))
    forum = by_count[2]  # not the default (busiest) one: chosen through the URL
    with serving(run_output) as url:
        page = dump_dom(chromium, tmp_path, f"{url}#forum={forum}")
        shot = screenshot(chromium, tmp_path, f"{url}#forum={forum}", "dashboard.png")
    body = page.find("body")[0]
    assert body.attrs["data-state"] == "ready"
    assert body.attrs["data-snapshot"] == files["manifest"]["snapshots"]["series"]

    # freshness: a bounded run has ended
    assert body.attrs["data-freshness"] == "complete"
    assert "Input complete" in page.by_id("freshness").text()
    assert page.by_id("problem").attrs.get("hidden") is not None
    assert page.by_id("source").text() == run_output.as_uri()

    # rolling totals
    for period in ("5m", "1h", "1d"):
        assert number(page.by_id(f"total-{period}").text()) == rolling[period]["total"]
        assert rolling[period]["total"] > 0

    # distinct users of the last hour, overall and for the chosen forum, as in the file
    distinct = files["distinct_users"]
    assert number(page.by_id("distinct-total").text()) == distinct["total"] > 0
    assert f"{forum}: {distinct['forums'][forum]:,}" in page.by_id("distinct-range").text()

    # top forums (1 hour): names and counts, in order
    shown = [(li.attrs["data-forum"], number(li.find("span", class_="n count")[0].text()))
             for li in page.by_id("forums").find("li")]
    assert shown == [(f, hourly[f]) for f in by_count[:15]]

    # trending threads of the forum picked in the URL
    assert page.by_id("trending").attrs["data-forum"] == forum
    rows = [[td.text() for td in tr.find("td")]
            for tr in page.by_id("trending").find("tbody")[0].find("tr")]
    assert rows == [[str(r["rank"]), r["thread"], f"{r['count']:,}"]
                    for r in trending["forums"][forum]]
    assert len(rows) == min(trending["k"], len(trending["forums"][forum])) > 0
    options = [o.text() for o in page.by_id("forum-select").find("option")]
    assert options == sorted(trending["forums"])

    # events per minute by type: every cell of the chart's number table, and the legend
    expected = defaultdict(int)
    for row in series["rows"]:
        expected[(row["minute"], row["type"])] += row["count"]
    expected = dict(expected)
    types = sorted({t for _, t in expected})
    table = page.by_id("series-table")
    assert [th.text() for th in table.find("th")] == ["minute (UTC)", *types, "total"]
    got = {}
    for tr in table.find("tbody")[0].find("tr"):
        for td in tr.find("td", class_="n"):
            got[(tr.attrs["data-minute"], td.attrs["data-type"])] = number(td.text())
        cells = tr.find("td")
        assert number(cells[-1].text()) == sum(expected.get((tr.attrs["data-minute"], t), 0)
                                               for t in types)
    assert {k: v for k, v in got.items() if v} == expected
    assert len(table.find("tbody")[0].find("tr")) == 60  # one row per minute of the hour
    legend = {k.attrs["data-type"]: number(k.find("b")[0].text())
              for k in page.by_id("series-legend").find("span", class_="key")}
    assert legend == {t: sum(v for (_, tt), v in expected.items() if tt == t) for t in types}
    assert len(page.by_id("series-chart").find("polyline")) == len(types)
    assert shot.stat().st_size > 20_000


def _rewrite_manifest(source: Path, target: Path, **changes) -> None:
    shutil.copytree(source, target)
    path = target / keys.MANIFEST_KEY
    manifest = json.loads(path.read_bytes())
    path.write_text(json.dumps({**manifest, **changes}))


def test_live_and_stale_freshness_is_shown(chromium, run_output, tmp_path):
    """The same real snapshots, under manifests of a still running pipeline."""
    now = time.time() * 1000
    live, stale = tmp_path / "live", tmp_path / "stale"
    _rewrite_manifest(run_output, live, ended=False, made_at=_iso(now - 3_000),
                      watermark=_iso(now - 33_000))
    _rewrite_manifest(run_output, stale, ended=False, made_at=_iso(now - 900_000),
                      watermark=_iso(now - 930_000))
    total = _files(run_output)["rolling"]["1h"]["total"]
    with serving(live) as url:
        page = dump_dom(chromium, tmp_path, url)
    assert page.find("body")[0].attrs["data-freshness"] == "live"
    assert page.by_id("freshness").text().startswith("Live: watermark 3")
    assert number(page.by_id("total-1h").text()) == total
    with serving(stale) as url:
        page = dump_dom(chromium, tmp_path, url)
        screenshot(chromium, tmp_path, url, "dashboard-stale.png")
    text = page.by_id("freshness").text()
    assert page.find("body")[0].attrs["data-freshness"] == "stale"
    assert "Stale data" in text and "no new manifest for 15 min" in text
    assert number(page.by_id("total-1h").text()) == total  # the last data stays visible
