"""The CLI's only I/O: the services' HTTP APIs and publishing events to Kafka."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from lotline.devstack import StackError, StackSecrets, StackSettings
from lotline.events import OutgoingMessage
from lotline.events.topics import PUBLISHED_BY
from lotline.runtime import telemetry
from lotline.runtime.settings import Settings

SOURCE = "lotline/cli"


class CliError(Exception):
    """Something the user must hear about in one line; the command exits non-zero."""


class Endpoints(BaseSettings):
    """Where the services answer; LOTLINE_CATALOG_URL etc. in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="LOTLINE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    catalog_url: str = Field("http://127.0.0.1:8001", description="The catalog service")
    stock_url: str = Field("http://127.0.0.1:8002", description="The stock service")
    serials_url: str = Field("http://127.0.0.1:8003", description="The serial registry")
    recall_url: str = Field("http://127.0.0.1:8004", description="The recall service")
    operator_token: SecretStr | None = Field(
        None, description="The operator's token (recalls, products, customer references)"
    )
    operator_token_file: Path | None = Field(None, description="A file holding that token")
    # Where `make run` (lotline-devstack services up) writes the dev operator's token.
    stack_dir: Path | None = None
    cache_dir: Path = Path("~/.cache/lotline")

    def token_file(self) -> Path:
        if self.operator_token_file is not None:
            return self.operator_token_file.expanduser()
        stack = self.stack_dir or self.cache_dir / "stack"
        return stack.expanduser() / "run" / "operator-token"

    def operator_auth(
        self, given: str | None = None, what: str = "changing a recall"
    ) -> dict[str, str]:
        """The operator's Authorization header: --token, else LOTLINE_OPERATOR_TOKEN, else
        the token file (LOTLINE_OPERATOR_TOKEN_FILE, or the one `make run` writes)."""
        token = given or (self.operator_token.get_secret_value() if self.operator_token else "")
        if not token:
            path = self.token_file()
            try:
                token = path.read_text().strip()
            except FileNotFoundError:
                raise CliError(
                    f"--token: {what} needs an operator token: pass --token, set "
                    f"LOTLINE_OPERATOR_TOKEN, or run `make run`, which writes one to {path}"
                ) from None
            except OSError as error:
                raise CliError(f"--token: cannot read {path}: {error.strerror}") from None
            if not token:
                raise CliError(f"--token: the token file {path} is empty")
        return {"Authorization": f"Bearer {token.strip()}"}

    def reader_auth(self) -> dict[str, str]:
        """The token to read with, if there is one: with it, the services show customer
        references to staff and operators; without, the reads are anonymous (no customers)."""
        try:
            return self.operator_auth()
        except CliError:
            return {}


class Api:
    """One service's HTTP API, with its failures turned into one-line CliErrors."""

    def __init__(
        self,
        name: str,
        base_url: str,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = headers or {}  # sent with every request (a call's own win)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{path}"
        try:
            with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
                response = client.request(method, url, **kwargs)
        except httpx.TransportError:
            raise CliError(
                f"cannot reach the {self.name} at {self.base_url}: is `make run` running?"
            ) from None
        if response.status_code >= 400:
            raise CliError(f"the {self.name} said: {error_message(response)}")
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})


