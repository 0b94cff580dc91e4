"""One contract for every Store adapter, run against a local directory and real SeaweedFS."""

from __future__ import annotations

import io
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from forumstats import devservices
from forumstats.errors import StoreError
from forumstats.stores import LocalStore, S3Store, Store, StoreNotFound, open_store

pytestmark = pytest.mark.integration

HOSTILE_KEYS = ["", "../x", "a/../x", "/abs", "a//b", "a\x00b", "a\\b", "dir/"]


@pytest.fixture(scope="module")
def contract_bucket(seaweed):
    return seaweed.create_bucket(f"contract-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return open_store(str(tmp_path / "out"))
    # One bucket for the module, a fresh prefix per test: isolates tests and exercises the
    # prefix mapping; test_s3_store_in_a_fresh_bucket covers a store at a bucket's root.
    bucket = request.getfixturevalue("contract_bucket")
    seaweed = request.getfixturevalue("seaweed")
    return open_store(f"s3://{bucket}/run-{uuid.uuid4().hex[:8]}/x",
                      endpoint_url=seaweed.endpoint_url)


def test_open_store_picks_the_adapter(tmp_path, seaweed):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert open_store(tmp_path.as_uri()).url == tmp_path.as_uri()
    s3 = open_store("s3://bucket/some/prefix")
    assert isinstance(s3, S3Store)
    assert s3.url == "s3://bucket/some/prefix"
    assert s3.endpoint_url == seaweed.endpoint_url  # from AWS_ENDPOINT_URL


def test_put_get_round_trip_and_replace(store):
    etag1 = store.put("a/b/c.bin", b"first")
    assert store.get("a/b/c.bin") == b"first"
    etag2 = store.put("a/b/c.bin", b"second, longer")
    assert store.get("a/b/c.bin") == b"second, longer"
    assert etag1 != etag2
    assert store.get_if_changed("a/b/c.bin", None) == (b"second, longer", etag2)


def test_put_if_absent(store):
    assert store.put_if_absent("m/marker", b"one") is True
    assert store.put_if_absent("m/marker", b"two") is False
    assert store.get("m/marker") == b"one"


def test_get_if_changed(store):
    etag = store.put("k.json", b"{}")
    assert store.get_if_changed("k.json", etag) == (None, etag)
    new_etag = store.put("k.json", b'{"a": 1}')
    data, seen = store.get_if_changed("k.json", etag)
    assert (data, seen) == (b'{"a": 1}', new_etag)
    with pytest.raises(StoreNotFound):
        store.get_if_changed("missing.json", etag)


def test_missing_keys(store):
    with pytest.raises(StoreNotFound):
        store.get("nope/none.bin")
    store.delete("nope/none.bin")  # no error
    store.put("x/y", b"1")
    store.delete("x/y")
    with pytest.raises(StoreNotFound):
        store.get("x/y")
    assert store.list("x/") == []


def test_list_with_prefix(store):
    for key in ["p/b.txt", "p/a.txt", "p/sub/c.txt", "pq/d.txt", "q/e.txt"]:
        store.put(key, key.encode())
    assert store.list("p/") == ["p/a.txt", "p/b.txt", "p/sub/c.txt"]
    assert store.list("p") == ["p/a.txt", "p/b.txt", "p/sub/c.txt", "pq/d.txt"]
    assert store.list("p/sub/") == ["p/sub/c.txt"]
    assert store.list("zzz/") == []
    assert store.list() == ["p/a.txt", "p/b.txt", "p/sub/c.txt", "pq/d.txt", "q/e.txt"]


def test_list_paginates_past_1000_keys(store):
    keys = [f"many/{i:05d}.bin" for i in range(1100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put(k, b"x"), keys))
    store.put("other/0.bin", b"x")
    assert store.list("many/") == keys


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_rejected(store, key):
    with pytest.raises(StoreError):
        store.put(key, b"x")
    with pytest.raises(StoreError):
        store.put_if_absent(key, b"x")
    with pytest.raises(StoreError):
        store.get(key)
    with pytest.raises(StoreError):
        store.delete(key)


def test_hostile_prefixes_are_rejected(store):
    for prefix in ["../", "/abs", "a//", "a\x00", "a\\b"]:
        with pytest.raises(StoreError):
            store.list(prefix)


def test_arrow_filesystem_reads_parquet_written_through_put(store):
    table = pa.table({"forum": ["a", "b", "c"], "n": [1, 2, 3]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    store.put("tables/minute/part-0.parquet", buf.getvalue())
    fs, base = store.arrow_filesystem()
    dataset = ds.dataset(f"{base}/tables/minute", filesystem=fs, format="parquet")
    assert dataset.to_table().sort_by("forum").equals(table)


def test_s3_store_in_a_fresh_bucket(s3_bucket, seaweed):
    store = open_store(f"s3://{s3_bucket}")
    assert store.url == f"s3://{s3_bucket}"
    assert store.list() == []
    store.put("a/b.bin", b"1")
    assert store.list() == ["a/b.bin"]
    assert seaweed.client().list_objects_v2(Bucket=s3_bucket)["Contents"][0]["Key"] == "a/b.bin"
    fs, base = store.arrow_filesystem()
    assert base == s3_bucket
    assert fs.get_file_info(f"{base}/a/b.bin").size == 1


def test_s3_prefix_maps_onto_bucket_keys(s3_bucket, seaweed):
    store = open_store(f"s3://{s3_bucket}/out/run")
    store.put("k/v.bin", b"1")
    keys = [o["Key"] for o in seaweed.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["out/run/k/v.bin"]
    assert open_store(f"s3://{s3_bucket}/out").list() == ["run/k/v.bin"]


# --------------------------------------------------------------------------- S3 retries


@pytest.fixture
def private_seaweed(tmp_path):
    """A SeaweedFS of this test alone, so stopping it does not disturb the shared one."""
    with devservices.SeaweedS3(tmp_path / "seaweed") as s3:
        yield s3


def test_s3_put_survives_a_short_outage(private_seaweed, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", private_seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", private_seaweed.secret_key)
    bucket = private_seaweed.create_bucket("retry-test")
    store = S3Store(bucket, "p", private_seaweed.endpoint_url, retries=6)
    assert store.max_backoff_total > 8  # comfortably more than a restart takes
    store.put("before", b"ok")

    private_seaweed.stop()
    result: dict[str, object] = {}

    def put() -> None:
        try:
            result["etag"] = store.put("during/outage.bin", b"landed")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=put)
    thread.start()
    time.sleep(1.0)  # the put is now failing and backing off
    assert thread.is_alive()
    private_seaweed.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert "error" not in result, result
    assert store.get("during/outage.bin") == b"landed"
    assert store.get("before") == b"ok"  # data survived the restart


def test_s3_outage_beyond_the_budget_raises_without_secrets(private_seaweed, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", private_seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", private_seaweed.secret_key)
    bucket = private_seaweed.create_bucket("down-test")
    store = S3Store(bucket, "", private_seaweed.endpoint_url, retries=2)
    private_seaweed.stop()
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        store.put("x.bin", b"never")
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert private_seaweed.endpoint_url in message
    assert "3 attempts" in message
    chain = [info.value, info.value.__cause__, info.value.__context__]
    for exc in chain:
        assert private_seaweed.secret_key not in str(exc)
        assert private_seaweed.secret_key not in repr(exc)


def test_s3_wrong_credentials_give_a_clear_error(s3_bucket, seaweed, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-123")
    store = S3Store(s3_bucket, "", seaweed.endpoint_url, retries=0)
    with pytest.raises(StoreError) as info:
        store.put("x.bin", b"x")
    message = str(info.value)
    assert "credentials" in message
    assert "not-the-secret-123" not in message


def test_s3_missing_bucket_gives_a_clear_error(seaweed):
    store = S3Store("no-such-bucket-here", "", seaweed.endpoint_url, retries=0)
    with pytest.raises(StoreError, match="does not exist"):
        store.put("x.bin", b"x")
