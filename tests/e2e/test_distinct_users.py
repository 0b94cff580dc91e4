"""Distinct users flow from the events through the topology into thread_users/forum_users,
with sketches that merge to within the stated error of the exact answer."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))

import merge_sketches  # noqa: E402

from forumstats.distinct import relative_error  # noqa: E402


def test_merged_sketch_ranges_are_within_the_stated_error_of_the_truth():
    bound = relative_error(12, 3)  # 3 standard deviations: what DataSketches states
    for forum, lo, hi, estimate, _lower, _upper, truth in merge_sketches.ranges():
        assert truth > 100, (forum, lo, hi)
        assert abs(estimate - truth) <= bound * truth, (forum, estimate, truth, bound)
