"""The local stack's data directory is private: 0700 dirs, files only its owner may read.

Kafka's log segments and FerretDB's SQLite files hold customer references, so neither the
stack dir nor anything in it may be readable by another user of the machine. These tests use
a stack dir of their own and never touch the running stack."""

from __future__ import annotations

import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lotline.devstack import LocalStack, StackError, StackSettings, ferretdb, kafka
from lotline.devstack.process import ProcessSpec, launch


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def loose_tree(root: Path) -> dict[str, Path]:
    """A stack dir as an older stack left it: every dir 0755, every file 0644."""
    files = {
        "segment": root / "kafka" / "data" / "item-sold-0" / "00000000000000000000.log",
        "meta": root / "kafka" / "data" / "meta.properties",
        "sqlite": root / "ferretdb" / "sqlite" / "stock.sqlite",
        "wal": root / "ferretdb" / "sqlite" / "stock.sqlite-wal",
        "kafka_log": root / "logs" / "kafka.log",
        "pid": root / "run" / "kafka.pid",
        "token": root / "run" / "operator-token",
        "secrets": root / "secrets.json",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("customer C-7\n")
        path.chmod(0o644)
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)
    return files


@pytest.fixture
def listening_ports() -> Iterator[tuple[int, int, int]]:
    """Three ports something already listens on: `up` stops at its port check, before it
    would download, build or start anything."""
    sockets = []
    for _ in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sockets.append(sock)
    ports = tuple(s.getsockname()[1] for s in sockets)
    yield ports[0], ports[1], ports[2]
    for sock in sockets:
        sock.close()


def stack_in(stack_dir: Path, ports: tuple[int, int, int], cache_dir: Path) -> LocalStack:
    settings = StackSettings(
        stack_dir=stack_dir,
        cache_dir=cache_dir,
        kafka_port=ports[0],
        kafka_controller_port=ports[1],
        mongo_port=ports[2],
    )
    return LocalStack(settings)


def test_up_tightens_a_stack_dir_an_older_stack_left_open(
    tmp_path: Path, listening_ports: tuple[int, int, int]
) -> None:
    root = tmp_path / "stack"
    files = loose_tree(root)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not the stack's")
    outside.chmod(0o644)
    (root / "logs" / "linked.log").symlink_to(outside)
    stack = stack_in(root, listening_ports, tmp_path / "cache")

    with pytest.raises(StackError, match="already taken"):
        stack.up()

    assert mode(root) == 0o700
    for directory in (p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()):
        assert mode(directory) == 0o700, directory
    for name, path in files.items():
        assert mode(path) == 0o600, name
    # A link is not followed: what it points to is not the stack's to change.
    assert mode(outside) == 0o644


def test_a_new_stack_dir_and_what_the_stack_writes_there_are_private(
    tmp_path: Path, listening_ports: tuple[int, int, int]
) -> None:
    root = tmp_path / "fresh" / "stack"
    stack = stack_in(root, listening_ports, tmp_path / "cache")
    with pytest.raises(StackError):
        stack.up()
    assert mode(root) == 0o700

    kafka.write_config(stack.kafka, stack.secrets)
    for path in (stack.kafka.base, stack.kafka.data):
        assert mode(path) == 0o700, path
    for path in (stack.secrets.path, stack.kafka.server_properties, stack.kafka.admin_properties):
        assert mode(path) == 0o600, path


def test_ferretdbs_sqlite_dir_is_private(tmp_path: Path) -> None:
    cache = StackSettings().cache_dir
    layout = ferretdb.FerretDBLayout(cache_dir=cache, stack_dir=tmp_path / "stack", port=1)
    if not (layout.built_marker.exists() and layout.binary.exists()):
        pytest.skip("FerretDB is not built in the cache yet (the first `up` builds it)")
    ferretdb.prepare(layout)
    assert mode(layout.sqlite_dir.parent) == 0o700
    assert mode(layout.sqlite_dir) == 0o700


def test_a_launched_process_writes_private_files_and_logs(tmp_path: Path) -> None:
    """The umask the stack gives Kafka and FerretDB: the files they create are 0600."""
    root = tmp_path / "stack"
    data = root / "ferretdb" / "sqlite" / "written-by-the-process.sqlite"
    data.parent.mkdir(parents=True)
    script = "import sys; open(sys.argv[1], 'w').write('customer C-7')"
    spec = ProcessSpec(
        name="writer",
        argv=(sys.executable, "-c", script, str(data)),
        pid_file=root / "run" / "writer.pid",
        log_file=root / "logs" / "writer.log",
        cmdline_markers=(script,),
    )
    pid = launch(spec)
    deadline = time.monotonic() + 30
    while not (data.exists() and data.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert data.read_text() == "customer C-7", f"pid {pid} wrote nothing"
    assert mode(data) == 0o600
    assert mode(spec.log_file) == 0o600
    assert mode(spec.log_file.parent) == 0o700
    assert mode(spec.pid_file.parent) == 0o700


def test_kafkas_formatted_log_dir_is_private(tmp_path: Path) -> None:
    """Kafka's own StorageTool writes the log dir's first files; it runs under the private
    umask like the broker."""
    cache = StackSettings().cache_dir
    stack = LocalStack(StackSettings(stack_dir=tmp_path / "stack", cache_dir=cache))
    if not stack.kafka.installed_marker.exists():
        pytest.skip("Kafka's jars are not in the cache yet (the first `up` fetches them)")
    stack.make_private()
    kafka.write_config(stack.kafka, stack.secrets)
    kafka.format_storage(stack.kafka, stack.secrets)
    written = [p for p in stack.kafka.data.rglob("*") if p.is_file()]
    assert written, "StorageTool wrote nothing"
    # 0600, or 0400 for what Kafka 4 writes read-only (the bootstrap snapshot): its owner's.
    assert {p.name: mode(p) & 0o077 for p in written} == {p.name: 0 for p in written}
    assert all(mode(p) & 0o400 for p in written)
    assert mode(stack.kafka.data) == 0o700
