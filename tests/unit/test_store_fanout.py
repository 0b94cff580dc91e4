"""put_all / get_all: concurrent puts and gets of independent objects, all or an error."""

from __future__ import annotations

import threading

import pytest

from forumstats.errors import StoreError
from forumstats.sink import get_all, put_all
from forumstats.stores import LocalStore


class Flaky:
    """A LocalStore whose puts of ``bad`` keys fail, recording the puts that finished."""

    def __init__(self, inner: LocalStore, bad: set[str]) -> None:
        self.inner, self.bad = inner, bad
        self.finished: list[str] = []
        self.lock = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str) -> str:
        if key in self.bad:
            raise StoreError(f"503 on {key}")
        etag = self.inner.put(key, data, content_type)
        with self.lock:
            self.finished.append(key)
        return etag

    def get(self, key: str) -> bytes:
        return self.inner.get(key)


def test_every_object_is_stored_and_read_back_in_order(tmp_path):
    store = LocalStore(tmp_path)
    objects = {f"d{i}/obj-{i}.parquet": f"payload {i}".encode() for i in range(12)}
    put_all(store, objects)
    assert get_all(store, list(objects)) == list(objects.values())
    assert get_all(store, list(reversed(objects))) == list(reversed(objects.values()))


def test_a_failed_put_raises_after_the_others_finished(tmp_path):
    store = Flaky(LocalStore(tmp_path), bad={"b/2"})
    with pytest.raises(StoreError, match="503 on b/2"):
        put_all(store, {"a/1": b"1", "b/2": b"2", "c/3": b"3"})
    assert sorted(store.finished) == ["a/1", "c/3"]  # none still running when it raised
