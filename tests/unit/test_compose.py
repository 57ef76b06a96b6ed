"""The Docker side, checked without a Docker engine: the compose file against the Compose
Specification's JSON Schema and by the real Compose implementation (`docker compose config`),
what running Lotline in it needs, that it is as secure as the README says (Kafka logins and
ACLs from the contract, tokens and secrets from .env), and the Dockerfile against uv's
documented pattern for Docker images and hadolint."""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from lotline.devstack import LocalStack, StackSettings
from lotline.devstack.kafka import KAFKA_VERSION, STORAGE_TOOL
from lotline.devstack.security import ADMIN, principals
from lotline.runtime.auth import Role, parse_credentials

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "compose" / "schema" / "compose-spec.json"
MONGO_INIT = ROOT / "compose" / "mongo-init" / "10-service-users.js"
KAFKA_START = ROOT / "compose" / "kafka" / "start.sh"
KAFKA_USERS = ROOT / "compose" / "kafka" / "users.sh"
ENV_EXAMPLE = ROOT / ".env.example"
JOBS = ["kafka-users", "kafka-acls"]
# The four services: compose name -> (HTTP port, database).
SERVICES = {
    "catalog": (8001, "catalog"),
    "stock": (8002, "stock"),
    "serial-registry": (8003, "serials"),
    "recall": (8004, "recall"),
}
SCALABLE = ("stock", "serial-registry")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def problems(validator: Draft202012Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_compose_file_follows_the_compose_specification(
    compose: dict[str, Any], validator: Draft202012Validator
) -> None:
    assert problems(validator, compose) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda c: c["services"]["stock"].update(healthchek={}), "services/stock"),
        (lambda c: c["services"]["kafka"].update(ports="9092"), "services/kafka/ports"),
        (
            lambda c: c["services"]["catalog"]["depends_on"]["mongo"].update(condition="up"),
            "services/catalog/depends_on",
        ),
    ],
)
def test_the_schema_check_catches_a_broken_compose_file(
    compose: dict[str, Any], validator: Draft202012Validator, change: Any, where: str
) -> None:
    broken = copy.deepcopy(compose)
    change(broken)
    found = problems(validator, broken)
    assert found, "the schema accepted a broken file"
    assert any(p.startswith(where) for p in found), found


def one_shot(compose: dict[str, Any], name: str) -> bool:
    """A job that runs to completion (creating the topics), which others wait for."""
    waited_for = any(
        isinstance(s.get("depends_on"), dict)
        and s["depends_on"].get(name, {}).get("condition") == "service_completed_successfully"
        for s in compose["services"].values()
    )
    return waited_for and compose["services"][name].get("restart") == "no"


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    jobs = [name for name in compose["services"] if one_shot(compose, name)]
    assert jobs == JOBS
    for name, service in compose["services"].items():
        if name in jobs:
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} disables its healthcheck"
    # Services wait for what they need to be healthy, not merely started.
    for name in SERVICES:
        depends = compose["services"][name]["depends_on"]
        assert depends["mongo"]["condition"] == "service_healthy"
        for job in JOBS:
            assert depends[job]["condition"] == "service_completed_successfully"
    for job in JOBS:
        assert compose["services"][job]["depends_on"]["kafka"]["condition"] == "service_healthy"


