"""Who may talk to the local Kafka: one SCRAM principal per service and outside system, their
generated passwords, and the ACLs each one gets, all derived from the event contract."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest
from pydantic import SecretStr

from lotline.devstack.process import StackError
from lotline.events.topics import (
    CONSUMED_BY,
    PUBLISHED_BY,
    EventType,
    consumer_group,
    dlq_topic,
    router_of,
)

# The stack's own principal: it creates topics, users and ACLs, and is the one super user.
ADMIN = "admin"
SCRAM_MECHANISM = "SCRAM-SHA-512"
SECRETS_FILE = "secrets.json"

# Kafka protocol enums (org.apache.kafka.common.acl / resource).
_RESOURCE = {"topic": 2, "group": 3}
_RESOURCE_ANY = 1
_PATTERN_LITERAL = 3
_PATTERN_ANY = 1
_OPERATION = {"READ": 3, "WRITE": 4}
_OPERATION_ANY = 1
_ALLOW = 3
_PERMISSION_ANY = 1
_ALL_HOSTS = "*"


def principals() -> tuple[str, ...]:
    """Every principal the contract names: each service, and each outside publisher (POS,
    receiving). A service or system added to the contract gets its principal on the next `up`."""
    return tuple(sorted({*CONSUMED_BY, *PUBLISHED_BY}))


@dataclass(frozen=True)
class Credentials:
    """One SASL/SCRAM login; the password never shows in a repr or a log line."""

    username: str
    password: SecretStr

    def env(self) -> dict[str, str]:
        """The settings a Lotline process needs to log in as this principal."""
        return {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "KAFKA_USERNAME": self.username,
            "KAFKA_PASSWORD": self.password.get_secret_value(),
        }

    def client_options(self) -> dict[str, Any]:
        """aiokafka's options to log in as this principal."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password.get_secret_value(),
        }


