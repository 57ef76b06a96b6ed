"""The one settings object: every knob comes from the environment, defaulting to the local stack."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers"
    )
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_partitions: int = Field(6, ge=1, description="Partitions per topic the stack creates")

    mongodb_url: SecretStr = Field(
        SecretStr("mongodb://127.0.0.1:27017/"), description="MongoDB (or FerretDB) URL"
    )

    # Consumer tuning: one bulk write and one offset commit per batch.
    consumer_max_records: int = Field(500, ge=1)
    consumer_batch_timeout_ms: int = Field(50, ge=1)
    consumer_retry_attempts: int = Field(
        5, ge=1, description="Tries before an event goes to the DLQ"
    )
    consumer_max_poll_interval_ms: int = Field(
        30 * 60 * 1000, ge=10_000, description="Longest a batch may take before a rebalance"
    )
    consumer_defer_max_s: float = Field(
        15.0, gt=0, description="How long an event may wait (e.g. for its product) before the DLQ"
    )
    # Re-sent copies: documents remember the events they applied within this window
    # (and at most this many each); older events are looked up in `seen_events`.
    dedupe_window_hours: float = Field(72.0, gt=0)
    dedupe_recent_max: int = Field(5000, ge=1)
    consumer_retry_backoff_s: float = Field(0.2, gt=0)
    consumer_retry_backoff_max_s: float = Field(5.0, gt=0)

    # Outbox relays (catalog's product-registered, recall's batch-recalled).
    outbox_relay_interval_s: float = Field(1.0, gt=0, description="How often the relay looks")
    outbox_relay_grace_s: float = Field(
        2.0, ge=0, description="How long a change may wait for its own request to publish it"
    )
    outbox_relay_horizon_days: float = Field(
        30.0, gt=0, description="How far back the recall relay looks for unpublished recalls"
    )

    # Where the other services answer, for a service that assembles their parts over HTTP
    # (the recall service's traces).
    catalog_url: str = Field("http://127.0.0.1:8001", description="The catalog service")
    stock_url: str = Field("http://127.0.0.1:8002", description="The stock service")
    serials_url: str = Field("http://127.0.0.1:8003", description="The serial registry")

    http_host: str = "127.0.0.1"
    http_port: int | None = Field(None, description="Overrides the service's default HTTP port")
    log_level: str = "INFO"
    log_json: bool = True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
