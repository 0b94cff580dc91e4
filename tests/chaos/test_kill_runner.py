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
    kill_at_progress,
    produce,
    run_command,
    verify_exact,
    write_config,
)

pytestmark = pytest.mark.integration

KILLS = 5
EVENTS = 16_000  # a backfill of several seconds: room for five kills between commits


@pytest.mark.parametrize("mode", ["in-process", "multilang"])
def test_kill9_of_the_runner_five_times_then_exact(mode, tansu, seaweed, s3_bucket, tmp_path):
    topic = f"chaos-kill-{uuid.uuid4().hex[:8]}"
    tansu.create_topic(topic, partitions=4)
    produced = produce(tansu.bootstrap, topic, generated(EVENTS, seed=61))
    config = write_config(tmp_path)
    group = f"chaos-kill-{mode}"
    cmd = run_command(tansu.bootstrap, topic, group, f"s3://{s3_bucket}/stats",
                      seaweed.endpoint_url, config, multilang=mode == "multilang")
    rng = random.Random(f"kill-{mode}")
    # Kill moments: when the committed offsets pass random points of the backfill, so that
    # every kill lands mid-run (between commits, with batches and windows in flight).
    # One target in each fifth of 5 %..90 % of the events, so no two fall on one commit.
    slot = produced.count * 85 // 100 // KILLS
    targets = [produced.count // 20 + i * slot + rng.randrange(slot // 4, slot * 3 // 4)
               for i in range(KILLS)]
    kills = kill_at_progress(cmd, tmp_path / "runner.log", targets,
                             progress=lambda: committed_total(tansu.bootstrap, topic, group))
    verdict = verify_exact(seaweed, s3_bucket, "stats", produced, tmp_path)
    print(f"\nkill -9 ({mode}) at (s after start, offsets committed): {kills}; "
          f"{verdict.line()}")
    progress = [c for _at, c in kills]
    # most kills must land mid-backfill (after some commits, before the end), not at startup
    assert sum(0 < c < produced.count for c in progress) >= KILLS - 1, progress
    assert committed(tansu.bootstrap, topic, group) == end_offsets(produced)
