"""The local Kafka broker: its jars from Maven Central, its KRaft config, readiness and topics."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from lotline.devstack.process import (
    PRIVATE_UMASK,
    ProcessSpec,
    StackError,
    port_accepts,
    private_dir,
)
from lotline.devstack.security import (
    ADMIN,
    SCRAM_MECHANISM,
    Credentials,
    StackSecrets,
    write_private,
)
from lotline.events.topics import TopicSpec

T = TypeVar("T")

KAFKA_VERSION = "4.4.0"
POM = Path(__file__).resolve().parents[3] / "kafka" / "pom.xml"
# The main classes of kafka-storage.sh and kafka-configs.sh; Kafka 4 moved ConfigCommand from
# core (kafka.admin) to the tools module.
STORAGE_TOOL = "kafka.tools.StorageTool"
CONFIG_COMMAND = "org.apache.kafka.tools.ConfigCommand"
# How Kafka 4's StorageTool starts the line that lists the records it formats with.
BOOTSTRAP_RECORDS = "Bootstrap metadata:"

# CreateTopics error codes (Kafka protocol).
TOPIC_ALREADY_EXISTS = 36
# Right after start the controller may not yet count the broker as registered, so these
# pass: request timed out, invalid replication factor, not controller.
RETRIABLE_CREATE_ERRORS = {7, 38, 41}


@dataclass(frozen=True)
class KafkaLayout:
    """Where one local Kafka keeps its jars, config and data."""

    cache_dir: Path
    stack_dir: Path
    port: int
    controller_port: int

    @property
    def home(self) -> Path:
        return self.cache_dir / f"kafka-{KAFKA_VERSION}"

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def installed_marker(self) -> Path:
        return self.home / ".complete"

    @property
    def base(self) -> Path:
        return self.stack_dir / "kafka"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def server_properties(self) -> Path:
        return self.base / "server.properties"

    @property
    def log4j2_properties(self) -> Path:
        return self.base / "log4j2.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.base / "cluster.id"

    @property
    def users_file(self) -> Path:
        """The principals whose SCRAM credentials the broker holds (its metadata log has them,
        but reading them back needs the broker up); written at format time and on each add."""
        return self.base / "scram-users"

    @property
    def admin_properties(self) -> Path:
        """Client config of the admin principal for Kafka's own command-line tools (mode 0600)."""
        return self.base / "admin.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def install(layout: KafkaLayout) -> None:
    """Copy the broker's jars from Maven Central once; the marker says the copy is whole."""
    if layout.installed_marker.exists():
        return
    if not POM.exists():
        raise StackError(f"Kafka's pom.xml is missing at {POM}")
    mvn = _require("mvn", "Maven, to fetch Kafka's jars (apt-get install maven)")
    _require("java", "a Java 17+ runtime, to run Kafka (apt-get install openjdk-17-jre-headless)")
    if layout.libs.exists():
        shutil.rmtree(layout.libs)
    layout.libs.mkdir(parents=True)
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={layout.libs}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise StackError(f"mvn could not fetch Kafka {KAFKA_VERSION}'s jars:\n{output}")
    layout.installed_marker.write_text(f"kafka {KAFKA_VERSION}\n")


