"""Committed files generated from the contract (JSON Schemas, AsyncAPI): write, and detect drift."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

Render = Callable[[], dict[str, str]]


def export(directory: Path, render: Render) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render().items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def drift(directory: Path, render: Render, pattern: str) -> list[str]:
    """Files that differ from what the models render: missing, changed, or left over."""
    expected = render()
    problems = []
    for name, content in expected.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"{name}: differs from the model")
    problems.extend(
        f"{path.name}: no longer generated"
        for path in sorted(directory.glob(pattern))
        if path.name not in expected
    )
    return problems


def main(
    argv: list[str] | None, *, description: str, default_dir: Path, render: Render, pattern: str
) -> int:
    """`export [DIR]` writes the files; `check [DIR]` exits 1 naming each drifted file."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("command", choices=["export", "check"])
    parser.add_argument("directory", nargs="?", type=Path, default=default_dir)
    args = parser.parse_args(argv)
    if args.command == "export":
        for path in export(args.directory, render):
            print(path)
        return 0
    problems = drift(args.directory, render, pattern)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("run `make schemas` and commit the result", file=sys.stderr)
    return 1 if problems else 0
