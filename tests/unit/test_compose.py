"""The Docker side, checked without a Docker engine: the compose file against the Compose
Specification's JSON Schema, what running Lotline in it needs, and the Dockerfile against
uv's documented pattern for Docker images."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "compose" / "schema" / "compose-spec.json"
MONGO_INIT = ROOT / "compose" / "mongo-init" / "10-service-users.js"
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
    assert jobs == ["topics"]
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
        assert depends["topics"]["condition"] == "service_completed_successfully"
    assert compose["services"]["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


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
    topics = compose["services"]["topics"]
    assert topics["command"][0] in scripts[f"lotline-{topics['build']['args']['SERVICE']}"]


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
    assert copies == ["--from=build --chown=lotline:lotline /app/.venv /app/.venv"]
    assert re.search(r"^USER lotline$", runtime, flags=re.MULTILINE)
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
