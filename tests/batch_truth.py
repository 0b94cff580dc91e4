"""The batch truth every end-to-end check compares with: per-window counts of an NDJSON file of
events by DuckDB alone (shared by the Kafka acceptance tests, the chaos suite and bench/soak.py;
tests/ is on sys.path under pytest, and soak.py puts it there)."""

from __future__ import annotations

from pathlib import Path


def truth(con, ndjson: Path) -> list[tuple]:
    """Per-window counts of the given events, by DuckDB alone."""
    return con.execute(f"""
        WITH ev AS (
          SELECT type, forum, json_extract_string(thread, '$') AS thread,
                 CASE WHEN json_type(ts) = 'VARCHAR'
                      THEN epoch_ms(CAST(json_extract_string(ts, '$') AS TIMESTAMPTZ))
                      ELSE CAST(json_extract_string(ts, '$') AS BIGINT) END AS ts_ms
          FROM read_json('{ndjson}', format='newline_delimited', maximum_object_size=16777216,
                         columns={{type: 'VARCHAR', forum: 'VARCHAR', thread: 'JSON',
                                   ts: 'JSON'}}))
        SELECT ts_ms - ts_ms % 60000 AS ws, forum, thread, type, count(*) AS n FROM ev
        GROUP BY ALL ORDER BY ALL""").fetchall()