def workspace_scripts() -> dict[str, set[str]]:
    """Each workspace package's name and its console scripts."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = {}
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for member in sorted(ROOT.glob(pattern)):
            project = tomllib.loads((member / "pyproject.toml").read_text())["project"]
            found[project["name"]] = set(project.get("scripts", {}))
    return found


def test_the_four_services_build_from_the_dockerfile(compose: dict[str, Any]) -> None:
    scripts = workspace_scripts()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '--package "lotline-${SERVICE}"' in dockerfile
    assert "exec lotline-${LOTLINE_SERVICE}" in dockerfile
    for name, (port, _) in SERVICES.items():
        service = compose["services"][name]
        build = service["build"]
        assert build["context"] == "."
        assert (ROOT / build.get("dockerfile", "Dockerfile")).samefile(ROOT / "Dockerfile")
        package = f"lotline-{build['args']['SERVICE']}"
        # The image installs this package and runs its script of the same name.
        assert package in scripts, f"{name}: no workspace package {package}"
        assert package in scripts[package], f"{name}: {package} has no script {package}"
        assert service["environment"]["HTTP_PORT"] == port
        assert service["environment"]["HTTP_HOST"] == "0.0.0.0"
        assert "HTTP_PORT" in str(service["healthcheck"]["test"])
        assert "/health/ready" in str(service["healthcheck"]["test"])
    acls = compose["services"]["kafka-acls"]
    package = f"lotline-{acls['build']['args']['SERVICE']}"
    assert acls["command"] == ["sh", "-c", f"{package} topics && {package} acls"]
    assert package in scripts[package]


def host_ports(spec: str) -> set[int]:
    """The host ports of a short-syntax port mapping (none when only the container's)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return set()
    first, _, last = parts[-2].partition("-")
    return set(range(int(first), int(last or first) + 1))


def test_stock_and_serial_registry_can_be_scaled(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SCALABLE:
        service = services[name]
        assert "container_name" not in service, f"{name}: a fixed name allows one container"
        for spec in service.get("ports", []):
            published = host_ports(str(spec))
            # Each replica needs a host port of its own: a range, or none fixed at all.
            assert len(published) != 1, f"{name}: {spec} gives one replica a host port"
            assert not published or len(published) >= 3, f"{name}: {spec} is a short range"
        assert "deploy" not in service or "replicas" not in service["deploy"]
    taken: dict[int, str] = {}
    for name, service in services.items():
        for spec in service.get("ports", []):
            for port in host_ports(str(spec)):
                assert port not in taken, f"host port {port}: {taken[port]} and {name}"
                taken[port] = name


def interpolated(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))


def test_mongodb_runs_with_a_user_per_service_restricted_to_its_database(
    compose: dict[str, Any],
) -> None:
    mongo = compose["services"]["mongo"]
    env = mongo["environment"]
    for variable in ("MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"):
        # Required from the environment (.env), never a default written in the file.
        assert env[variable] == f"${{{variable}:?set it in .env (see .env.example)}}"
    assert "./compose/mongo-init:/docker-entrypoint-initdb.d:ro" in mongo["volumes"]
    script = MONGO_INIT.read_text()
    assert 'roles: [{ role: "readWrite", db: name }]' in script
    users = dict(re.findall(r'user: "([^"]+)", db: "([^"]+)", passwordVar: "[A-Z_]+"', script))
    passwords = dict(re.findall(r'user: "([^"]+)", db: "[^"]+", passwordVar: "([A-Z_]+)"', script))
    url = re.compile(
        r"mongodb://(?P<user>[^:]+):\$\{(?P<var>[A-Z_]+):\?[^}]+\}@mongo:27017/"
        r"(?P<db>[^?]+)\?authSource=(?P<auth>.+)$"
    )
    for name, (_, database) in SERVICES.items():
        found = url.match(compose["services"][name]["environment"]["MONGODB_URL"])
        assert found, f"{name}: MONGODB_URL has no user of its own"
        assert found["user"] == name
        assert found["db"] == found["auth"] == database == users[name]
        assert found["var"] == passwords[name]
        assert found["var"] in env, f"mongo is not given {found['var']} to create {name}"
    assert "MONGODB_URL" not in compose["x-service"]["environment"]


def test_every_secret_compose_needs_is_in_the_documented_example() -> None:
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    needed = interpolated(COMPOSE_FILE.read_text())
    assert needed == documented
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored, "the secrets would be sent to the image build"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_the_dockerfile_follows_uvs_documented_pattern() -> None:
    """uv's Docker guide: a pinned uv copied from its image, dependencies in their own
    layer (`--no-install-workspace` for a workspace, with uv.lock and every member's
    pyproject bind-mounted), then the project non-editable, and only the virtual
    environment copied into the final image."""
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) == 2, "one build stage and one runtime stage"
    build, runtime = stages
    assert re.search(r"^COPY --from=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+ /uv /uvx /bin/$",
                     build, flags=re.MULTILINE)  # fmt: skip
    assert "UV_COMPILE_BYTECODE=1" in build
    assert "UV_LINK_MODE=copy" in build
    assert "UV_PYTHON_DOWNLOADS=0" in build
    syncs = [m.group(0) for m in re.finditer(r"RUN (?:[^\n]*\\\n)*[^\n]*", build)]
    assert len(syncs) == 2
    dependencies, project = syncs
    assert "uv sync --locked --no-dev --no-install-workspace" in dependencies
    assert "--mount=type=cache,target=/root/.cache/uv" in dependencies
    mounted = set(re.findall(r"--mount=type=bind,source=([^,]+),target=\1", dependencies))
    members = {
        str(p.relative_to(ROOT))
        for pattern in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"][
            "workspace"
        ]["members"]
        for p in ROOT.glob(f"{pattern}/pyproject.toml")
    }
    assert mounted == {"uv.lock", "pyproject.toml", *members}
    assert text.index("COPY . /app") > text.index(dependencies)
    assert "uv sync --locked --no-dev --no-editable" in project
    # The runtime image has the environment only: no uv, no source tree, not root.
    assert "astral-sh/uv" not in runtime
    copies = re.findall(r"^COPY (.*)$", runtime, flags=re.MULTILINE)
    assert copies == ["--from=build --chown=10001:10001 /app/.venv /app/.venv"]
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)
    assert base is not None
    # The same Python image in both stages: the venv's interpreter path must exist.
    assert build.startswith("${PYTHON_IMAGE} AS build")
    assert runtime.startswith("${PYTHON_IMAGE}\n")


