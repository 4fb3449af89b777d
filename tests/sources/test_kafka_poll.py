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


class Heartbeat:
    """kafka-python's heartbeat clock, as far as membership_in_doubt reads it."""

    def __init__(self) -> None:
        self.expired, self.last_receive = False, 0.0

    def session_timeout_expired(self) -> bool:
        return self.expired


class Coordinator:
    def __init__(self) -> None:
        from types import SimpleNamespace

        self.heartbeat, self.group = Heartbeat(), SimpleNamespace(generation_id=3, member_id="worker-a")

    def group_metadata(self):
        return self.group


class Member:
    """A consumer in a group, holding one partition."""

    def __init__(self) -> None:
        self._coordinator = Coordinator()

    def assignment(self) -> set:
        return {"linewatch.raw.extruder-1/0"}


def _member() -> tuple[KafkaSource, Coordinator]:
    from types import SimpleNamespace

    source = KafkaSource.__new__(KafkaSource)
    source.consumer, source._doubt = Member(), None
    source.settings = SimpleNamespace(session_timeout_ms=6000)
    return source, source.consumer._coordinator


def test_membership_stays_in_doubt_after_the_coordinator_is_found_again_until_the_group_confirms_it():
    source, coordinator = _member()
    assert source.membership_in_doubt() is None
    coordinator.heartbeat.expired = True  # back from a pause past the session timeout
    assert "session timeout (6 s)" in source.membership_in_doubt()
    coordinator.heartbeat.expired = False  # finding the coordinator again resets the heartbeat's clock...
    assert source.membership_in_doubt() is not None, "a reset clock was taken for a confirmed membership"
    coordinator.group.generation_id, coordinator.group.member_id = -1, ""  # ...the broker forgot this member
    assert source.membership_in_doubt() is not None
    coordinator.group.generation_id, coordinator.group.member_id = 4, "worker-a-2"  # rejoined
    assert source.membership_in_doubt() is None


def test_a_heartbeat_answered_after_the_doubt_began_confirms_the_membership():
    import time

    source, coordinator = _member()
    coordinator.heartbeat.expired = True
    assert source.membership_in_doubt() is not None
    coordinator.heartbeat.expired, coordinator.heartbeat.last_receive = False, time.monotonic() + 1
    assert source.membership_in_doubt() is None
