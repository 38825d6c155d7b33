"""One real ``callcenter serve`` for the tests of this directory, and its live exposition."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.loopback.service import Service, run_service, service_missing_reason


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real service on loopback (shipped configuration); fixtures place no call."""
    reason = service_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    data_dir = tmp_path_factory.mktemp("callcenter-metrics")
    with run_service(data_dir) as service:
        yield service


@pytest.fixture(scope="session")
def exposition(live_service: Service) -> str:
    """``GET /metrics`` of the live service, as text."""
    status, body = live_service.http("/metrics")
    assert status == 200, body[:300]
    return body.decode()
