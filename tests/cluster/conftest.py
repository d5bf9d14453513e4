"""Fixtures of the cluster tests: network-namespace labs that are always torn down.

These tests need root (``ip netns``, veth, bridges), as CI has. Elsewhere they
are skipped with the reason; under ``CI=true`` a missing capability fails
instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.lab import Lab, leftovers

MakeLab = Callable[..., Lab]


def _missing_netns() -> str | None:
    """Return why namespace labs cannot be built here, or None."""
    for tool in ("ip", "bridge"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not on PATH"
    if os.geteuid() != 0:
        return "network-namespace labs need root (CI runs as root)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def require(reason: str | None) -> None:
    """Fail, with the reason, when the test cannot run here (never skip silently)."""
    if reason is not None:
        pytest.fail(f"cluster tests cannot run: {reason} (make test needs root, as CI has)")


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[MakeLab]:
    """Return ``make(n, multicast=True)`` building an n-namespace lab; all are torn down."""
    require(_missing_netns())
    labs: list[Lab] = []

    def make(size: int, *, multicast: bool = True) -> Lab:
        lab = Lab(size, tmp_path / f"lab{len(labs)}", multicast=multicast)
        labs.append(lab)  # before setup: a half-built lab is torn down too
        lab.root.mkdir()
        lab.setup()
        return lab

    yield make
    for lab in labs:
        lab.teardown()
    left = [name for lab in labs for name in leftovers(lab.tag)]
    assert not left, f"lab teardown left namespaces or links behind: {left}"
