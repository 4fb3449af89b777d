"""Shared fixtures: the plant's default configuration, a real Kafka broker, and the processes a test starts."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from linewatch.config import PlantConfig, load_config
from linewatch.settings import Settings

from .processes import ChildProcesses, end_leftovers, leftovers, mark_session

SESSION_MARKER = mark_session()


@pytest.fixture
def processes():
    """Start a test's processes through this; whatever the outcome, none outlives the test."""
    children = ChildProcesses()
    try:
        yield children
    finally:
        children.close()


def pytest_sessionfinish(session, exitstatus):
    """No process started during the session may outlive it: end any found, and fail the session."""
    found: dict[int, str] = {}
    for _ in range(5):  # a moment later too: a parent that just exited may have started a child
        more = leftovers(SESSION_MARKER)
        if more:
            end_leftovers(more)
            found.update(more)
        time.sleep(0.3)
        if not more and not leftovers(SESSION_MARKER):
            break
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"{len(found)} process(es) started by the tests were still running at the end (now ended):"]
        lines += [f"  pid {pid}: {cmd}" for pid, cmd in sorted(found.items())]
        if reporter:
            reporter.write_line("\n".join(lines), red=True)
        pytest.exit("processes outlived the tests that started them", returncode=pytest.ExitCode.TESTS_FAILED)


@pytest.fixture(scope="session")
def config() -> PlantConfig:
    return load_config()


def _broker_answers(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The broker scripts/test started (or LINEWATCH_KAFKA_BOOTSTRAP named).

    Without one the test is skipped, unless LINEWATCH_REQUIRE_KAFKA=1 (set by scripts/test): then it
    fails, so a broken broker can never turn the integration tests into silent skips.
    """
    bootstrap = os.environ.get("LINEWATCH_KAFKA_BOOTSTRAP")
    required = os.environ.get("LINEWATCH_REQUIRE_KAFKA") == "1"
    if bootstrap and _broker_answers(bootstrap):
        return bootstrap
    reason = (f"no Kafka broker answers at {bootstrap}" if bootstrap else "LINEWATCH_KAFKA_BOOTSTRAP is not set") + \
        " (start one with scripts/kafka-local start, or run scripts/test)"
    if required:
        pytest.fail(reason + "; LINEWATCH_REQUIRE_KAFKA=1 makes this a failure")
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """Each store test runs on the embedded SQLite and on a real PostgreSQL (scripts/test starts one).

    Without PostgreSQL the postgresql case is skipped, unless LINEWATCH_REQUIRE_POSTGRES=1 (set by
    scripts/test): then it fails.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alerts.db'}"
    url = os.environ.get("LINEWATCH_TEST_DATABASE_URL")
    reason = "LINEWATCH_TEST_DATABASE_URL is not set (scripts/postgres-local start prints one, or run scripts/test)"
    if url:
        import sqlalchemy as sa

        schema = f"t{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        except Exception as exc:  # noqa: BLE001 - any failure means no usable server
            reason = f"PostgreSQL at {url} does not answer ({type(exc).__name__})"
        else:
            request.addfinalizer(lambda: _drop_schema(engine, schema))
            sep = "&" if "?" in url else "?"
            return f"{url}{sep}options=-csearch_path%3D{schema}"
    if os.environ.get("LINEWATCH_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason + "; LINEWATCH_REQUIRE_POSTGRES=1 makes this a failure")
    pytest.skip(reason)


def _drop_schema(engine, schema: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path) -> Settings:
    """Settings with topics and a consumer group of this test's own, on the shared broker."""
    tag = uuid.uuid4().hex[:8]
    return Settings(kafka_bootstrap=kafka_bootstrap, consumer_group=f"linewatch-test-{tag}",
                    raw_topic_prefix=f"t{tag}.raw.", qc_topic=f"t{tag}.qc", dlq_topic=f"t{tag}.dlq",
                    alerts_topic=f"t{tag}.alerts", topic_partitions=4, metadata_max_age_ms=1000,
                    database_url=f"sqlite:///{tmp_path / 'alerts.db'}", http_port=0)
