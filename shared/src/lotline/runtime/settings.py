"""The one settings object: every knob comes from the environment, defaulting to the local stack."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers"
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="SASL_PLAINTEXT when only KAFKA_USERNAME is set"
    )
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_username: str | None = Field(None, description="The SASL principal of this process")
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

    http_host: str = "127.0.0.1"
    http_port: int | None = Field(None, description="Overrides the service's default HTTP port")
    log_level: str = "INFO"
    log_json: bool = True

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