def run_init_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the mongo init script in Node with a stand-in for mongosh's `db`, which records
    the users it is asked to create."""
    harness = f"""
const created = [];
globalThis.db = {{ getSiblingDB: (name) => ({{
  createUser: (user) => created.push({{ database: name, ...user }}) }}) }};
globalThis.print = () => {{}};
process.env = {json.dumps(env)};
require({json.dumps(str(MONGO_INIT))});
console.log(JSON.stringify(created));
"""
    return subprocess.run(
        ["node", "-e", harness], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the script")
def test_the_init_script_creates_each_service_user_on_its_own_database_only() -> None:
    passwords = {
        "CATALOG_DB_PASSWORD": "c1",
        "STOCK_DB_PASSWORD": "s2",
        "SERIALS_DB_PASSWORD": "r3",
        "RECALL_DB_PASSWORD": "x4",
    }
    result = run_init_script(passwords)
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created == [
        {
            "database": database,
            "user": name,
            "pwd": password,
            "roles": [{"role": "readWrite", "db": database}],
        }
        for (name, (_, database)), password in zip(
            SERVICES.items(), passwords.values(), strict=True
        )
    ]
    missing = run_init_script({k: v for k, v in passwords.items() if k != "STOCK_DB_PASSWORD"})
    assert missing.returncode != 0
    assert "STOCK_DB_PASSWORD is not set" in missing.stderr


# --- as secure as the README ----------------------------------------------------------------


def script_properties(script: Path, name: str) -> dict[str, str]:
    """The properties a start script writes into `name` (its here-document), unexpanded."""
    found = re.search(
        rf'^cat > "\$config_dir/{re.escape(name)}" <<EOF\n(.*?)^EOF$',
        script.read_text(),
        flags=re.MULTILINE | re.DOTALL,
    )
    assert found, f"{script.name} writes no {name}"
    pairs = (line.partition("=") for line in found.group(1).splitlines() if line)
    return {key: value for key, _, value in pairs}


def test_kafka_takes_only_scram_logins_and_denies_what_no_acl_allows(
    compose: dict[str, Any],
) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["entrypoint"] == ["/bin/bash", "/lotline/kafka/start.sh"]
    assert "./compose/kafka:/lotline/kafka:ro" in kafka["volumes"]
    assert "ports" not in kafka, "the broker is for the containers on the compose network"
    server = script_properties(KAFKA_START, "server.properties")
    # Every listener speaks SASL; the client one takes SCRAM-SHA-512 only, the controller
    # listener (on loopback) PLAIN from the admin only, as in the local stack.
    protocols = dict(p.split(":") for p in server["listener.security.protocol.map"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}
    listeners = dict(listener.split("://") for listener in server["listeners"].split(","))
    assert set(listeners) == set(protocols)
    assert listeners["CONTROLLER"].startswith("127.0.0.1:")
    assert server["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert server["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert server["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"
    plain = server["listener.name.controller.plain.sasl.jaas.config"]
    assert re.findall(r"user_(\w+)=", plain) == [ADMIN], "the controller takes the admin alone"
    assert server["authorizer.class.name"].endswith(".StandardAuthorizer")
    assert server["allow.everyone.if.no.acl.found"] == "false"
    assert server["super.users"] == f"User:{ADMIN}"
    assert server["auto.create.topics.enable"] == "false"
    # The storage is formatted with the admin's SCRAM credentials, so someone can log in.
    assert '--add-scram "SCRAM-SHA-512=[name=admin,' in KAFKA_START.read_text()
    admin = script_properties(KAFKA_START, "admin.properties")
    assert admin["security.protocol"] == "SASL_PLAINTEXT"
    assert "admin.properties" in str(kafka["healthcheck"]["test"])


def test_the_broker_runs_the_kafka_the_local_stack_runs(compose: dict[str, Any]) -> None:
    """What the tests prove on the local stack's Kafka holds for Compose's: the same version."""
    kafka_images = {
        name: service["image"]
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("apache/kafka")
    }
    assert kafka_images == dict.fromkeys(["kafka", "kafka-users"], f"apache/kafka:{KAFKA_VERSION}")


def test_a_one_shot_job_gives_every_principal_of_the_contract_its_own_login(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    users = services["kafka-users"]
    assert users["image"] == services["kafka"]["image"], "the broker's own kafka-configs.sh"
    assert users["entrypoint"] == ["/bin/bash", "/lotline/kafka/users.sh"]
    env = users["environment"]
    named = env["LOTLINE_KAFKA_PRINCIPALS"].split()
    assert sorted(named) == sorted(principals()), "the principals are the contract's"
    admin_password = services["kafka"]["environment"]["KAFKA_ADMIN_PASSWORD"]
    assert env["KAFKA_ADMIN_PASSWORD"] == admin_password
    passwords = {}
    for principal in named:
        value = env[f"SCRAM_PASSWORD_{principal.upper().replace('-', '_')}"]
        (variable,) = interpolated(value)
        passwords[principal] = variable
    assert len(set(passwords.values())) == len(passwords), "a password of its own each"
    assert admin_password not in {f"${{{v}" for v in passwords.values()}
    # Each service logs in as its own principal, with the password the job gave it.
    for name in SERVICES:
        service_env = services[name]["environment"]
        assert service_env["KAFKA_USERNAME"] == name
        assert interpolated(service_env["KAFKA_PASSWORD"]) == {passwords[name]}
        assert service_env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert service_env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "SCRAM-SHA-512=password=%s" in KAFKA_USERS.read_text()


def test_the_acl_job_sets_the_contracts_acls_logged_in_as_the_admin(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    env = services["kafka-acls"]["environment"]
    assert env["KAFKA_USERNAME"] == ADMIN
    assert env["KAFKA_PASSWORD"] == services["kafka"]["environment"]["KAFKA_ADMIN_PASSWORD"]
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    # Nothing in the file talks to Kafka without logging in.
    for name, service in services.items():
        service_env = service.get("environment", {})
        if "KAFKA_BOOTSTRAP_SERVERS" in service_env and name != "kafka-users":
            assert service_env["KAFKA_SECURITY_PROTOCOL"].startswith("SASL_"), name
            assert service_env["KAFKA_USERNAME"], name


def env_example() -> dict[str, str]:
    pairs = re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    return dict(pairs)


def test_tokens_and_the_session_secret_come_from_env(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        env = compose["services"][name]["environment"]
        assert env["LOTLINE_TOKENS"] == "${LOTLINE_TOKENS:?set it in .env (see .env.example)}"
    recall = compose["services"]["recall"]["environment"]
    secret = "${RECALL_SESSION_SECRET:?set it in .env (see .env.example)}"
    assert recall["RECALL_SESSION_SECRET"] == secret
    # The recall's traces read the other services by their compose names.
    for variable, (name, port) in {
        "CATALOG_URL": ("catalog", 8001),
        "STOCK_URL": ("stock", 8002),
        "SERIALS_URL": ("serial-registry", 8003),
    }.items():
        assert recall[variable] == f"http://{name}:{port}"
        assert compose["services"][name]["environment"]["HTTP_PORT"] == port
    # The example's tokens are in the form the services read, with every role shown.
    example = env_example()
    credentials = parse_credentials(example["LOTLINE_TOKENS"], ".env.example")
    assert {c.role for c in credentials} >= {Role.OPERATOR, Role.STAFF}


def test_the_example_env_holds_placeholders_never_a_secret() -> None:
    for variable, value in env_example().items():
        if variable == "MONGO_INITDB_ROOT_USERNAME":
            continue
        # Every secret (and every token inside LOTLINE_TOKENS) says to change it.
        secrets = [entry.split(":")[-1] for entry in value.split(",")]
        assert all(s.startswith("change-me") for s in secrets), f"{variable}={value}"
        # URL-safe, and safe in a JAAS string: letters, digits and '-' only.
        assert re.fullmatch(r"[A-Za-z0-9:,_-]+", value), f"{variable}={value}"


def test_the_containers_run_hardened(compose: dict[str, Any]) -> None:
    for name in [*SERVICES, *JOBS]:
        service = compose["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in service["tmpfs"], name


def test_the_kafka_scripts_are_valid_bash() -> None:
    for script in (KAFKA_START, KAFKA_USERS):
        result = subprocess.run(
            ["bash", "-n", str(script)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert script.read_text().startswith("#!/bin/bash\n")
        assert "set -euo pipefail" in script.read_text()


def test_the_broker_is_formatted_with_the_admins_login_and_no_key_in_its_log(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """start.sh on this Kafka version, the local stack's jars standing in for the image's
    kafka-storage.sh: the storage is formatted, and the container's log shows neither the
    admin's password nor the SCRAM keys Kafka 4's formatter prints with its records."""
    libs = LocalStack(StackSettings()).kafka.libs
    if not (libs.parent / ".complete").exists():
        pytest.skip("Kafka's jars are not in the cache yet (the first `up` fetches them)")
    home = tmp_path / "kafka"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "kafka-storage.sh").write_text(
        f'#!/bin/bash\nexec java -cp "{libs}/*" {STORAGE_TOOL} "$@"\n'
    )
    # Nothing to start here: the broker's own start is not what this checks.
    (home / "bin" / "kafka-server-start.sh").write_text('#!/bin/bash\necho "would start $1"\n')
    for script in (home / "bin").iterdir():
        script.chmod(0o755)
    password = secrets.token_hex(24)
    env = {
        "PATH": os.environ["PATH"],
        "KAFKA_HOME": str(home),
        "KAFKA_DATA_DIR": str(tmp_path / "data"),
        "KAFKA_CONFIG_DIR": str(tmp_path / "config"),
        "CLUSTER_ID": compose["services"]["kafka"]["environment"]["CLUSTER_ID"],
        "KAFKA_ADMIN_PASSWORD": password,
    }
    result = subprocess.run(
        ["bash", str(KAFKA_START)], env=env, capture_output=True, text=True, timeout=120
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert (tmp_path / "data" / "meta.properties").exists()
    assert "Formatting metadata directory" in log
    assert f"would start {tmp_path / 'config' / 'server.properties'}" in log
    assert password not in log
    assert "storedKey=" not in log
    assert "salt=" not in log


def deploy_tool(name: str) -> str | None:
    """A tool that deploy/tools/install puts into the cache (or one on PATH)."""
    cache = Path(os.environ.get("LOTLINE_CACHE_DIR", Path.home() / ".cache" / "lotline"))
    installed = cache / "tools" / "bin" / name
    return str(installed) if installed.exists() else shutil.which(name)


DOCKER_COMPOSE = deploy_tool("docker-compose")
needs_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="Docker Compose v5 is not built: run deploy/tools/install"
)


def compose_config(env_file: Path | None) -> subprocess.CompletedProcess[str]:
    """`docker compose config` by the real Compose implementation (no engine needed)."""
    assert DOCKER_COMPOSE is not None
    command = [DOCKER_COMPOSE, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    # An empty env file instead of none: a .env a developer keeps in the checkout is not read.
    command += ["--env-file", str(env_file or os.devnull)]
    clean = {k: v for k, v in os.environ.items() if k not in interpolated(COMPOSE_FILE.read_text())}
    return subprocess.run(
        [*command, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, "HOME": os.environ.get("HOME", "/tmp")},
    )


@needs_compose
def test_compose_itself_reads_the_file_with_the_example_env() -> None:
    result = compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    example = env_example()
    services = model["services"]
    assert set(services) == {"kafka", "mongo", *JOBS, *SERVICES}
    for name in SERVICES:
        env = services[name]["environment"]
        assert env["KAFKA_USERNAME"] == name
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["LOTLINE_TOKENS"] == example["LOTLINE_TOKENS"]
        assert {c["condition"] for c in services[name]["depends_on"].values()} == {
            "service_healthy",
            "service_completed_successfully",
        }
        assert services[name]["read_only"] is True
    users = services["kafka-users"]["environment"]
    for principal in principals():
        upper = principal.upper().replace("-", "_")
        assert users[f"SCRAM_PASSWORD_{upper}"] == example[f"{upper}_KAFKA_PASSWORD"]
    recall = services["recall"]["environment"]
    assert recall["RECALL_SESSION_SECRET"] == example["RECALL_SESSION_SECRET"]
    acls = services["kafka-acls"]["environment"]
    assert acls["KAFKA_PASSWORD"] == example["KAFKA_ADMIN_PASSWORD"]


@needs_compose
def test_compose_refuses_to_start_without_the_secrets() -> None:
    result = compose_config(None)
    assert result.returncode != 0
    missing = set(re.findall(r"required variable (\w+) is missing", result.stderr))
    assert missing == set(env_example()), result.stderr


HADOLINT = deploy_tool("hadolint")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed: run deploy/tools/install")
def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_image_runs_as_a_numeric_user_and_carries_oci_labels() -> None:
    """What hadolint's DL3066 asks (checked here too, where hadolint is absent), and the OCI
    image annotations a registry shows."""
    runtime = re.split(r"^FROM ", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)[-1]
    users = re.findall(r"^USER (\S+)$", runtime, flags=re.MULTILINE)
    assert users == ["10001:10001"], "a numeric uid:gid, which runAsNonRoot can verify"
    assert "--uid 10001 --gid 10001" in runtime
    assert "--gid 10001 lotline" in runtime
    labels = dict(re.findall(r"(org\.opencontainers\.image\.[a-z.]+)=\"([^\"]*)\"", runtime))
    assert set(labels) >= {
        "org.opencontainers.image.title",
        "org.opencontainers.image.description",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.created",
    }
    assert labels["org.opencontainers.image.title"] == "lotline-${SERVICE}"
