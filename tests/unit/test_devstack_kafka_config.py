"""The local stack's Kafka: the jars Maven copies are the version the stack names, and what
its tools print reaches no error message with a secret in it."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lotline.devstack import LocalStack, StackSettings, kafka

MAVEN = "{http://maven.apache.org/POM/4.0.0}"


def test_the_pom_fetches_the_kafka_the_stack_names() -> None:
    """The jars land in `kafka-<KAFKA_VERSION>`: a pom on another version would fill that
    directory with the wrong broker."""
    pom = ET.parse(kafka.POM).getroot()
    properties = pom.find(f"{MAVEN}properties")
    assert properties is not None
    assert properties.findtext(f"{MAVEN}kafka.version") == kafka.KAFKA_VERSION
    artifacts = {
        dependency.findtext(f"{MAVEN}artifactId"): dependency.findtext(f"{MAVEN}version")
        for dependency in pom.iter(f"{MAVEN}dependency")
    }
    assert artifacts["kafka_2.13"] == artifacts["kafka-tools"] == "${kafka.version}"
    # Kafka 4 has no Log4j 1: the SLF4J binding is Log4j 2's, and no reload4j comes along.
    assert "log4j-slf4j-impl" in artifacts
    assert not {"reload4j", "slf4j-reload4j"} & set(artifacts)


def test_a_failed_format_shows_neither_passwords_nor_scram_keys(tmp_path: Path) -> None:
    """Kafka 4's StorageTool prints the records it formats with, each principal's salt and
    SCRAM keys among them; the stack's error message (a failed format's output) drops them."""
    cache = StackSettings().cache_dir
    stack = LocalStack(StackSettings(stack_dir=tmp_path / "stack", cache_dir=cache))
    if not stack.kafka.installed_marker.exists():
        pytest.skip("Kafka's jars are not in the cache yet (the first `up` fetches them)")
    stack.make_private()
    kafka.write_config(stack.kafka, stack.secrets)
    admin = stack.secrets.admin
    command = kafka.tool_command(
        stack.kafka,
        kafka.STORAGE_TOOL,
        "format",
        "-t",
        kafka.cluster_id(stack.kafka),
        "-c",
        str(stack.kafka.server_properties),
        "--add-scram",
        f"SCRAM-SHA-512=[name={admin.username},password={admin.password.get_secret_value()}]",
    )
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    output = result.stdout + result.stderr
    assert "storedKey=" in output, "the formatter no longer prints its records: drop the filter"
    shown = kafka._without_secrets(output, stack.secrets)
    assert "storedKey=" not in shown
    assert "salt=" not in shown
    assert admin.password.get_secret_value() not in shown
    assert "Formatting metadata directory" in shown
