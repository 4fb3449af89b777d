"""KafkaSource.next_batch when the broker has just gone (a unit test of that one function: the real
broker outages are in tests/integration)."""

import math

import pytest
from kafka.errors import KafkaConnectionError, UnsupportedVersionError

from linewatch.sources.kafka import KafkaSource


class Consumer:
    def __init__(self, error: Exception):
        self.error = error

    def poll(self, timeout_ms: int):
        raise self.error


def _source(error: Exception) -> KafkaSource:
    source = KafkaSource.__new__(KafkaSource)
    source.consumer, source.poll_timeout_ms, source._unreachable_logged = Consumer(error), 10, -math.inf
    source._next = {}
    return source


def test_a_connection_error_from_poll_is_an_empty_batch_and_is_logged_once(caplog):
    source = _source(KafkaConnectionError("111 ECONNREFUSED"))
    with caplog.at_level("WARNING", logger="linewatch.sources.kafka"):
        assert source.next_batch() == [] and source.next_batch() == []
    assert caplog.text.count("cannot poll the broker") == 1


def test_an_error_that_retrying_cannot_fix_still_stops_the_worker():
    with pytest.raises(UnsupportedVersionError):
        _source(UnsupportedVersionError("the broker is too old")).next_batch()
