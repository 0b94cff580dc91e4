"""`forumstats run --output s3://...` against a real SeaweedFS, read back as analysts would."""

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from forumstats import query
from forumstats.cli import main
from forumstats.stores import open_store

pytestmark = pytest.mark.integration


def test_run_to_s3_reads_back_with_pyarrow_and_pandas(seaweed, s3_bucket):
    url = f"s3://{s3_bucket}/stats"
    assert main(["run", "--quiet", "--events", "20000", "--output", url,
                 "--endpoint-url", seaweed.endpoint_url]) == 0

    fs = pafs.S3FileSystem(endpoint_override=seaweed.endpoint_url, scheme="http",
                           access_key=seaweed.access_key, secret_key=seaweed.secret_key,
                           region=seaweed.region)
    threads = ds.dataset(f"{s3_bucket}/stats/thread_counts/window=1m", filesystem=fs,
                         format="parquet", partitioning="hive").to_table()
    forums = ds.dataset(f"{s3_bucket}/stats/forum_counts/window=1m", filesystem=fs,
                        format="parquet", partitioning="hive").to_table().to_pandas()
    dead = ds.dataset(f"{s3_bucket}/stats/dead_letters", filesystem=fs, format="parquet",
                      partitioning="hive").to_table()
    accepted = 20_000 - dead.num_rows
    assert dead.num_rows > 0
    assert sum(threads["count"].to_pylist()) == accepted
    assert int(forums["count"].sum()) == accepted
    assert {"date", "hour"} <= set(threads.column_names)

    # the forumstats API reads the same objects through the store
    store = open_store(url, endpoint_url=seaweed.endpoint_url)
    df = query.load("thread_counts", source=store)
    assert int(df["count"].sum()) == accepted
    assert query.top_threads(store, 1)[0][2] == df.groupby(["forum", "thread"])["count"].sum().max()
