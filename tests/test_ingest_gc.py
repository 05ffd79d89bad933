"""The ingest GC thresholds (daemon/ingest_workers.py ``ingest_gc``) come back after the
last daemon serving in the process stops, whatever order the daemons stop in."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tuiaudit.daemon.ingest_workers import GC_THRESHOLD, ingest_gc


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_thresholds_come_back_after_the_last_of_two_daemons(
    thresholds: tuple[int, int, int],
) -> None:
    first, second = ingest_gc(), ingest_gc()
    first.__enter__()
    assert gc.get_threshold() == GC_THRESHOLD
    second.__enter__()
    first.__exit__(None, None, None)  # the first one stops first: the second still serves
    assert gc.get_threshold() == GC_THRESHOLD
    second.__exit__(None, None, None)
    assert gc.get_threshold() == thresholds


def test_thresholds_come_back_when_serving_fails(thresholds: tuple[int, int, int]) -> None:
    with pytest.raises(RuntimeError), ingest_gc():
        raise RuntimeError("the server did not start")
    assert gc.get_threshold() == thresholds
