"""The one readiness wait of the devstack, the tests and the bench: ready, died, too slow."""

from __future__ import annotations

from pathlib import Path

import pytest

from lotline.devstack import StackError, wait_until_ready
from lotline.devstack.process import ProcessDied


def test_returns_once_ready(tmp_path: Path) -> None:
    answers = iter([False, False, True])
    wait_until_ready("svc", lambda: True, lambda: next(answers), 5, tmp_path / "svc.log")


def test_a_process_that_dies_fails_at_once_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("starting\nboom: port in use\n")
    with pytest.raises(ProcessDied, match="svc exited while starting") as failure:
        wait_until_ready("svc", lambda: False, lambda: True, 60, log)
    assert "boom: port in use" in str(failure.value)


def test_too_slow_names_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="svc was not ready within 0 s"):
        wait_until_ready("svc", lambda: True, lambda: False, 0.3, tmp_path / "svc.log")
