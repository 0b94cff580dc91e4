"""`forumstats top` and `forumstats query` read what `forumstats run` wrote."""

import json

import pandas as pd
import pyarrow.dataset as ds
import pytest

from forumstats.cli import main


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", "--quiet", "--events", "12000", "--output", str(out)]) == 0
    return out


def _threads(out):
    return ds.dataset(out / "thread_counts" / "window=1m", partitioning="hive").to_table()


def test_top_last_period_matches_a_group_by(output, capsys):
    table = _threads(output).to_pandas()
    end = table["window_end"].max()
    recent = table[table["window_start"] >= end - pd.Timedelta(minutes=5)]
    expected = recent.groupby(["forum", "thread"])["count"].sum().sort_values(ascending=False)
    assert main(["top", "--source", str(output), "--last", "5m", "-n", "3"]) == 0
    printed = capsys.readouterr().out
    (forum, thread), count = expected.index[0], int(expected.iloc[0])
    assert forum in printed and thread in printed and f"{count:,}" in printed


def test_query_json_rows_equal_the_dataset(output, capsys):
    assert main(["query", "forum_counts", "--source", str(output), "--window", "1h",
                 "--limit", "100000", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    total = ds.dataset(output / "forum_counts" / "window=1h", partitioning="hive").to_table()
    assert sum(r["count"] for r in rows) == sum(total["count"].to_pylist())
    assert {"window_start", "window_end", "forum", "type", "count"} <= set(rows[0])


def test_query_filters_by_forum_and_time(output, capsys):
    t = _threads(output).to_pandas()
    forum = t["forum"].iloc[0]
    start = t["window_start"].min()
    sel = t[(t["forum"] == forum) & (t["window_start"] == start)]
    iso = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (start + pd.Timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert main(["query", "thread_counts", "--source", str(output), "--forum", forum,
                 "--start", iso, "--end", end, "--limit", "100000", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) - 1 == len(sel)


def test_query_rejects_times_without_zone(output, capsys):
    assert main(["query", "thread_counts", "--source", str(output), "--start",
                 "2026-01-01T00:00"]) == 2
    assert "ISO-8601 with a zone" in capsys.readouterr().err
