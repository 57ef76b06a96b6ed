"""The local stack's Kafka version is one: the jars Maven copies are the version the stack names."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lotline.devstack import kafka

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
