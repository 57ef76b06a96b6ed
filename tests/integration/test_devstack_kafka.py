"""The local stack's Kafka against its running broker: its own tools (run from the Maven jars)
work with this Kafka version, and the broker logs through the config the stack writes."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from lotline.devstack import ADMIN, LocalStack, StackSecrets, kafka

from support import eventually

pytestmark = pytest.mark.infra


@pytest.fixture
def stack(infra) -> LocalStack:  # type: ignore[no-untyped-def]
    stack = LocalStack.from_env()
    if infra.secrets is None or stack.kafka.bootstrap != infra.kafka_bootstrap:
        pytest.skip("needs the local stack's broker and its admin login")
    return stack


def _delete_user(layout: kafka.KafkaLayout, name: str) -> None:
    command = kafka.tool_command(
        layout,
        kafka.CONFIG_COMMAND,
        "--bootstrap-server",
        layout.bootstrap,
        "--command-config",
        str(layout.admin_properties),
        "--alter",
        "--entity-type",
        "users",
        "--entity-name",
        name,
        "--delete-config",
        "SCRAM-SHA-512",
    )
    subprocess.run(command, capture_output=True, check=True)


async def test_a_principal_the_contract_gains_later_gets_its_login_on_the_next_up(
    stack: LocalStack, tmp_path: Path, run_id: str
) -> None:
    """`up` gives a principal added to the contract after the broker was formatted its SCRAM
    login with Kafka's ConfigCommand (whose class Kafka 4 moved out of core)."""
    # The stack's broker and jars, but a users file, scratch dir and admin config of its own,
    # so the stack's record of its users is left alone.
    layout = replace(stack.kafka, stack_dir=tmp_path)
    name = f"probe-{run_id.lower()}"
    probe = StackSecrets(
        tmp_path / "secrets.json",
        {ADMIN: stack.secrets.admin.password.get_secret_value(), name: secrets.token_urlsafe(32)},
    )
    kafka.write_config(layout, probe)
    layout.users_file.write_text(f"{ADMIN}\n")
    login = probe.credentials(name).client_options()
    assert not kafka.is_ready(layout.bootstrap, login), f"{name} logged in before it was added"
    try:
        assert kafka.add_users(layout, probe) == [name]
        assert kafka.known_users(layout) == {ADMIN, name}

        def logs_in() -> None:
            # The controller commits the credential; the broker applies it a moment later.
            assert kafka.is_ready(layout.bootstrap, login), f"{name} cannot log in"

        await eventually(logs_in)
    finally:
        _delete_user(layout, name)


def test_the_broker_logs_through_the_stacks_log_config(stack: LocalStack) -> None:
    """Kafka 4 reads only a Log4j 2 config: with any other the broker would log errors alone,
    and not the line that says it started."""
    log = stack.dir / "logs" / "kafka.log"
    last_start = log.read_text().rpartition("starting kafka")[2]
    assert "Kafka Server started" in last_start, f"{log} does not say the broker started"
