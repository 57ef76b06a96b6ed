"""The local FerretDB (MongoDB wire protocol): its build from the Go module, flags and readiness."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

from lotline.devstack.process import ProcessSpec, StackError, port_accepts, private_dir

FERRETDB_VERSION = "1.24.2"
GO_MODULE = Path(__file__).resolve().parents[3] / "ferretdb"
FERRETDB_PACKAGE = "github.com/FerretDB/FerretDB/cmd/ferretdb"


@dataclass(frozen=True)
class FerretDBLayout:
    """Where one local FerretDB keeps its binary and data."""

    cache_dir: Path
    stack_dir: Path
    port: int

    @property
    def home(self) -> Path:
        return self.cache_dir / f"ferretdb-{FERRETDB_VERSION}"

    @property
    def binary(self) -> Path:
        return self.home / "ferretdb"

    @property
    def built_marker(self) -> Path:
        return self.home / ".complete"

    @property
    def sqlite_dir(self) -> Path:
        return self.stack_dir / "ferretdb" / "sqlite"

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"


def build(layout: FerretDBLayout) -> None:
    """Build the binary once from the committed go.mod/go.sum; the marker says it is whole.

    FerretDB panics at start without build/version/version.txt, which its module zip lacks, so
    the build vendors the module and writes that file into the vendored copy. It also patches
    one line there: see patch_sqlite_id_lookup.
    """
    if (
        layout.built_marker.exists()
        and layout.binary.exists()
        and layout.built_marker.read_text() == BUILT_MARKER
    ):
        return
    go = shutil.which("go")
    if go is None:
        raise StackError("`go` is not on PATH; the local stack builds FerretDB with Go 1.24+")
    for name in ("go.mod", "go.sum"):
        if not (GO_MODULE / name).exists():
            raise StackError(f"FerretDB's {name} is missing at {GO_MODULE / name}")
    build_dir = layout.home / "build"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    for name in ("go.mod", "go.sum"):
        shutil.copy2(GO_MODULE / name, build_dir / name)
    env = {**os.environ, "CGO_ENABLED": "0"}
    _go(build_dir, env, [go, "mod", "vendor"])
    version_file = build_dir / "vendor/github.com/FerretDB/FerretDB/build/version/version.txt"
    version_file.write_text(f"v{FERRETDB_VERSION}\n")
    patch_sqlite_id_lookup(build_dir / "vendor")
    patch_update_connection_release(build_dir / "vendor")
    partial = layout.home / "ferretdb.partial"
    _go(build_dir, env, [go, "build", "-mod=vendor", "-o", str(partial), FERRETDB_PACKAGE])
    partial.replace(layout.binary)
    shutil.rmtree(build_dir)
    layout.built_marker.write_text(BUILT_MARKER)


# What the cached binary was built from: a change of version or of the patches rebuilds it.
BUILT_MARKER = f"ferretdb {FERRETDB_VERSION} patches: sqlite-id-lookup, update-releases\n"
UPDATE_HANDLER = "github.com/FerretDB/FerretDB/internal/handler/msg_update.go"
UPDATE_STATEMENT = '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n'
SQLITE_METADATA = "github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata/metadata.go"
SQLITE_ID_COLUMN = "IDColumn = DefaultColumn + \"->'$._id'\""
SQLITE_ID_COLUMN_INDEXED = 'IDColumn = DefaultColumn + `->"_id"`'


def patch_sqlite_id_lookup(vendor: Path) -> None:
    """Make FerretDB's SQLite backend find documents by _id through its unique index.

    In 1.24.2 the _id index is on `_ferretdb_sjson->"_id"` but lookups, updates and deletes by
    _id filter on `_ferretdb_sjson->'$._id'`, an expression SQLite does not match to the index,
    so each of them scans the whole collection (20,000 upserts: 288 s unpatched, 7 s patched).
    Both expressions give the same value; only the spelling changes.
    """
    source = vendor / SQLITE_METADATA
    text = source.read_text()
    if SQLITE_ID_COLUMN not in text:
        raise StackError(f"FerretDB's {source} changed; the _id lookup patch no longer applies")
    source.chmod(0o644)
    source.write_text(text.replace(SQLITE_ID_COLUMN, SQLITE_ID_COLUMN_INDEXED))


def patch_update_connection_release(vendor: Path) -> None:
    """Make each statement of an update command give its database connection back.

    In 1.24.2 the update handler closes each statement's query with a `defer` inside its
    loop, so the connections (a pool of 100 per database) are only released when the whole
    command ends: a command of 100 statements, or a few concurrent ones adding up to 100 --
    two service instances writing at once -- wait forever for a connection, and every
    client of that database hangs with them. Closing the query once the statement is done
    (closing twice is harmless) releases it at once.
    """
    source = vendor / UPDATE_HANDLER
    text = source.read_text()
    if text.count(UPDATE_STATEMENT) != 1:
        raise StackError(f"FerretDB's {source} changed; the update patch no longer applies")
    source.chmod(0o644)
    source.write_text(text.replace(UPDATE_STATEMENT, UPDATE_STATEMENT + "\t\tcloser.Close()\n"))


def _go(build_dir: Path, env: dict[str, str], command: list[str]) -> None:
    result = subprocess.run(
        command, cwd=build_dir, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise StackError(f"`{' '.join(command[1:3])}` failed building FerretDB:\n{output}")


def process_spec(
    layout: FerretDBLayout, log_file: Path, pid_file: Path, postgresql_url: str | None = None
) -> ProcessSpec:
    """FerretDB on SQLite files in the stack dir, or on PostgreSQL when given its URL."""
    if postgresql_url is None:
        # WAL with synchronous=NORMAL: a commit is durable once in the WAL file, which
        # survives the FerretDB process dying (kill -9); it is synced to disk at checkpoints,
        # not on every commit. That is MongoDB's own default promise (its journal is synced
        # every 100 ms), and it makes each single-document write ~10x cheaper here.
        url = f"file:{layout.sqlite_dir}/?_pragma=synchronous(normal)"
        backend = ["--handler=sqlite", f"--sqlite-url={url}"]
        marker = f"--sqlite-url={url}"
    else:
        backend = ["--handler=postgresql", f"--postgresql-url={postgresql_url}"]
        marker = f"--postgresql-url={postgresql_url}"
    argv = (
        str(layout.binary),
        *backend,
        f"--listen-addr=127.0.0.1:{layout.port}",
        "--telemetry=disable",
        "--state-dir=-",
        "--debug-addr=-",
        # WARN would log every pymongo client close (FerretDB 1.x lacks endSessions).
        "--log-level=error",
    )
    return ProcessSpec(
        name="ferretdb",
        argv=argv,
        pid_file=pid_file,
        log_file=log_file,
        cmdline_markers=(str(layout.binary), marker),
    )


def prepare(layout: FerretDBLayout) -> None:
    build(layout)
    private_dir(layout.sqlite_dir.parent)
    private_dir(layout.sqlite_dir)


def is_ready(port: int) -> bool:
    if not port_accepts(port):
        return False
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{port}/",
        serverSelectionTimeoutMS=1000,
        connectTimeoutMS=1000,
        directConnection=True,
    )
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True
