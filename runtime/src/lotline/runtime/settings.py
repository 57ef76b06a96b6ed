"""The one settings object: every knob comes from the environment, defaulting to the local stack."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers"
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="PLAINTEXT, SASL_PLAINTEXT (implied by KAFKA_USERNAME alone) or SASL_SSL",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", description="SCRAM-SHA-512 or SCRAM-SHA-256"
    )
    kafka_username: str | None = Field(
        None, description="The SASL principal of this process; unset: no SASL"
    )
    kafka_password: SecretStr | None = Field(None, description="Its SASL/SCRAM password")
    kafka_partitions: int = Field(6, ge=1, description="Partitions per topic the stack creates")

    mongodb_url: SecretStr = Field(
        SecretStr("mongodb://127.0.0.1:27017/"), description="MongoDB (or FerretDB) URL"
    )

    # Consumer tuning: one bulk write and one offset commit per batch. A batch only fills up
    # under a backlog; the bigger it may grow, the more lines share one level write and the
    # fewer commits there are (sales, 200,000 lines: 532 lines/s at 500, 1,045 at 5,000).
    consumer_max_records: int = Field(
        5000,
        ge=1,
        description="Events per batch at most: one bulk write and one offset commit each",
    )
    consumer_batch_timeout_ms: int = Field(
        50, ge=1, description="How long a batch waits to fill up"
    )
    # A fetch waits for 16 KB (about 40 sale lines) or 50 ms, whichever comes first. With the
    # client's defaults (1 byte, 500 ms) a consumer of many topics sometimes waited out the
    # 500 ms with records there (p99 981 ms at a steady 1,000 lines/s), and each fetch
    # brought a handful of records: a batch, a log insert and an offset commit each. With
    # these: p99 395-438 ms, batches of 40.
    consumer_fetch_max_wait_ms: int = Field(
        50,
        ge=1,
        description="Longest the broker holds a fetch that finds nothing new",
    )
    consumer_fetch_min_bytes: int = Field(
        16 * 1024,
        ge=1,
        description="Bytes a fetch waits for (up to CONSUMER_FETCH_MAX_WAIT_MS) before the "
        "broker answers",
    )
    consumer_retry_attempts: int = Field(
        5, ge=1, description="Tries before an event goes to the DLQ"
    )
    consumer_max_poll_interval_ms: int = Field(
        30 * 60 * 1000, ge=10_000, description="Longest a batch may take before a rebalance"
    )
    consumer_defer_max_s: float = Field(
        15.0, gt=0, description="How long an event may wait (e.g. for its product) before the DLQ"
    )
    wal_max_pending_docs: int = Field(
        50_000,
        ge=100,
        description="Most changed documents an instance holds before they are written "
        "(a batch waits for the writer beyond it)",
    )
    # The writer's cadence. A round starts once the oldest pending change is
    # `wal_flush_after_s` old, or at once when `wal_round_docs` different documents are
    # pending. On FerretDB a level's replace costs about sixteen inserts: a level sold every
    # few seconds is written once per window instead of once per batch, which leaves the
    # database to the batches (sales, 200,000 lines: stock done at 39.5 s instead of 55 s).
    # Longer windows cost memory (bounded by `wal_max_pending_docs`) and a longer restore
    # for the partition's next owner (it reads the pending entries back).
    wal_round_docs: int = Field(
        20_000,
        ge=1,
        description="Different documents pending that start a round at once (and that a "
        "round takes at most)",
    )
    wal_flush_after_s: float = Field(
        30.0,
        gt=0,
        description="How long a change waits before it is written, so that later changes to "
        "the same document coalesce with it",
    )
    wal_give_way_s: float = Field(
        1.0,
        ge=0,
        description="How long a round may wait in all for batches in progress, at least "
        "(beyond it, as long as the round has worked)",
    )
    wal_known_docs: int = Field(
        100_000,
        ge=0,
        description="Most documents written out that the owner keeps in memory (as BSON, "
        "a few hundred bytes each) so its next batches need not read them back",
    )
    consumer_stall_after_s: float = Field(
        60.0,
        gt=0,
        description="How long a consumer may fail or retry without committing before "
        "`/health/ready` says not ready",
    )
    # Re-sent copies: each partition's owner remembers the events applied within this
    # window (and at most this many); older events are looked up by _id (`wal_applied`).
    dedupe_window_hours: float = Field(
        72.0, gt=0, description="How long a partition's owner remembers the events it applied"
    )
    dedupe_recent_max: int = Field(
        100_000,
        ge=1,
        le=300_000,
        description="Most events a partition's owner remembers in memory (older: looked "
        "up); about 100 bytes each, and one page of them stays under 16 MB",
    )
    consumer_retry_backoff_s: float = Field(0.2, gt=0, description="First wait between tries")
    consumer_retry_backoff_max_s: float = Field(
        5.0, gt=0, description="Longest wait between tries (the wait doubles up to it)"
    )

    # Outbox relays (catalog's product-registered, recall's batch-recalled, stock's
    # lot-expiring).
    outbox_relay_interval_s: float = Field(1.0, gt=0, description="How often the relay looks")
    outbox_relay_grace_s: float = Field(
        2.0, ge=0, description="How long a saved event may wait for its writer to publish it"
    )
    outbox_relay_horizon_days: float = Field(
        30.0, gt=0, description="How far back the recall relay looks for unpublished recalls"
    )

    # Where the other services answer, for a service that assembles their parts over HTTP
    # (the recall service's traces).
    catalog_url: str = Field("http://127.0.0.1:8001", description="The catalog service")
    stock_url: str = Field("http://127.0.0.1:8002", description="The stock service")
    serials_url: str = Field("http://127.0.0.1:8003", description="The serial registry")

    # The stock service's expiry warnings (lot-expiring).
    stock_expiry_warning_days: Annotated[tuple[int, ...], NoDecode] = Field(
        (30, 7, 1), description="Days before expiry at which a lot is warned about, e.g. 30,7,1"
    )
    stock_expiry_check_interval_s: float = Field(
        3600.0, gt=0, description="How often the stock service looks for lots to warn about"
    )

    http_host: str = Field("127.0.0.1", description="Address the HTTP side listens on")
    http_port: int | None = Field(None, description="Overrides the service's default HTTP port")
    # The largest recall the contract allows (10,000 serials of 64 characters, each a quote or
    # a backslash) is about 1.4 MB as JSON and 2.0 MB as the console's form, where punctuation
    # is percent-encoded (tests/unit/test_http_body_limit.py).
    http_max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1,
        description="Largest request body accepted; a larger one gets 413 before it is read",
    )
    http_database_wait_s: float = Field(
        2.0,
        gt=0,
        description="How long an HTTP request waits on a database that does not answer "
        "before its 503",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_json: bool = Field(True, description="JSON log lines; false: key=value for a terminal")

    @field_validator("stock_expiry_warning_days", mode="before")
    @classmethod
    def _comma_separated_days(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            days = tuple(int(part) for part in value.split(",") if part.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a comma-separated list of whole days") from None
        return days

    @field_validator("stock_expiry_warning_days")
    @classmethod
    def _sensible_days(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        if not days:
            raise ValueError("name at least one threshold, e.g. 30,7,1")
        if any(d < 0 or d > 3650 for d in days):
            raise ValueError(f"thresholds must be between 0 and 3650 days, got {list(days)}")
        return tuple(sorted(set(days), reverse=True))

    @model_validator(mode="after")
    def _kafka_login(self) -> Settings:
        """A username means SASL unless a protocol is named; SASL needs both halves."""
        sasl = self.kafka_security_protocol.startswith("SASL")
        if self.kafka_username and not sasl:
            if "kafka_security_protocol" in self.model_fields_set:
                raise ValueError(
                    f"KAFKA_USERNAME is set but KAFKA_SECURITY_PROTOCOL="
                    f"{self.kafka_security_protocol} would never send it: use SASL_PLAINTEXT "
                    "or SASL_SSL"
                )
            self.kafka_security_protocol = "SASL_PLAINTEXT"
            sasl = True
        if sasl and not (self.kafka_username and self.kafka_password):
            missing = "KAFKA_USERNAME" if not self.kafka_username else "KAFKA_PASSWORD"
            protocol = self.kafka_security_protocol
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs {missing}")
        return self

    def kafka_client_options(self) -> dict[str, Any]:
        """aiokafka's connection options (security) for any raw producer, consumer or admin."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            assert self.kafka_password is not None  # checked by _kafka_login
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_username
            options["sasl_plain_password"] = self.kafka_password.get_secret_value()
        if self.kafka_security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context()
        return options


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
