"""Shared fixtures: real SeaweedFS (S3) and Tansu (Kafka) processes, started lazily."""

from __future__ import annotations

import uuid

import pytest

from forumstats import devservices


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A running SeaweedS3 for the session; its AWS_* variables are in os.environ meanwhile."""
    with devservices.SeaweedS3(tmp_path_factory.mktemp("seaweed")) as s3:
        with devservices.patched_environ(s3.env()):
            yield s3


@pytest.fixture(scope="session")
def tansu(tmp_path_factory):
    """A running TansuBroker (memory storage) for the session."""
    with devservices.TansuBroker(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture
def s3_bucket(seaweed):
    """The name of a fresh, empty bucket on the session SeaweedFS."""
    return seaweed.create_bucket(f"test-{uuid.uuid4().hex[:20]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    values = getattr(item, "funcargs", {}).values()
    for service in [v for v in values if isinstance(v, devservices.DevService)]:
        tail = service.tail_log(80)
        if tail:
            report.sections.append((f"{service.name} log tail ({service.log_path})", tail))
