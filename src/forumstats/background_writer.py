"""Runs slow store writes off a component's protocol loop.

Storm kills a multi-lang subprocess that stays silent past its heartbeat timeout, so a bolt
must never block on S3. Jobs run on one thread in submission order; a job submitted for a key
already waiting replaces the waiting one (the newer content includes the older), and the
callers' tokens of both are reported done together. Store failures (``transient``, by default
:class:`~forumstats.errors.StoreError`) are retried with capped exponential backoff forever:
while the store is down nothing is acked, so Storm's max-spout-pending holds the spout back.
Any other exception (bad input, a key the layout rejects, a bug) cannot be fixed by retrying:
the job is given up at once and its tokens are reported with ``failed()``, so one poisoned job
never wedges the writes queued behind it. The owner collects finished tokens with ``done()``
and ``failed()`` from its own thread (acks must come from the protocol thread).

A job may return follow-up jobs as ``[(key, job), ...]``: its tokens then move to them and are
done only when every follow-up is. Follow-ups queue behind what is waiting, so several jobs
that need the same follow-up (say, one rollup over many restated windows) share one run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from .errors import StoreError

log = logging.getLogger(__name__)


class BackgroundWriter:
    def __init__(self, write: Callable[[Any], None], *, backoff_s: float = 0.5,
                 backoff_cap_s: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                 transient: tuple[type[BaseException], ...] = (StoreError,)) -> None:
        self._write = write
        self._transient = transient
        self._backoff = (backoff_s, backoff_cap_s)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._waiting: dict[Hashable, tuple[Any, list]] = {}
        self._order: queue.Queue = queue.Queue()
        self._done: list = []
        self._failed: list[tuple[Any, Exception]] = []
        self.failures = 0
        self._running = False
        self._thread = threading.Thread(target=self._loop, name="forumstats-writer", daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, job: Any, token: Any) -> None:
        self._submit(key, job, [_Token(token)])

    def _submit(self, key: Hashable, job: Any, tokens: list[_Token]) -> None:
        with self._lock:
            if key in self._waiting:
                _old, waiting = self._waiting[key]
                self._waiting[key] = (job, waiting + tokens)
                return
            self._waiting[key] = (job, tokens)
        self._order.put(key)

    def done(self) -> list:
        """Tokens whose jobs are durably written, oldest first."""
        with self._lock:
            finished, self._done = self._done, []
        return finished

    def failed(self) -> list[tuple[Any, Exception]]:
        """``(token, exception)`` of jobs given up because retrying cannot help, oldest first."""
        with self._lock:
            failed, self._failed = self._failed, []
        return failed

    def pending(self) -> int:
        with self._lock:
            return len(self._waiting)

    def idle(self) -> bool:
        """Nothing waiting and nothing being written."""
        with self._lock:
            return not self._waiting and not self._running

    def _loop(self) -> None:
        while True:
            key = self._order.get()
            with self._lock:
                job, tokens = self._waiting.pop(key)
                self._running = True
            error, follow_ups = self._run(job)
            if error is None and follow_ups:
                for token in tokens:
                    token.waiting_on += len(follow_ups)
                for follow_key, follow_job in follow_ups:
                    self._submit(follow_key, follow_job, tokens)
            with self._lock:
                self._running = False
                for token in tokens:
                    if token.failed:
                        continue  # reported once, when its first job was given up
                    if error is None:
                        token.waiting_on -= 1
                        if token.waiting_on == 0:
                            self._done.append(token.value)
                    else:
                        token.failed = True
                        self._failed.append((token.value, error))

    def _run(self, job: Any) -> tuple[Exception | None, list]:
        attempt = 0
        while True:
            try:
                follow_ups = self._write(job) or []
                if attempt:
                    log.warning("store write succeeded after %d failed attempts", attempt)
                return None, follow_ups
            except Exception as exc:  # noqa: BLE001 - keep retrying; the tuples stay un-acked
                if not isinstance(exc, self._transient):
                    return exc, []  # retrying cannot fix it: the owner fails the tuples
                attempt += 1
                self.failures += 1
                delay = min(self._backoff[1], self._backoff[0] * 2 ** (attempt - 1))
                log.warning("store write failed (attempt %d, retrying in %.1f s): %s",
                            attempt, delay, exc)
                self._sleep(delay)


class _Token:
    """A caller's token and the number of jobs (its own, then follow-ups) still to finish."""

    __slots__ = ("value", "waiting_on", "failed")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.waiting_on = 1
        self.failed = False
