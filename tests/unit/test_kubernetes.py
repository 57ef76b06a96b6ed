"""The Kubernetes manifests (deploy/kubernetes), checked offline: the Strimzi topics and users
equal what the contract gives, the kustomization renders (base and the production overlay, by
the real kustomize), every object validates against Kubernetes' schemas (kubernetes-validate)
or its operator's CRD schema (deploy/kubernetes/schemas), and what the README promises holds:
probes, limits, a numeric non-root user, a read-only root filesystem, disruption budgets,
scaling on consumer lag up to the partition count, and Secrets that are never committed."""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator

from lotline.devstack import strimzi
from lotline.devstack.security import Grant, grants, principals
from lotline.events.topics import CONSUMED_BY, consumer_group, topic_specs

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
CONTRACT = KUBE / "base" / "kafka" / "contract.yaml"
SCHEMAS = KUBE / "schemas"
PRODUCTION = "overlays/production"
# The service -> (HTTP port, database), as the services' app.py and docker-compose.yml say.
SERVICES = {
    "catalog": (8001, "catalog"),
    "stock": (8002, "stock"),
    "serial-registry": (8003, "serials"),
    "recall": (8004, "recall"),
}
IMAGE_USER = 10001  # the Dockerfile's USER
# Kubernetes versions the manifests are validated against: the oldest with every field used
# (topologySpreadConstraints.matchLabelKeys) in kubernetes-validate, and its newest.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Secrets that operators write, by kind: Strimzi's cluster CA (`<cluster>-cluster-ca-cert`);
# MongoDB's connection strings are named by each user's connectionStringSecretName.
STRIMZI_CA = f"{strimzi.CLUSTER}-cluster-ca-cert"

Resource = dict[str, Any]


def deploy_tool(name: str) -> str | None:
    """A tool that deploy/tools/install puts into the cache (or one on PATH)."""
    cache = Path(os.environ.get("LOTLINE_CACHE_DIR", Path.home() / ".cache" / "lotline"))
    installed = cache / "tools" / "bin" / name
    return str(installed) if installed.exists() else shutil.which(name)


KUSTOMIZE = deploy_tool("kustomize")
KUBERNETES_VALIDATE = deploy_tool("kubernetes-validate")
needs_kustomize = pytest.mark.skipif(
    KUSTOMIZE is None, reason="kustomize is not built: run deploy/tools/install"
)


def load_all(text: str) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


# --- the contract -----------------------------------------------------------------------------


def test_the_committed_strimzi_resources_are_what_the_contract_gives() -> None:
    """A new event, consumer or publisher changes them: regenerate with the command below."""
    assert CONTRACT.read_text() == strimzi.render(), f"run: {strimzi.COMMAND}"


def acl_grants(users: list[Resource]) -> set[Grant]:
    """The ACLs of KafkaUser resources, read back as the devstack's grants."""
    found = set()
    for user in users:
        authorization = user["spec"]["authorization"]
        assert authorization["type"] == "simple"
        for acl in authorization["acls"]:
            assert acl.get("type", "allow") == "allow"
            assert acl.get("host", "*") == "*"
            assert acl["resource"].get("patternType", "literal") == "literal"
            for operation in acl["operations"]:
                resource = acl["resource"]
                found.add(
                    Grant(
                        user["metadata"]["name"],
                        resource["type"],
                        resource["name"],
                        operation.upper(),
                    )
                )
    return found


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def test_the_strimzi_acls_equal_the_contracts() -> None:
    users = of_kind(load_all(CONTRACT.read_text()), "KafkaUser")
    assert sorted(u["metadata"]["name"] for u in users) == sorted(principals())
    assert acl_grants(users) == set(grants())
    for user in users:
        authentication = user["spec"]["authentication"]
        assert authentication["type"] == "scram-sha-512"
        ref = authentication["password"]["valueFrom"]["secretKeyRef"]
        assert ref == {
            "name": strimzi.secret_name(user["metadata"]["name"]),
            "key": strimzi.PASSWORD_KEY,
        }


def test_there_is_a_kafka_topic_for_every_topic_of_the_contract() -> None:
    topics = of_kind(load_all(CONTRACT.read_text()), "KafkaTopic")
    assert {t["metadata"]["name"]: t["spec"] for t in topics} == {
        spec.name: {
            "partitions": spec.partitions,
            **({"config": spec.config} if spec.config else {}),
        }
        for spec in topic_specs(strimzi.PARTITIONS)
    }
    assert {t["metadata"]["labels"]["strimzi.io/cluster"] for t in topics} == {strimzi.CLUSTER}


