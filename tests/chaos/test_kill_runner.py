"""Chaos 1: ``kill -9`` of the local runner (its whole process group) at random moments, five
times during one backfill, each time restarted with the same command; then the output must
equal the batch truth and the group's offsets must be committed to the end."""

import random
import uuid

import pytest
from chaos_helpers import (
    committed,
    committed_total,
    end_offsets,
    generated,
    kill_restart_loop,
    produce,
    run_command,
    verify_exact,
    write_config,
)

pytestmark = pytest.mark.integration

KILLS = 5


@pytest.mark.xfail(strict=False, reason=(
    "open (issue 6): with kills landing mid-backfill (after commits began) the restarted runs "
    "do not yet finish exact within the test's budget; passed when kills landed before the "
    "first commit. Suspected link to the stale-epoch acks after a rebalance (issue 4)"))
@pytest.mark.parametrize("mode", ["in-process", "multilang"])
def test_kill9_of_the_runner_five_times_then_exact(mode, tansu, seaweed, s3_bucket, tmp_path):
    topic = f"chaos-kill-{uuid.uuid4().hex[:8]}"
    tansu.create_topic(topic, partitions=4)
    produced = produce(tansu.bootstrap, topic, generated(4000, seed=61))
    config = write_config(tmp_path)
    group = f"chaos-kill-{mode}"
    cmd = run_command(tansu.bootstrap, topic, group, f"s3://{s3_bucket}/stats",
                      seaweed.endpoint_url, config, multilang=mode == "multilang")
    rng = random.Random(f"kill-{mode}")
    # A run starts counting ~6 s (in-process) / ~10 s (multi-lang) after launch (imports, group
    # join); kill moments span startup, counting and committing.
    low, high = (6.0, 22.0) if mode == "multilang" else (4.0, 14.0)
    kills = kill_restart_loop(cmd, tmp_path / "runner.log", KILLS, rng, low, high,
                              progress=lambda: committed_total(tansu.bootstrap, topic, group))
    verdict = verify_exact(seaweed, s3_bucket, "stats", produced, tmp_path)
    print(f"\nkill -9 ({mode}) at (s after start, offsets committed): {kills}; "
          f"{verdict.line()}")
    progress = [c for _at, c in kills]
    # most kills must land mid-backfill (after some commits, before the end), not at startup
    assert sum(0 < c < produced.count for c in progress) >= 3, progress
    assert committed(tansu.bootstrap, topic, group) == end_offsets(produced)