def _require(program: str, what: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise StackError(f"`{program}` is not on PATH; the local stack needs {what}")
    return path


def _classpath(layout: KafkaLayout) -> str:
    return f"{layout.libs}/*"


def _log_config(layout: KafkaLayout) -> str:
    return f"-Dlog4j2.configurationFile={layout.log4j2_properties}"


def tool_command(layout: KafkaLayout, main_class: str, *arguments: str) -> list[str]:
    """The command line of one of Kafka's own tools, run from the stack's jars."""
    java = _require("java", "a Java 17+ runtime, to run Kafka")
    return [java, "-cp", _classpath(layout), _log_config(layout), main_class, *arguments]


def cluster_id(layout: KafkaLayout) -> str:
    """One id per data dir, made once: a KRaft log refuses to start under another id."""
    if layout.cluster_id_file.exists():
        return layout.cluster_id_file.read_text().strip()
    while True:
        # Kafka's own ids are 16 random bytes in unpadded base64url; it avoids a leading '-'
        # because the tools would take it for an option.
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            break
    layout.base.mkdir(parents=True, exist_ok=True)
    layout.cluster_id_file.write_text(f"{candidate}\n")
    return candidate


CLIENT_LISTENER = "SASL_PLAINTEXT"
CONTROLLER_LISTENER = "CONTROLLER"


def listeners(layout: KafkaLayout) -> str:
    return (
        f"{CLIENT_LISTENER}://{layout.bootstrap},"
        f"{CONTROLLER_LISTENER}://127.0.0.1:{layout.controller_port}"
    )


def _jaas(module: str, admin: Credentials, *extra: str) -> str:
    password = admin.password.get_secret_value()
    options = [f'username="{admin.username}"', f'password="{password}"', *extra]
    return f"{module} required {' '.join(options)};"


def write_config(layout: KafkaLayout, secrets: StackSecrets) -> None:
    """server.properties (mode 0600: it holds the admin's password for the broker's own logins).

    Clients must log in with SASL/SCRAM-SHA-512 on the one client listener; the
    StandardAuthorizer then denies whatever no ACL allows. SCRAM cannot secure the KRaft
    controller listener (the credentials live in the metadata that listener serves), so it uses
    SASL/PLAIN with the admin alone: no anonymous client is a super user anywhere."""
    private_dir(layout.base)
    private_dir(layout.data)
    admin = secrets.admin
    controller = f"127.0.0.1:{layout.controller_port}"
    client = CLIENT_LISTENER.lower()
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static quorum: one voter, known at format time. (Kafka 4's dynamic quorum,
        # controller.quorum.bootstrap.servers, needs `format --standalone` and buys nothing
        # with one controller.)
        "controller.quorum.voters": f"1@{controller}",
        "listeners": listeners(layout),
        "advertised.listeners": f"{CLIENT_LISTENER}://{layout.bootstrap}",
        "listener.security.protocol.map": (
            f"{CLIENT_LISTENER}:SASL_PLAINTEXT,{CONTROLLER_LISTENER}:SASL_PLAINTEXT"
        ),
        "controller.listener.names": CONTROLLER_LISTENER,
        "inter.broker.listener.name": CLIENT_LISTENER,
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        f"listener.name.{client}.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"listener.name.{client}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.scram.ScramLoginModule", admin
        ),
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule",
            admin,
            f'user_{admin.username}="{admin.password.get_secret_value()}"',
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN}",
        "log.dirs": str(layout.data),
        "num.partitions": "6",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "false",
        # A container of phones arrives as one receipt: 100,000 serials are about 2.5 MB.
        "message.max.bytes": "16777216",
        "replica.fetch.max.bytes": "16777216",
        "offsets.topic.replication.factor": "1",
        # 50 partitions each by default: slow to create on two cores, pointless on one broker.
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "6",
        "group.initial.rebalance.delay.ms": "0",
        # After a kill -9 the controller refuses the restarted broker until the old session
        # expires (9 s by default); tests that crash Kafka on purpose wait that long.
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
        # Few threads and a small cleaner buffer: the broker shares two cores with the tests.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "background.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "log.retention.hours": "168",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    write_private(layout.server_properties, "".join(f"{k}={v}\n" for k, v in properties.items()))
    write_private(
        layout.admin_properties,
        "security.protocol=SASL_PLAINTEXT\n"
        f"sasl.mechanism={SCRAM_MECHANISM}\n"
        "sasl.jaas.config="
        + _jaas("org.apache.kafka.common.security.scram.ScramLoginModule", admin)
        + "\n",
    )
    # Log4j 2 (Kafka 4 has no Log4j 1). The broker's stdout is its log file, so WARN to the
    # console is WARN to that file.
    layout.log4j2_properties.write_text(
        "appender.stdout.type=Console\n"
        "appender.stdout.name=STDOUT\n"
        "appender.stdout.layout.type=PatternLayout\n"
        "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
        "rootLogger.level=WARN\n"
        "rootLogger.appenderRef.stdout.ref=STDOUT\n"
        # Say once that the broker is up, to make the log readable.
        "logger.raft.name=kafka.server.KafkaRaftServer\n"
        "logger.raft.level=INFO\n"
    )


def format_storage(layout: KafkaLayout, secrets: StackSecrets) -> None:
    """Format the KRaft log dir once (a formatted dir has meta.properties), with the SCRAM
    credentials of every principal (KIP-900), so the first start already authenticates.

    A dir formatted by an older stack, before SASL, holds no credentials, not even the admin's,
    so nothing could log in to add them: it is formatted anew (its topics are recreated by `up`;
    the stack is for development, its events are test data)."""
    if (layout.data / "meta.properties").exists():
        if layout.users_file.exists():
            return
        shutil.rmtree(layout.data)
        private_dir(layout.data)
    scram = [
        argument
        for name in secrets.names
        for argument in (
            "--add-scram",
            f"{SCRAM_MECHANISM}=[name={name},"
            f"password={secrets.credentials(name).password.get_secret_value()}]",
        )
    ]
    command = tool_command(
        layout,
        STORAGE_TOOL,
        "format",
        "-t",
        cluster_id(layout),
        "-c",
        str(layout.server_properties),
        "--ignore-formatted",
        *scram,
    )
    result = subprocess.run(
        command, capture_output=True, text=True, umask=PRIVATE_UMASK, check=False
    )
    if result.returncode != 0:
        output = _without_secrets(result.stdout + result.stderr, secrets)
        raise StackError(f"Kafka's StorageTool could not format {layout.data}:\n{output}")
    layout.users_file.write_text("".join(f"{name}\n" for name in secrets.names))