def test_a_grant_the_contract_lacks_would_be_seen() -> None:
    users = of_kind(load_all(CONTRACT.read_text()), "KafkaUser")
    widened = copy.deepcopy(users)
    pos = next(u for u in widened if u["metadata"]["name"] == "pos")
    pos["spec"]["authorization"]["acls"].append(
        {"resource": {"type": "topic", "name": "batch-recalled"}, "operations": ["Write"]}
    )
    assert acl_grants(widened) - set(grants()) == {Grant("pos", "topic", "batch-recalled", "WRITE")}


# --- rendering ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/kubernetes with each secrets/*.env made from its committed example,
    as an operator makes them before applying (with real values)."""
    copied = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBE, copied)
    for example in copied.glob("overlays/*/secrets/*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    return copied


def kustomize_build(workdir: Path, target: str) -> list[Resource]:
    assert KUSTOMIZE is not None
    result = subprocess.run(
        [KUSTOMIZE, "build", str(workdir / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return load_all(result.stdout)


@pytest.fixture(scope="module")
def production(workdir: Path) -> list[Resource]:
    if KUSTOMIZE is None:
        pytest.skip("kustomize is not built: run deploy/tools/install")
    return kustomize_build(workdir, PRODUCTION)


@pytest.fixture(scope="module")
def base(workdir: Path) -> list[Resource]:
    if KUSTOMIZE is None:
        pytest.skip("kustomize is not built: run deploy/tools/install")
    return kustomize_build(workdir, "base")


def named(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


@needs_kustomize
def test_the_production_overlay_needs_its_secret_files(tmp_path: Path) -> None:
    """Without secrets/*.env (never committed) there is nothing to apply."""
    shutil.copytree(KUBE, tmp_path / "kubernetes")
    assert KUSTOMIZE is not None
    result = subprocess.run(
        [KUSTOMIZE, "build", str(tmp_path / "kubernetes" / PRODUCTION)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert re.search(r"secrets/[\w-]+\.env", result.stderr), result.stderr


# --- schemas ------------------------------------------------------------------------------


def structural(schema: Any) -> Any:
    """A CRD's OpenAPI v3 (structural) schema as JSON Schema, refusing unknown fields as the
    API server's strict field validation does, except where x-kubernetes-preserve-unknown-fields
    says otherwise. CEL rules (x-kubernetes-validations) are left to the API server."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: structural(item) for name, item in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = structural(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [structural(item) for item in value]
        elif key in ("x-kubernetes-validations", "description"):
            continue
        else:
            out[key] = value
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if out.get("type") == "object" and "properties" in out and not preserve:
        out.setdefault("additionalProperties", False)
    return out


@pytest.fixture(scope="module")
def crd_validators() -> dict[tuple[str, str], Draft4Validator]:
    """(apiVersion, kind) -> a validator of each served version of each committed CRD."""
    validators = {}
    for path in sorted(SCHEMAS.rglob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        assert crd["kind"] == "CustomResourceDefinition", path
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = structural(version["schema"]["openAPIV3Schema"])
                Draft4Validator.check_schema(schema)
                validators[(f"{group}/{version['name']}", kind)] = Draft4Validator(schema)
    for folder in {p.parent for p in SCHEMAS.rglob("*.yaml")}:
        assert {p.name for p in folder.iterdir()} & {"LICENSE", "APACHE2"}, f"{folder}: licence"
    return validators


def crd_problems(
    validators: dict[tuple[str, str], Draft4Validator], resource: Resource
) -> list[str]:
    validator = validators[(resource["apiVersion"], resource["kind"])]
    return [
        f"{resource['kind']}/{resource['metadata']['name']}: "
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(resource)
    ]


def custom(resources: list[Resource], validators: dict[tuple[str, str], Any]) -> Iterator[Resource]:
    kinds = {kind for _, kind in validators}
    return (r for r in resources if r["kind"] in kinds)


@needs_kustomize
@pytest.mark.parametrize("target", ["base", PRODUCTION])
def test_every_custom_resource_validates_against_its_crd(
    workdir: Path, target: str, crd_validators: dict[tuple[str, str], Draft4Validator]
) -> None:
    resources = kustomize_build(workdir, target)
    checked = list(custom(resources, crd_validators))
    assert {r["kind"] for r in checked} == {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "KafkaUser",
        "ScaledObject",
        "TriggerAuthentication",
        "MongoDBCommunity",
    }
    problems = [p for resource in checked for p in crd_problems(crd_validators, resource)]
    assert problems == []


@pytest.mark.parametrize(
    ("kind", "break_it", "where"),
    [
        (
            "KafkaUser",
            lambda r: r["spec"]["authorization"]["acls"][0].update(operations=["Reed"]),
            "spec/authorization/acls/0/operations/0",
        ),
        ("KafkaTopic", lambda r: r["spec"].update(partitions=0), "spec/partitions"),
        ("KafkaTopic", lambda r: r["spec"].update(partition=6), "spec"),
        ("ScaledObject", lambda r: r["spec"].pop("scaleTargetRef"), "spec"),
        ("MongoDBCommunity", lambda r: r["spec"].update(type="Sharded"), "spec/type"),
        (
            "Kafka",
            lambda r: r["spec"]["kafka"]["listeners"][0].update(tls="yes"),
            "spec/kafka/listeners/0/tls",
        ),
    ],
)
def test_the_crd_check_catches_a_broken_resource(
    crd_validators: dict[tuple[str, str], Draft4Validator], kind: str, break_it: Any, where: str
) -> None:
    sources = [*KUBE.glob("base/**/*.yaml"), *KUBE.glob("overlays/*/kafka-node-pools.yaml")]
    resources = [r for path in sources for r in load_all(path.read_text()) if r.get("kind")]
    resource = copy.deepcopy(of_kind(resources, kind)[0])
    assert crd_problems(crd_validators, resource) == []
    break_it(resource)
    found = crd_problems(crd_validators, resource)
    assert any(f": {where}: " in p for p in found), found


@pytest.mark.skipif(
    KUBERNETES_VALIDATE is None,
    reason="kubernetes-validate is not installed: run deploy/tools/install",
)
@needs_kustomize
@pytest.mark.parametrize("target", ["base", PRODUCTION])
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_kubernetes_object_validates_against_its_schema(
    workdir: Path,
    tmp_path: Path,
    target: str,
    version: str,
    crd_validators: dict[tuple[str, str], Draft4Validator],
) -> None:
    resources = kustomize_build(workdir, target)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(resources))
    assert KUBERNETES_VALIDATE is not None
    result = subprocess.run(
        [KUBERNETES_VALIDATE, "--strict", "-k", version, str(rendered)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "\n".join(line for line in lines if not line.startswith("INFO"))
    assert not [line for line in lines if line.startswith("ERROR")]
    passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
    # Every object either passed Kubernetes' schema or is a custom resource checked above.
    unknown = set(re.findall(r"Couldn't find schema for kind (\w+)", result.stdout))
    assert unknown == {kind for _, kind in crd_validators}
    assert len(passed) == len([r for r in resources if r["kind"] not in unknown])


# --- what the README promises ---------------------------------------------------------------


def container(deployment: Resource) -> Resource:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    assert only["name"] == deployment["metadata"]["name"]
    return dict(only)


def env_of(deployment: Resource) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


@needs_kustomize
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_probed_limited_non_root_and_read_only(
    production: list[Resource], service: str
) -> None:
    deployment = named(production, "Deployment", service)
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    port = SERVICES[service][0]
    assert main["ports"] == [{"name": "http", "containerPort": port}]
    assert main["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    for kind in ("requests", "limits"):
        assert set(main["resources"][kind]) == {"cpu", "memory"}, kind
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == security["runAsGroup"] == IMAGE_USER
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"\nUSER {IMAGE_USER}:{IMAGE_USER}\n" in dockerfile
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a writable /tmp on a read-only root"
    assert pod["automountServiceAccountToken"] is False
    # The count is KEDA's: a replicas field would fight the autoscaler on every apply.
    assert "replicas" not in deployment["spec"]
    assert env_of(deployment)["HTTP_PORT"] == str(port)
    # The Service and the PodDisruptionBudget select the Deployment's pods.
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    svc = named(production, "Service", service)
    assert svc["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    assert svc["spec"]["selector"].items() <= pods.items()
    budget = named(production, "PodDisruptionBudget", service)
    assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()
    assert budget["spec"]["maxUnavailable"] == 1
    # Spread over zones and nodes: each constraint counts this service's own pods.
    spread = pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= pods.items()
        assert all(key in pods for key in constraint.get("matchLabelKeys", []))


def config_map(resources: list[Resource]) -> dict[str, str]:
    (found,) = of_kind(resources, "ConfigMap")
    data: dict[str, str] = found["data"]
    return data


@needs_kustomize
@pytest.mark.parametrize("service", CONSUMED_BY)
def test_keda_scales_each_consumer_on_its_groups_lag_up_to_the_partitions(
    production: list[Resource], service: str
) -> None:
    scaled = named(production, "ScaledObject", service)
    assert scaled["spec"]["scaleTargetRef"] == {"name": service}
    partitions = int(config_map(production)["KAFKA_PARTITIONS"])
    assert partitions == strimzi.PARTITIONS
    topics = of_kind(production, "KafkaTopic")
    assert {t["spec"]["partitions"] for t in topics} == {partitions}
    assert 2 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= partitions
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(
        event.topic for event in CONSUMED_BY[service]
    )
    bootstrap = config_map(production)["KAFKA_BOOTSTRAP_SERVERS"]
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert metadata["consumerGroup"] == consumer_group(service)
        assert metadata["bootstrapServers"] == bootstrap
        assert (metadata["sasl"], metadata["tls"]) == ("scram_sha512", "enable")
        assert int(metadata["lagThreshold"]) > 0
        auth = named(production, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert set(refs) == {"username", "password", "ca"}
        # KEDA logs in as the service itself, from the service's own Secret.
        secret = named(production, "Secret", refs["username"]["name"])
        assert secret["metadata"]["name"].startswith(strimzi.secret_name(service))
        assert decoded(secret, refs["username"]["key"]) == service
        assert refs["password"]["name"] == secret["metadata"]["name"]
        assert refs["ca"] == {"parameter": "ca", "name": STRIMZI_CA, "key": "ca.crt"}


def decoded(secret: Resource, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def secret_references(resources: list[Resource]) -> Iterator[tuple[str, str, str | None]]:
    """(who, Secret name, key) of every place the rendered objects name a Secret."""
    for r in resources:
        who = f"{r['kind']}/{r['metadata']['name']}"
        if r["kind"] == "Deployment":
            pod = r["spec"]["template"]["spec"]
            for c in pod["containers"]:
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        yield who, ref["name"], ref["key"]
            for v in pod.get("volumes", []):
                if "secret" in v:
                    for item in v["secret"].get("items", [{"key": None}]):
                        yield who, v["secret"]["secretName"], item["key"]
        elif r["kind"] == "KafkaUser":
            ref = r["spec"]["authentication"]["password"]["valueFrom"]["secretKeyRef"]
            yield who, ref["name"], ref["key"]
        elif r["kind"] == "TriggerAuthentication":
            for ref in r["spec"]["secretTargetRef"]:
                yield who, ref["name"], ref["key"]
        elif r["kind"] == "MongoDBCommunity":
            for user in r["spec"]["users"]:
                ref = user["passwordSecretRef"]
                yield who, ref["name"], ref.get("key", "password")


@needs_kustomize
def test_every_secret_named_is_generated_or_written_by_an_operator(
    production: list[Resource],
) -> None:
    generated = {s["metadata"]["name"]: set(s["data"]) for s in of_kind(production, "Secret")}
    (mongodb,) = of_kind(production, "MongoDBCommunity")
    # Written by the operators once their resources exist.
    written = {STRIMZI_CA: {"ca.crt"}} | {
        user["connectionStringSecretName"]: {"connectionString.standard"}
        for user in mongodb["spec"]["users"]
        if "connectionStringSecretName" in user
    }
    references = list(secret_references(production))
    assert {who.partition("/")[0] for who, _, _ in references} == {
        "Deployment",
        "KafkaUser",
        "TriggerAuthentication",
        "MongoDBCommunity",
    }
    for who, name, key in references:
        keys = generated.get(name, written.get(name))
        assert keys is not None, f"{who} names the Secret {name}, which nothing makes"
        assert key is None or key in keys, f"{who}: the Secret {name} has no key {key}"


@needs_kustomize
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_logs_in_to_kafka_and_mongodb_as_itself(
    production: list[Resource], service: str
) -> None:
    deployment = named(production, "Deployment", service)
    env = env_of(deployment)
    assert env["KAFKA_USERNAME"] == service
    password = env["KAFKA_PASSWORD"]["secretKeyRef"]
    user = named(production, "KafkaUser", service)
    assert password == user["spec"]["authentication"]["password"]["valueFrom"]["secretKeyRef"]
    config = config_map(production)
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["SSL_CERT_FILE"] == "/etc/lotline/kafka-ca/ca.crt"
    (kafka,) = of_kind(production, "Kafka")
    port = int(config["KAFKA_BOOTSTRAP_SERVERS"].rpartition(":")[2])
    (listener,) = [entry for entry in kafka["spec"]["kafka"]["listeners"] if entry["port"] == port]
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == f"{strimzi.CLUSTER}-kafka-bootstrap:{port}"
    # The service's MongoDB user owns its own database and nothing else.
    (mongodb,) = of_kind(production, "MongoDBCommunity")
    url = env["MONGODB_URL"]["secretKeyRef"]
    (mongo_user,) = [
        u for u in mongodb["spec"]["users"] if u.get("connectionStringSecretName") == url["name"]
    ]
    database = SERVICES[service][1]
    assert (mongo_user["name"], mongo_user["db"]) == (service, database)
    assert mongo_user["roles"] == [{"name": "readWrite", "db": database}]
    assert mongo_user["passwordSecretRef"]["name"] == password["name"]
    assert url["key"] == "connectionString.standard"
    assert env["LOTLINE_TOKENS"]["secretKeyRef"]["key"] == "LOTLINE_TOKENS"
    if service == "recall":
        assert env["RECALL_SESSION_SECRET"]["secretKeyRef"]["key"] == "RECALL_SESSION_SECRET"
        assert env["RECALL_COOKIE_SECURE"] == "true"
    assert listener["tls"] is True


@needs_kustomize
def test_kafka_runs_kraft_with_scram_and_acls_everywhere(
    base: list[Resource], production: list[Resource]
) -> None:
    for resources in (base, production):
        (kafka,) = of_kind(resources, "Kafka")
        listeners = kafka["spec"]["kafka"]["listeners"]
        assert {(entry["tls"], entry["authentication"]["type"]) for entry in listeners} == {
            (True, "scram-sha-512")
        }
        assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
        assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
        pools = of_kind(resources, "KafkaNodePool")
        roles = {role for pool in pools for role in pool["spec"]["roles"]}
        assert roles == {"controller", "broker"}, "KRaft: controllers and brokers, no ZooKeeper"
        assert acl_grants(of_kind(resources, "KafkaUser")) == set(grants())
    (kafka,) = of_kind(production, "Kafka")
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert 1 < config["min.insync.replicas"] < config["default.replication.factor"]
    pools = {p["metadata"]["name"]: p["spec"] for p in of_kind(production, "KafkaNodePool")}
    assert {name: (p["replicas"], p["roles"]) for name, p in pools.items()} == {
        "controllers": (3, ["controller"]),
        "brokers": (3, ["broker"]),
    }
    (mongodb,) = of_kind(production, "MongoDBCommunity")
    assert mongodb["spec"]["members"] == 3
    assert mongodb["spec"]["security"]["authentication"]["modes"] == ["SCRAM"]


@needs_kustomize
def test_production_puts_everything_in_its_namespace(production: list[Resource]) -> None:
    for r in production:
        if r["kind"] != "Namespace":
            assert r["metadata"].get("namespace") == "lotline", f"{r['kind']}/{r['metadata']}"
    for deployment in of_kind(production, "Deployment"):
        image = container(deployment)["image"]
        assert re.fullmatch(r"[a-z0-9.-]+/lotline/lotline-[a-z-]+:\d+\.\d+\.\d+", image), image


def test_no_secret_is_committed() -> None:
    examples = sorted(KUBE.glob("overlays/*/secrets/*.env.example"))
    assert examples
    for example in examples:
        values = re.findall(r"^[\w.-]+=(.*)$", example.read_text(), flags=re.MULTILINE)
        assert values, example
        for value in values:
            secrets = [entry.split(":")[-1] for entry in value.split(",")]
            assert all(s.startswith("change-me") for s in secrets), f"{example.name}: {value}"
        real = example.with_suffix("")
        ignored = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "-q", str(real)], check=False
        )
        assert ignored.returncode == 0, f"git would commit {real.relative_to(ROOT)}"
    committed = [
        r
        for path in KUBE.rglob("*.yaml")
        if "schemas" not in path.parts
        for r in load_all(path.read_text())
        if r.get("kind") == "Secret"
    ]
    assert committed == [], "Secrets are generated from secrets/*.env, never written here"
