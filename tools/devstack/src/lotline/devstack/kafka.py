"""The local Kafka broker: its jars from Maven Central, its KRaft config, readiness and topics."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import uuid
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from lotline.devstack.process import ProcessSpec, StackError, port_accepts
from lotline.events.topics import TopicSpec

T = TypeVar("T")

KAFKA_VERSION = "3.9.1"
POM = Path(__file__).resolve().parents[3] / "kafka" / "pom.xml"

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
    def log4j_properties(self) -> Path:
        return self.base / "log4j.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.base / "cluster.id"

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


def write_config(layout: KafkaLayout) -> None:
    layout.base.mkdir(parents=True, exist_ok=True)
    layout.data.mkdir(parents=True, exist_ok=True)
    controller = f"127.0.0.1:{layout.controller_port}"
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller}",
        "listeners": f"PLAINTEXT://{layout.bootstrap},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{layout.bootstrap}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
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
    layout.server_properties.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
    # The broker's stdout is its log file, so WARN to the console is WARN to that file.
    layout.log4j_properties.write_text(
        "log4j.rootLogger=WARN, stdout\n"
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        # Say once that the broker is up, to make the log readable.
        "log4j.logger.kafka.server.KafkaRaftServer=INFO\n"
    )


def format_storage(layout: KafkaLayout) -> None:
    """Format the KRaft log dir once; a formatted dir has meta.properties."""
    if (layout.data / "meta.properties").exists():
        return
    java = _require("java", "a Java 17+ runtime, to run Kafka")
    command = [
        java,
        "-cp",
        _classpath(layout),
        f"-Dlog4j.configuration=file:{layout.log4j_properties}",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id(layout),
        "-c",
        str(layout.server_properties),
        "--ignore-formatted",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise StackError(f"Kafka's StorageTool could not format {layout.data}:\n{output}")


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
        f"-Dlog4j.configuration=file:{layout.log4j_properties}",
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


def prepare(layout: KafkaLayout) -> None:
    install(layout)
    write_config(layout)
    format_storage(layout)


def is_ready(bootstrap: str) -> bool:
    """Whether a client can list topics; a cheap TCP check first keeps aiokafka quiet."""
    host, _, port = bootstrap.rpartition(":")
    if not port_accepts(int(port), host or "127.0.0.1"):
        return False
    try:
        run_async(_list_topics(bootstrap))
    except (TimeoutError, KafkaError, OSError):
        return False
    return True


async def _list_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
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
