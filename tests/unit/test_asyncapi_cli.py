"""The committed AsyncAPI documents are valid for the AsyncAPI CLI, the tool integrators use.

The CLI (`@asyncapi/cli`, pinned in tools/asyncapi) is installed into the cache by
`tools/asyncapi/install`, which `.ci/run` runs. Without it the tests skip on a developer's
machine, and install it in CI (CI=true), failing if that does not work.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lotline.events import asyncapi

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "tools" / "asyncapi" / "install"
CACHE = Path(os.environ.get("LOTLINE_CACHE_DIR", Path.home() / ".cache" / "lotline"))
CLI = CACHE / "tools" / "asyncapi" / "node_modules" / ".bin" / "asyncapi"
DOCUMENTS = sorted(asyncapi.DEFAULT_DIR.glob("*.asyncapi.json"))


@pytest.fixture(scope="module")
def cli() -> Path:
    if not CLI.exists():
        if os.environ.get("CI") != "true":
            pytest.skip(f"the AsyncAPI CLI is not installed: run {INSTALL.relative_to(ROOT)}")
        # In CI a missing CLI is installed, never skipped: the check must run there.
        subprocess.run([str(INSTALL)], check=True, stdout=subprocess.DEVNULL)
    assert CLI.exists(), f"{INSTALL} did not install {CLI}"
    return CLI


def validate(cli: Path, document: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`asyncapi validate`, warnings failing too, with its usage metrics off (they would
    write to ~/.asyncapi-analytics and try the network)."""
    metrics = tmp_path / "asyncapi-analytics.json"
    metrics.write_text(json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true"}))
    env = {
        **os.environ,
        "ASYNCAPI_METRICS_CONFIG_PATH": str(metrics),
        "SUPPRESS_NO_CONFIG_WARNING": "1",
    }
    return subprocess.run(
        [str(cli), "validate", str(document), "--fail-severity", "warn"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def test_every_principal_has_a_committed_document() -> None:
    assert [path.name for path in DOCUMENTS] == sorted(asyncapi.rendered())


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_document_is_valid_asyncapi(cli: Path, document: Path, tmp_path: Path) -> None:
    result = validate(cli, document, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout


def test_an_invalid_document_fails(cli: Path, tmp_path: Path) -> None:
    """The check has teeth: a Kafka binding it does not know and a dangling reference fail."""
    document = asyncapi.specification("pos")
    bindings = document["components"]["messages"]["item-sold.binary"]["bindings"]["kafka"]
    bindings["partitioner"] = "murmur2_random"
    document["operations"]["item-sold.send"]["channel"]["$ref"] = "#/channels/item-lost"
    broken = tmp_path / "broken.asyncapi.json"
    broken.write_text(json.dumps(document))
    result = validate(cli, broken, tmp_path)
    assert result.returncode != 0
    assert "#/channels/item-lost" in result.stdout + result.stderr