def _without_secrets(output: str, secrets: StackSecrets) -> str:
    """The tail of a tool's output, with any password it echoed masked, and without the
    bootstrap records Kafka 4's formatter prints (every principal's salt and SCRAM keys)."""
    for password in secrets.all_passwords():
        output = output.replace(password, "******")
    lines = [line for line in output.splitlines() if not line.startswith(BOOTSTRAP_RECORDS)]
    return "\n".join(lines[-30:])


def known_users(layout: KafkaLayout) -> set[str]:
    try:
        return {line.strip() for line in layout.users_file.read_text().splitlines() if line}
    except FileNotFoundError:
        return set()


def add_users(layout: KafkaLayout, secrets: StackSecrets) -> list[str]:
    """Give the running broker SCRAM credentials for principals added to the contract since the
    stack was formatted (Kafka's ConfigCommand, as the admin). Returns the names added."""
    missing = [name for name in secrets.names if name not in known_users(layout)]
    if not missing:
        return []
    for name in missing:
        password = secrets.credentials(name).password.get_secret_value()
        # The password goes in a file only we can read, not on a command line others can see.
        with tempfile.TemporaryDirectory(dir=layout.base) as scratch:
            config_file = Path(scratch) / "scram.properties"
            write_private(config_file, f"{SCRAM_MECHANISM}=password={password}\n")
            command = tool_command(
                layout,
                CONFIG_COMMAND,
                "--bootstrap-server",
                layout.bootstrap,
                "--command-config",
                str(layout.admin_properties),
                "--alter",
                "--entity-type",
                "users",
                "--entity-name",
                name,
                "--add-config-file",
                str(config_file),
            )
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = _without_secrets(result.stdout + result.stderr, secrets)
            raise StackError(f"Kafka's ConfigCommand could not add the user {name}:\n{output}")
        with layout.users_file.open("a") as users:
            users.write(f"{name}\n")
    return missing


def process_spec(layout: KafkaLayout, log_file: Path, pid_file: Path) -> ProcessSpec:
    java = shutil.which("java") or "java"
    argv = (
        java,
        "-Xmx512m",
        "-Xms512m",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        "-cp",
        _classpath(layout),
        _log_config(layout),
        "kafka.Kafka",
        str(layout.server_properties),
    )
    return ProcessSpec(
        name="kafka",
        argv=argv,
        pid_file=pid_file,
        log_file=log_file,
        cmdline_markers=("kafka.Kafka", str(layout.server_properties)),
    )


def prepare(layout: KafkaLayout, secrets: StackSecrets) -> None:
    install(layout)
    write_config(layout, secrets)
    format_storage(layout, secrets)


def is_ready(bootstrap: str, client_options: dict[str, Any] | None = None) -> bool:
    """Whether a client can log in and list topics; a cheap TCP check first keeps aiokafka
    quiet."""
    host, _, port = bootstrap.rpartition(":")
    if not port_accepts(int(port), host or "127.0.0.1"):
        return False
    try:
        run_async(_list_topics(bootstrap, client_options or {}))
    except (TimeoutError, KafkaError, OSError):
        return False
    return True


async def _list_topics(bootstrap: str, client_options: dict[str, Any]) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=5000, **client_options
    )
    try:
        await admin.start()
        await admin.list_topics()
    finally:
        await admin.close()


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end from sync code, also when called inside a running loop
    (an async test fixture): then it runs on a thread with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def create_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    replication_factor: int | None = None,
    client_options: dict[str, Any] | None = None,
    retry_for_s: float = 30.0,
) -> list[str]:
    """Create the topics that are missing and return their names; existing ones stay as they
    are. With no replication factor given, it is min(3, brokers in the cluster)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=15000, **(client_options or {})
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for_s
    try:
        await admin.start()
        if replication_factor is None:
            brokers = len((await admin.describe_cluster())["brokers"])
            replication_factor = max(1, min(3, brokers))
        created: list[str] = []
        while True:
            existing = set(await admin.list_topics())
            missing = [spec for spec in specs if spec.name not in existing]
            if not missing:
                return created
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name, spec.partitions, replication_factor, topic_configs=spec.config
                    )
                    for spec in missing
                ]
            )
            retry: list[str] = []
            failures: list[str] = []
            for entry in response.topic_errors:
                # (topic, code) in v0, (topic, code, message) from v1 on.
                topic, code = entry[0], entry[1]
                message = entry[2] if len(entry) > 2 else ""
                if code == 0:
                    created.append(topic)
                elif code in RETRIABLE_CREATE_ERRORS:
                    retry.append(topic)
                elif code != TOPIC_ALREADY_EXISTS:
                    failures.append(f"{topic}: error {code} {message or ''}".strip())
            if failures:
                raise StackError(f"could not create topics on {bootstrap}: {'; '.join(failures)}")
            if not retry:
                return created
            if loop.time() > deadline:
                raise StackError(f"topics {', '.join(retry)} were still not created on {bootstrap}")
            await asyncio.sleep(0.5)
    except KafkaError as error:
        raise StackError(
            f"Kafka at {bootstrap} failed while creating topics: {type(error).__name__}: {error}"
        ) from error
    finally:
        await admin.close()