class StackSecrets:
    """The local stack's Kafka passwords, generated on first `up` into `<stack dir>/secrets.json`
    (mode 0600, readable by its owner only); nothing prints them."""

    def __init__(self, path: Path, passwords: dict[str, str]) -> None:
        self.path = path
        self._passwords = passwords

    @classmethod
    def path_in(cls, stack_dir: Path) -> Path:
        return stack_dir / SECRETS_FILE

    @classmethod
    def read(cls, stack_dir: Path) -> StackSecrets | None:
        """The secrets of a stack that has been brought up, or None."""
        path = cls.path_in(stack_dir)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise StackError(f"cannot read the stack's secrets from {path}: {error}") from None
        kafka = raw.get("kafka") if isinstance(raw, dict) else None
        if not isinstance(kafka, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in kafka.items()
        ):
            raise StackError(f"{path} is not a secrets file of lotline-devstack")
        return cls(path, dict(kafka))

    @classmethod
    def ensure(cls, stack_dir: Path) -> StackSecrets:
        """Read the secrets, adding a password for every principal that has none yet."""
        found = cls.read(stack_dir)
        passwords = dict(found._passwords) if found else {}
        missing = [name for name in (ADMIN, *principals()) if name not in passwords]
        if found is not None and not missing:
            return found
        for name in missing:
            passwords[name] = secrets.token_urlsafe(32)
        path = cls.path_in(stack_dir)
        write_private(path, json.dumps({"kafka": passwords}, indent=2, sort_keys=True) + "\n")
        return cls(path, passwords)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._passwords))

    def credentials(self, principal: str) -> Credentials:
        try:
            password = self._passwords[principal]
        except KeyError:
            raise StackError(
                f"the local stack has no Kafka principal {principal!r} "
                f"(it has {', '.join(self.names)}); run `lotline-devstack up` to add new ones"
            ) from None
        return Credentials(principal, SecretStr(password))

    @property
    def admin(self) -> Credentials:
        return self.credentials(ADMIN)

    def all_passwords(self) -> list[str]:
        """For tests that assert no secret leaked into a log."""
        return list(self._passwords.values())


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically: never a moment with looser rights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- ACLs -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: a principal may READ or WRITE one topic or consumer group (READ and WRITE
    imply DESCRIBE, which is all a client needs besides)."""

    principal: str
    resource: Literal["topic", "group"]
    name: str
    operation: Literal["READ", "WRITE"]

    def binding(self) -> tuple[int, str, int, str, str, int, int]:
        return (
            _RESOURCE[self.resource],
            self.name,
            _PATTERN_LITERAL,
            f"User:{self.principal}",
            _ALL_HOSTS,
            _OPERATION[self.operation],
            _ALLOW,
        )


def grants() -> list[Grant]:
    """The ACL model, from the contract alone: a service reads the topics it consumes, in its
    own consumer group, and writes what it publishes plus the DLQs of what it consumes (and,
    for the topics it routes, `router_of`, the topic itself: a misrouted event is moved to
    its SKU's partition); an outside system (POS, receiving) writes only what it publishes.
    Nothing else is allowed."""
    wanted: set[Grant] = set()
    for service, consumed in CONSUMED_BY.items():
        wanted.add(Grant(service, "group", consumer_group(service), "READ"))
        for event in consumed:
            wanted.add(Grant(service, "topic", event.topic, "READ"))
            wanted.add(Grant(service, "topic", dlq_topic(event.topic), "WRITE"))
    for publisher, published in PUBLISHED_BY.items():
        for event in published:
            wanted.add(Grant(publisher, "topic", event.topic, "WRITE"))
    # A topic's router moves events a producer put on the wrong partition to their SKU's.
    for event in EventType:
        router = router_of(event)
        if router is not None:
            wanted.add(Grant(router, "topic", event.topic, "WRITE"))
    return sorted(wanted)


@dataclass(frozen=True)
class AclChanges:
    created: int
    deleted: int
    kept: int


async def apply_acls(
    bootstrap: str, admin: dict[str, Any], wanted: Iterable[Grant] | None = None
) -> AclChanges:
    """Make the broker's ACLs for Lotline's principals exactly `wanted` (default: `grants()`):
    create the missing, delete the ones the contract no longer gives. Safe to run on every `up`.
    `admin` is aiokafka's login options of a principal allowed to alter ACLs."""
    desired = {grant.binding() for grant in (grants() if wanted is None else wanted)}
    managed = {f"User:{name}" for name in principals()} | {b[3] for b in desired}
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000, **admin)
    try:
        await client.start()
        existing = {b for b in await _describe_acls(client) if b[3] in managed}
        missing = desired - existing
        stale = existing - desired
        await asyncio.gather(*(_create_acl(client, binding) for binding in sorted(missing)))
        await asyncio.gather(*(_delete_acl(client, binding) for binding in sorted(stale)))
        return AclChanges(created=len(missing), deleted=len(stale), kept=len(existing & desired))
    except KafkaError as error:
        raise StackError(
            f"Kafka at {bootstrap} failed while applying ACLs: {type(error).__name__}: {error}"
        ) from None
    finally:
        await client.close()


Binding = tuple[int, str, int, str, str, int, int]


async def _describe_acls(client: AIOKafkaAdminClient) -> set[Binding]:
    request = DescribeAclsRequest(
        _RESOURCE_ANY, None, _PATTERN_ANY, None, None, _OPERATION_ANY, _PERMISSION_ANY
    )
    response = await client._send_request(request)
    _raise_for(response.error_code, response.error_message, "describing ACLs")
    found: set[Binding] = set()
    for resource_type, name, pattern, acls in response.resources:
        for principal, host, operation, permission in acls:
            found.add((resource_type, name, pattern, principal, host, operation, permission))
    return found


async def _create_acl(client: AIOKafkaAdminClient, binding: Binding) -> None:
    response = await client._send_request(CreateAclsRequest(*binding))
    for error_code, error_message in response.creation_responses:
        _raise_for(error_code, error_message, f"creating ACL {binding}")


async def _delete_acl(client: AIOKafkaAdminClient, binding: Binding) -> None:
    response = await client._send_request(DeleteAclsRequest(*binding))
    for error_code, error_message, _matching in response.filter_responses:
        _raise_for(error_code, error_message, f"deleting ACL {binding}")


CLUSTER_AUTHORIZATION_FAILED = 31


def _raise_for(error_code: int, message: str | None, doing: str) -> None:
    if error_code == CLUSTER_AUTHORIZATION_FAILED:
        raise StackError(f"Kafka refused {doing}: this principal may not manage ACLs")
    if error_code:
        raise StackError(f"Kafka refused {doing}: error {error_code} {message or ''}".strip())
