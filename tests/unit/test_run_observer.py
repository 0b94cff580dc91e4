"""RunObserver: the progress of ``forumstats run`` read off the tuples the components emit."""

from forumstats.topology_runner import RunObserver


def status(observer, task, state, detail):
    observer("events", task, "status", [task, state, detail], None)


def test_consumer_lag_is_the_sum_over_spout_tasks_once_each_reported():
    observer = RunObserver(spout_tasks=2)
    assert observer.consumer_lag is None
    status(observer, 1, "progress", {"lag": 120})
    assert observer.consumer_lag == 120
    status(observer, 2, "progress", {"lag": 30})
    assert observer.consumer_lag == 150
    status(observer, 1, "progress", {"lag": 0})
    assert observer.consumer_lag == 30


def test_a_source_without_lag_shows_none_and_finished_ends_the_run():
    observer = RunObserver(spout_tasks=2)
    status(observer, 1, "progress", {"lag": None})
    status(observer, 2, "progress", {"lag": 5})
    assert observer.consumer_lag is None
    status(observer, 1, "finished", {})
    assert not observer.ended
    status(observer, 2, "finished", {})
    assert observer.ended


def test_accepted_counts_first_attempts_only():
    observer = RunObserver(spout_tasks=1)
    rows = [["f", "t", "vote", 0, 3], ["f", "u", "view", 0, 2]]
    observer("events", 1, "batches", [0, "p-0", 0, 9, 1, rows, [], [0, 0, 10]], "p/0/0-9/1|0|0")
    observer("events", 1, "batches", [0, "p-0", 0, 9, 1, rows, [], [0, 0, 10]], "p/0/0-9/1|1|0")
    observer("events", 1, "batches", [0, "p-0", -1, -1, None, [], [], None], None)  # announcement
    assert observer.accepted == 5
    assert observer.batch_tuples == 3
