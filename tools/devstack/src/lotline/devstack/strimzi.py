"""The contract as Strimzi resources for deploy/kubernetes: a KafkaTopic per topic and a
KafkaUser per principal, whose ACLs are exactly the ones `lotline-devstack acls` sets."""

from __future__ import annotations

import json
import re
from typing import Any

from lotline.devstack.security import SCRAM_MECHANISM, grants, principals
from lotline.events.topics import topic_specs

API_VERSION = "kafka.strimzi.io/v1"
# The Kafka resource in deploy/kubernetes/base/kafka/kafka.yaml.
CLUSTER = "lotline-kafka"
PARTITIONS = 6
# Each principal's password is read from its own Secret, which the Deployments and KEDA read
# too (deploy/kubernetes/overlays/production/secrets/<principal>.env).
PASSWORD_KEY = "kafka-password"
COMMAND = "uv run python -m lotline.devstack strimzi > deploy/kubernetes/base/kafka/contract.yaml"

Resource = dict[str, Any]
# What Kubernetes accepts as a resource's name (an RFC 1123 subdomain).
# A string YAML reads back as that string when unquoted (YAML 1.1's words aside).
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9._/-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def secret_name(principal: str) -> str:
    return f"lotline-{principal}"


def _metadata(name: str, cluster: str) -> dict[str, Any]:
    if not _NAME.match(name) or len(name) > 253:
        raise ValueError(f"{name!r} cannot name a Kubernetes resource (RFC 1123 subdomain)")
    return {"name": name, "labels": {"strimzi.io/cluster": cluster}}


def topics(cluster: str = CLUSTER, partitions: int = PARTITIONS) -> list[Resource]:
    """One KafkaTopic per topic the stack creates (each event's, and a `.dlq` per consumed one),
    replicated as the broker's default.replication.factor says."""
    resources = []
    for spec in topic_specs(partitions):
        body: dict[str, Any] = {"partitions": spec.partitions}
        if spec.config:
            body["config"] = dict(spec.config)
        resources.append(
            {
                "apiVersion": API_VERSION,
                "kind": "KafkaTopic",
                "metadata": _metadata(spec.name, cluster),
                "spec": body,
            }
        )
    return resources


def users(cluster: str = CLUSTER) -> list[Resource]:
    """One KafkaUser per principal of the contract: a SCRAM-SHA-512 login whose password is in
    the principal's Secret, and `simple` ACLs, one per grant of `security.grants()`."""
    if SCRAM_MECHANISM != "SCRAM-SHA-512":
        raise ValueError(f"Strimzi's KafkaUser has no {SCRAM_MECHANISM} logins")
    resources = []
    for principal in principals():
        acls = [
            {
                "type": "allow",
                "resource": {"type": grant.resource, "name": grant.name, "patternType": "literal"},
                "operations": [grant.operation.capitalize()],
                "host": "*",
            }
            for grant in grants()
            if grant.principal == principal
        ]
        password = {"secretKeyRef": {"name": secret_name(principal), "key": PASSWORD_KEY}}
        resources.append(
            {
                "apiVersion": API_VERSION,
                "kind": "KafkaUser",
                "metadata": _metadata(principal, cluster),
                "spec": {
                    "authentication": {
                        "type": "scram-sha-512",
                        "password": {"valueFrom": password},
                    },
                    "authorization": {"type": "simple", "acls": acls},
                },
            }
        )
    return resources


def render(cluster: str = CLUSTER, partitions: int = PARTITIONS) -> str:
    """The topics and users as one YAML stream, as committed in deploy/kubernetes."""
    header = (
        "# Generated from the event contract (lotline.events.topics) by\n"
        f"#   {COMMAND}\n"
        "# Do not edit: tests/unit/test_kubernetes.py checks it equals what the contract gives.\n"
    )
    documents = ["\n".join(_yaml(resource)) + "\n" for resource in topics(cluster, partitions)]
    documents += ["\n".join(_yaml(resource)) + "\n" for resource in users(cluster)]
    return header + "".join(f"---\n{document}" for document in documents)


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML of plain data, enough for these resources, without a YAML library at
    run time; a string is double-quoted unless it is a plain word that reads as a string."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml(item, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            inner = _yaml(item, indent + 1)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines.extend(inner[1:])
        return lines
    return [pad + _scalar(value)]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        plain = _PLAIN.match(value) and value.lower() not in _YAML_WORDS
        return value if plain else json.dumps(value)
    if value == {} or value == []:
        return json.dumps(value)
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as YAML here")
