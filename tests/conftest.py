"""Suite-wide fixtures: a fresh node data dir, and a check for leaked writer threads."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMNODE = [sys.executable, "-m", "node.cli.main"]


@pytest.fixture(autouse=True)
def _no_leaked_writers() -> Iterator[None]:
    """Fail a test that leaves a store's writer thread running (CONVENTIONS.md, 6)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [t.name for t in threading.enumerate()
              if t.ident not in before and t.name.startswith("examnode-") and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


def run_cli(*args: str | Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the examnode CLI in a subprocess and return its result."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([*EXAMNODE, *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, check=False)


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    """Return the data dir of a freshly initialised node (centre DEMO, free port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "node"
    result = run_cli("init", "--data", data, "--center", "DEMO", "--name", "hall-1",
                     "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    return data
