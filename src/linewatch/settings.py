"""Runtime settings: LINEWATCH_* environment variables with typed defaults.

The plant itself (machines, sensors, manufacturers) lives in configs/ and is loaded by
``linewatch.config``; these settings say where things run.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINEWATCH_", extra="ignore")

    kafka_bootstrap: str | None = Field(None, description="host:port[,host:port]; unset: the demo runs in-process")
    consumer_group: str = "linewatch"
    raw_topic_prefix: str = "linewatch.raw."  # one topic per machine: <prefix><machine>
    qc_topic: str = "linewatch.qc"
    dlq_topic: str = "linewatch.dlq"
    alerts_topic: str = "linewatch.alerts"
    topic_partitions: int = Field(8, ge=1, description="partitions for topics linewatch creates")
    max_poll_records: int = Field(5000, ge=1)  # larger polls wait less on fetches (docs/benchmarks.md)
    session_timeout_ms: int = Field(10_000, ge=6_000, le=300_000,
                                    description="a worker that stops answering (crash, kill -9, lost network) "
                                                "loses its partitions to the others after this long")
    max_payload_bytes: int = Field(1_048_576, ge=1024, description="larger payloads are rejected as oversized")
    metadata_max_age_ms: int = Field(10_000, ge=500, description="how soon new linewatch.raw.* topics are noticed")
    database_url: str = "sqlite:///var/linewatch.db"
    checkpoint_seconds: float = Field(5.0, gt=0, description="detector state is checkpointed, and offsets "
                                                              "committed, this often")
    stop_timeout_seconds: float = Field(30.0, ge=1, le=3600,
                                        description="a stop request (SIGTERM, Ctrl-C) is honoured within this "
                                                    "long in every state; past it the worker exits at once with "
                                                    "status 3, committing nothing more")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    config_dir: Path | None = None
    api_token: str | None = Field(None, description="bearer token for changes through the API; unset: changes refused")
    read_token: str | None = Field(None, description="read-only token for wall screens and dashboards when reads "
                                                     "are protected (/board?access_token=...); never the write token")
    protect_reads: bool = Field(False, description="every read but /healthz and /readyz needs a token")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed to call the API")
    max_body_bytes: int = Field(65536, ge=1024, description="larger request bodies are refused with 413")
    http_request_timeout_seconds: float = Field(10.0, gt=0, le=600,
                                                description="a connection must send a complete request within "
                                                            "this long of opening or of its last answer, or it is "
                                                            "closed (slow or silent clients)")
    http_idle_timeout_seconds: float = Field(5.0, gt=0, le=600,
                                             description="an idle keep-alive connection is closed after this long")
    http_max_connections: int = Field(1000, ge=10, description="open connections (idle ones included) and "
                                                               "requests in progress; past it new requests get 503")
    max_stream_clients: int = Field(100, ge=1, description="live alert streams (wall boards) open at once; past it "
                                                           "new ones get 503 and retry later")
    webhook_url: str | None = Field(None, description="POST alert events here in Alertmanager's webhook format")
    external_url: str = Field("", description="how people reach this service, for links in webhook alerts")
    dlq_file: Path = Path("var/dlq.jsonl")  # in-process demo only: where rejections go without Kafka

    @model_validator(mode="after")
    def _connections(self) -> "Settings":
        if self.max_stream_clients >= self.http_max_connections:
            raise ValueError(f"LINEWATCH_MAX_STREAM_CLIENTS ({self.max_stream_clients}) must be below "
                             f"LINEWATCH_HTTP_MAX_CONNECTIONS ({self.http_max_connections}): live streams hold "
                             "connections, and the API must still answer other requests")
        return self

    @model_validator(mode="after")
    def _tokens(self) -> "Settings":
        from linewatch.api.security import check_tokens

        check_tokens(self.api_token, self.read_token, self.protect_reads)
        return self
