"""While forumstats writes and restates windows and rewrites latest/, a reader polling the
same S3 prefix never sees a (window, key) twice and never follows a manifest to a missing file."""

import subprocess
import sys
import time
from collections import Counter

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from forumstats import keys
from forumstats.stores import StoreNotFound, open_store

pytestmark = pytest.mark.integration


def _duplicates(fs, root: str) -> list:
    try:
        table = ds.dataset(root, filesystem=fs, format="parquet",
                           partitioning="hive").to_table(
            columns=["window_start", "forum", "thread", "type"])
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        # nothing written yet, or an object replaced between the listing (which gave its old
        # size) and the read of its footer: a torn read the reader retries, never a double
        return []
    rows = Counter(zip(*(table[c].to_pylist() for c in table.column_names), strict=True))
    return [row for row, n in rows.items() if n > 1]


def test_polling_reader_sees_each_window_key_once_and_no_dangling_manifest(seaweed, s3_bucket,
                                                                           tmp_path):
    url = f"s3://{s3_bucket}/live"
    store = open_store(url, endpoint_url=seaweed.endpoint_url)
    fs = pafs.S3FileSystem(endpoint_override=seaweed.endpoint_url, scheme="http",
                           access_key=seaweed.access_key, secret_key=seaweed.secret_key,
                           region=seaweed.region)
    runner = subprocess.Popen(
        [sys.executable, "-m", "forumstats.cli", "run", "--quiet", "--events", "60000",
         "--output", url, "--endpoint-url", seaweed.endpoint_url],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "run.log", "wb"))
    polls = manifests = 0
    try:
        while runner.poll() is None:
            polls += 1
            assert _duplicates(fs, f"{s3_bucket}/live/thread_counts/window=1m") == []
            try:
                manifest = orjson.loads(store.get(keys.MANIFEST_KEY))
            except StoreNotFound:
                continue
            manifests += 1
            for key in manifest["snapshots"].values():
                store.get(key)  # StoreNotFound here would be a dangling manifest
            time.sleep(0.2)
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.wait(30)
    assert runner.returncode == 0, (tmp_path / "run.log").read_text()
    assert polls >= 5 and manifests >= 2, (polls, manifests)
    assert _duplicates(fs, f"{s3_bucket}/live/thread_counts/window=1m") == []
    # the run did restate windows while we were reading (late events within the lateness)
    revisions = [int(pq.read_metadata(fs.open_input_file(f"{s3_bucket}/live/{k}")).metadata
                     [b"forumstats.revision"]) for k in
                 store.list("thread_counts/window=1m/")]
    assert max(revisions) > 1
