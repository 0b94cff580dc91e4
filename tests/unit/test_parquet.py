import io

import pyarrow.parquet as pq

from forumstats.deadletters import DeadLetter
from forumstats.engine import WindowResult
from forumstats.parquet import dead_letters_table, encode_table, encode_window, read_metadata
from forumstats.schemas import schema

T0 = 1_767_225_600_000


def _result():
    counts = {("b", "2", "vote"): 3, ("a", "9", "comment"): 1, ("a", "10", "vote"): 2,
              ("a", "9", "vote"): 4}
    return WindowResult(60_000, T0, 2, True, counts)


def test_window_files_have_schema_sorted_rows_and_metadata():
    files = encode_window(_result(), {"kafka:events:0": [[0, 99]]})
    threads = pq.read_table(io.BytesIO(files["thread_counts"]))
    assert threads.schema.remove_metadata() == schema("thread_counts")
    rows = threads.to_pylist()
    assert [(r["forum"], r["thread"], r["type"]) for r in rows] == sorted(
        (r["forum"], r["thread"], r["type"]) for r in rows)
    assert sum(r["count"] for r in rows) == 10
    assert rows[0]["window_start"].isoformat() == "2026-01-01T00:00:00+00:00"
    assert rows[0]["window_end"].isoformat() == "2026-01-01T00:01:00+00:00"
    forums = pq.read_table(io.BytesIO(files["forum_counts"])).to_pylist()
    assert {(r["forum"], r["type"]): r["count"] for r in forums} == {
        ("a", "comment"): 1, ("a", "vote"): 6, ("b", "vote"): 3}
    meta = read_metadata(files["thread_counts"])
    assert meta["revision"] == 2 and meta["final"] is True and meta["window"] == "1m"
    assert meta["offsets"] == {"kafka:events:0": [[0, 99]]}
    md = pq.ParquetFile(io.BytesIO(files["thread_counts"])).metadata
    assert md.row_group(0).column(0).compression == "ZSTD"
    assert md.row_group(0).column(2).statistics.has_min_max


def test_encoding_is_deterministic():
    assert encode_window(_result()) == encode_window(_result())


def test_dead_letters_keep_raw_bytes_losslessly():
    raw = bytes(range(256))
    table = dead_letters_table([DeadLetter("bad_utf8", "x", raw, "kafka", "t", 3, 42, T0)])
    back = pq.read_table(io.BytesIO(encode_table(table))).to_pylist()[0]
    assert back["raw"] == raw and back["partition"] == 3 and back["offset"] == 42
    assert back["reason"] == "bad_utf8" and back["topic"] == "t"