def error_message(response: httpx.Response) -> str:
    """The service's own words: `message`, else `detail` (a string or a list of problems)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text: str | None = None
    if isinstance(body, dict):
        if isinstance(body.get("message"), str):
            text = body["message"]
        elif isinstance(body.get("detail"), str):
            text = body["detail"]
        elif isinstance(body.get("detail"), list):
            text = "; ".join(_problem(p) for p in body["detail"])
    if not text:
        text = response.text.strip() or response.reason_phrase
    return f"{' '.join(text.split())} (HTTP {response.status_code})"


def _problem(problem: Any) -> str:
    if not isinstance(problem, dict):
        return str(problem)
    if "field" in problem:
        return f"{problem['field']}: {problem.get('problem', '')}"
    where = ".".join(str(p) for p in problem.get("loc", []))
    return f"{where}: {problem.get('msg', '')}" if where else str(problem.get("msg", problem))


class Services:
    def __init__(self, endpoints: Endpoints | None = None) -> None:
        endpoints = endpoints or Endpoints()
        self.endpoints = endpoints
        self.catalog = Api("catalog service", endpoints.catalog_url)
        self.stock = Api("stock service", endpoints.stock_url)
        # Reads that may carry customer references go with the token, when there is one.
        reader = endpoints.reader_auth()
        self.serials = Api("serial registry", endpoints.serials_url, headers=reader)
        self.recall = Api("recall service", endpoints.recall_url, headers=reader)

    def all_products(self, tracking: str | None = None) -> list[dict[str, Any]]:
        products: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = self.catalog.get("/products", tracking=tracking, after=after, limit=500)
            products.extend(page["items"])
            after = page.get("next_after")
            if not after or not page["items"]:
                return products

    def sku_of_gtin(self, gtin: str, sku: str | None = None) -> str:
        """The product a scanned GTIN is; `sku` picks one when several share the GTIN."""
        matches = [str(p["sku"]) for p in self.all_products() if p.get("gtin") == gtin]
        if not matches:
            raise CliError(
                f"no product in the catalog has GTIN {gtin}: add it with `lotline products add`"
            )
        if sku is not None:
            if sku not in matches:
                raise CliError(f"the scanned GTIN {gtin} is not product {sku}")
            return sku
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (" …" if len(matches) > 5 else "")
            raise CliError(
                f"GTIN {gtin} belongs to {len(matches)} products ({shown}): give the SKU too"
            )
        return matches[0]


def publisher_of(topics: set[str]) -> str:
    """The one principal the contract lets write all these topics: `receiving` for receipts,
    `pos` for sales and returns."""
    for principal, events in sorted(PUBLISHED_BY.items()):
        if topics <= {event.topic for event in events}:
            return principal
    raise CliError(f"no single publisher in the contract writes {', '.join(sorted(topics))}")


def kafka_settings(topics: set[str]) -> Settings:
    """The Kafka login to publish these topics with: KAFKA_USERNAME/KAFKA_PASSWORD when set,
    else, against the local stack, its generated login for the fitting principal."""
    try:
        settings = Settings()
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise CliError(f"invalid Kafka setting: {problem}") from None
    if settings.kafka_username:
        return settings
    stack = StackSettings()
    local = {f"127.0.0.1:{stack.kafka_port}", f"localhost:{stack.kafka_port}"}
    if settings.kafka_bootstrap_servers not in local:
        return settings
    try:
        secrets = StackSecrets.read(stack.data_dir)
        if secrets is None:
            return settings
        login = secrets.credentials(publisher_of(topics))
    except StackError as error:
        raise CliError(str(error)) from None
    return Settings(kafka_username=login.username, kafka_password=login.password)


def publish(messages: list[OutgoingMessage], on_sent: Callable[[int], None] | None = None) -> None:
    """Send events as a service would (acks=all, idempotent, up to 16 MB) and wait for them,
    logged in as the principal that may publish them."""
    settings = kafka_settings({message.topic for message in messages})
    # Each event starts a trace when the OTEL_* variables name an exporter (off otherwise).
    telemetry.setup_tracing("cli")
    # aiokafka logs every failed connection attempt; the one-line error below says it all.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        asyncio.run(_publish(settings, messages, on_sent))
    except (KafkaError, OSError, TimeoutError) as exc:
        problem = str(exc) or type(exc).__name__
        raise CliError(
            f"cannot publish to Kafka at {settings.kafka_bootstrap_servers} ({problem}): "
            "is `make run` running?"
        ) from None


async def _publish(
    settings: Settings,
    messages: list[OutgoingMessage],
    on_sent: Callable[[int], None] | None,
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        max_request_size=16 * 1024 * 1024,
        request_timeout_ms=30_000,
        **settings.kafka_client_options(),
    )
    try:
        await asyncio.wait_for(producer.start(), timeout=20)
    except TimeoutError:
        await producer.stop()
        raise TimeoutError("no broker answered within 20 s") from None
    except BaseException:
        await producer.stop()
        raise
    try:
        # Enqueue everything, then wait for every acknowledgement: the producer batches per
        # partition and, being idempotent, keeps each SKU's events in order.
        futures: list[asyncio.Future[Any]] = []
        for message in messages:
            future = await producer.send(
                message.topic,
                message.value,
                key=message.key,
                headers=telemetry.sending_headers(message),
            )
            if on_sent:
                future.add_done_callback(_report(on_sent, len(message.value)))
            futures.append(future)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _report(on_sent: Callable[[int], None], size: int) -> Callable[[asyncio.Future[Any]], None]:
    def done(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            on_sent(size)

    return done
