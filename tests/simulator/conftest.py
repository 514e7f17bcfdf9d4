"""Fixtures shared by the simulator tests: a subscriber recording what the simulator publishes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Mosquitto

from .test_publish import Subscriber


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto.url)
    try:
        yield sub
    finally:
        sub.close()
