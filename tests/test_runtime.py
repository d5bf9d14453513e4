"""A node as a real process: serve, stop cleanly on SIGTERM/SIGINT, and `make run`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from node.config import load_config
from tests.conftest import EXAMNODE, ROOT, run_cli


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as r:  # loopback only
        data: dict[str, object] = json.loads(r.read())
        return data


def _wait_health(url: str, proc: subprocess.Popen[str], limit: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"node exited early ({proc.returncode}): {out}\n{err}")
        try:
            return _get(url)
        except OSError:
            time.sleep(0.1)
    raise AssertionError("node did not answer in time")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_and_stops_cleanly(node_dir: Path, sig: signal.Signals) -> None:
    cfg = load_config(node_dir, {})
    base = f"http://{cfg.http.host}:{cfg.http.port}"
    proc = subprocess.Popen([*EXAMNODE, "run", "--data", str(node_dir)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        health = _wait_health(f"{base}/api/health/", proc)
        assert health["status"] == "ok"
        assert health["center"] == "DEMO"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"{base}/api/docs/" in out
    assert "stopped" in err
    with pytest.raises(urllib.error.URLError):
        _get(f"{base}/api/health/")
    verify = run_cli("verify", "--data", node_dir)
    assert verify.returncode == 0, verify.stdout


def test_make_run_initialises_once_and_serves(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / ".installed").exists():
        subprocess.run(["make", "-C", str(ROOT), "install"], check=True, capture_output=True)
    port = _free_port()
    data = tmp_path / "data"
    env = {**os.environ, "NODE_HTTP_PORT": str(port), "NODE_DISCOVERY_MDNS": "false"}
    for attempt in range(2):
        proc = subprocess.Popen(["make", "-s", "-C", str(ROOT), "run", f"DATA={data}"],
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, start_new_session=True)
        try:
            health = _wait_health(f"http://127.0.0.1:{port}/api/health/", proc)
            assert health["center"] == "DEMO"
            os.killpg(proc.pid, signal.SIGTERM)
            out, _err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert ("initialised node" in out) == (attempt == 0), out
        assert f"http://127.0.0.1:{port}/" in out
    assert (data / "node.key").exists()
