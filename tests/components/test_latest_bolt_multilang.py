"""LatestSnapshotBolt run as Storm runs it, driven by the multi-lang driver: the manifest it
publishes says when its newest final window closed (``windows.final_through_at``), taken from
the moment the watermark passed that window's end, not from the moment it was published."""

from __future__ import annotations

import time
from datetime import datetime

import orjson
from tests.components.multilang import ShellBolt
from tests.components.project import CONFIG, worker_env

from forumstats.topology_config import topology_options

W = 1_767_225_600_000  # 2026-01-01T00:00Z
MIN = 60_000


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_manifest_says_when_the_newest_final_window_closed(topology, resources, tmp_path):
    out = tmp_path / "out"
    conf = dict(topology_options(str(CONFIG), "local").options)
    conf.update({"forumstats.output": str(out), "forumstats.flush_interval": "2s"})
    bolt = ShellBolt.from_topology(topology, "latest", cwd=resources, conf=conf,
                                   env=worker_env(), workdir=tmp_path / "latest")
    try:
        manifest = out / "latest" / "manifest.json"
        partials = {"watermark": W + 30_000, "rows": [[W, "f", "vote", 2]]}
        bolt.send_tuple([0, partials], comp="counts", stream="partials")
        bolt.flush()
        time.sleep(1.0)  # the next close happens measurably later than the first publish
        before = int(time.time() * 1000)
        partials = {"watermark": W + 90_000, "rows": [[W + MIN, "f", "vote", 1]]}
        bolt.send_tuple([0, partials], comp="counts", stream="partials")
        bolt.flush()
        after = int(time.time() * 1000)
        deadline = time.monotonic() + 15
        doc = {}
        while doc.get("windows", {}).get("final_through") != "2026-01-01T00:01:00.000Z":
            assert time.monotonic() < deadline, f"manifest not published: {doc}"
            assert bolt.tick().acked
            time.sleep(0.2)
            doc = orjson.loads(manifest.read_bytes()) if manifest.exists() else {}
        closed = _ms(doc["windows"]["final_through_at"])
        assert before <= closed <= after
        assert _ms(doc["made_at"]) >= closed
        assert bolt.errors == []
    finally:
        bolt.close()
