"""`forumstats run` end to end on local sources and a local output directory."""

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from batch_truth import truth
from forumstats.cli import main
from forumstats.generator import generate


def _read(path, dataset, window="1m"):
    return ds.dataset(path / dataset / f"window={window}", partitioning="hive").to_table()


def _run(*args):
    return main(["run", "--quiet", *args])


def _summary_counts(out_dir):
    threads = _read(out_dir, "thread_counts")
    forums = _read(out_dir, "forum_counts")
    dead = ds.dataset(out_dir / "dead_letters", partitioning="hive").to_table()
    return threads, forums, dead


def test_generator_run_counts_every_accepted_event_once(tmp_path):
    out = tmp_path / "out"
    assert _run("--events", "30000", "--output", str(out)) == 0
    threads, forums, dead = _summary_counts(out)
    records = 30_000
    accepted = records - dead.num_rows
    assert sum(threads["count"].to_pylist()) == accepted
    assert sum(forums["count"].to_pylist()) == accepted
    # rollups count the same events again, per hour and per day
    for window in ("1h", "1d"):
        assert sum(_read(out, "thread_counts", window)["count"].to_pylist()) == accepted
    # every malformed record of the generator appears exactly once with a reason
    assert dead.num_rows > 0
    assert len(set(dead["offset"].to_pylist())) == dead.num_rows
    assert all(dead["reason"].to_pylist())


def test_ndjson_windows_equal_duckdb_group_by(tmp_path):
    src = tmp_path / "events.ndjson"
    lines = list(generate(20_000, seed=11, events_per_second=20.0))
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    assert _run("--source", str(src), "--output", str(out)) == 0
    dead_offsets = set(ds.dataset(out / "dead_letters", partitioning="hive")
                       .to_table()["offset"].to_pylist())
    # The batch truth: DuckDB over the lines the pipeline accepted, parsed by DuckDB itself.
    good = tmp_path / "good.ndjson"
    good.write_bytes(b"\n".join(line for i, line in enumerate(lines) if i not in dead_offsets))
    con = duckdb.connect()
    truth = con.execute(f"""
        WITH ev AS (
          SELECT type, forum, json_extract_string(thread, '$') AS thread,
                 CASE WHEN json_type(ts) = 'VARCHAR'
                      THEN epoch_ms(CAST(json_extract_string(ts, '$') AS TIMESTAMPTZ))
                      ELSE CAST(json_extract_string(ts, '$') AS BIGINT) END AS ts_ms
          FROM read_json('{good}', format='newline_delimited', columns={{
               type: 'VARCHAR', forum: 'VARCHAR', thread: 'JSON', ts: 'JSON'}})
        )
        SELECT ts_ms - ts_ms % 60000 AS ws, forum, thread, type,
               count(*) AS n FROM ev GROUP BY ALL ORDER BY ALL""").fetchall()
    got = con.execute(f"""
        SELECT epoch_ms(window_start) AS ws, forum, thread, type, sum(count) AS n
        FROM read_parquet('{out}/thread_counts/window=1m/**/*.parquet', hive_partitioning=true)
        GROUP BY ALL ORDER BY ALL""").fetchall()
    assert got == truth
    assert len(truth) > 100


def test_bad_input_file_is_dead_lettered_not_fatal(tmp_path):
    src = tmp_path / "bad.ndjson"
    good = {"type": "vote", "forum": "f", "thread": 1, "ts": 1_767_225_600_000}
    src.write_bytes(b"\n".join([
        json.dumps(good).encode(), b"{not json", b"\xff\xfe", b"[1,2]",
        json.dumps({**good, "forum": ""}).encode(),
        json.dumps({**good, "ts": "yesterday"}).encode(),
    ]) + b"\n")
    out = tmp_path / "out"
    assert _run("--source", str(src), "--output", str(out)) == 0
    dead = ds.dataset(out / "dead_letters", partitioning="hive").to_table().to_pylist()
    assert sorted((d["offset"], d["reason"]) for d in dead) == [
        (1, "bad_json"), (2, "bad_utf8"), (3, "not_object"), (4, "bad_value:forum"),
        (5, "bad_value:ts")]
    assert dead[[d["offset"] for d in dead].index(2)]["raw"] == b"\xff\xfe"
    assert sum(_read(out, "thread_counts")["count"].to_pylist()) == 1


def test_missing_source_file_is_a_clear_error(tmp_path, capsys):
    assert _run("--source", str(tmp_path / "nope.ndjson"), "--output", str(tmp_path)) == 2
    assert "neither 'generator'" in capsys.readouterr().err


def test_console_script_prints_output_and_top_threads(tmp_path):
    exe = [sys.executable, "-m", "forumstats.cli", "run", "--events", "5000",
           "--output", str(tmp_path / "o")]
    proc = subprocess.run(exe, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "top 5 threads" in proc.stdout and str(tmp_path / "o") in proc.stdout


@pytest.mark.timeout(120)
def test_a_dense_file_with_few_batches_in_flight_runs_to_the_end_exactly(tmp_path):
    """1,000 events per second of event time, and max.spout.pending 50 (10 batches): 2,000-
    record batches in flight would span 20 s, less than the 90 s a window needs to close, so
    the counting tasks would hold all of them and the run would never end. The spout cuts
    larger batches instead (forumstats.inflight)."""
    src = tmp_path / "events.ndjson"
    src.write_bytes(b"\n".join(generate(120_000, seed=5, events_per_second=1000.0,
                                        malformed_fraction=0.0)) + b"\n")
    config = json.loads((Path(__file__).parents[2] / "config.json").read_text())
    config["envs"]["local"]["options"]["topology.max.spout.pending"] = 50
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert _run("--source", str(src), "--output", str(out),
                "--config", str(tmp_path / "config.json")) == 0
    con = duckdb.connect()
    got = con.execute(f"""
        SELECT epoch_ms(window_start) AS ws, forum, thread, type, sum(count) AS n
        FROM read_parquet('{out}/thread_counts/window=1m/**/*.parquet', hive_partitioning=true)
        GROUP BY ALL ORDER BY ALL""").fetchall()
    assert got == truth(con, src)
    assert not (out / "dead_letters").exists() or not ds.dataset(
        out / "dead_letters", partitioning="hive").count_rows()
