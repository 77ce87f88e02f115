"""Session-wide services for the tests: a real GCS emulator server process.

The emulator (``gcp-storage-emulator``) runs in memory on a free loopback port; tests talk to it through the
real google-cloud-storage client, selected by ``STORAGE_EMULATOR_HOST``. Each test that asks for ``gcs_bucket``
gets a fresh bucket, so tests never see each other's objects.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gcp-storage-emulator did not listen on port {port} within {timeout}s")


@pytest.fixture(scope="session")
def gcs_emulator() -> str:
    """Start the emulator server for the session; returns its ``host:port``."""
    exe = shutil.which("gcp-storage-emulator") or str(Path(sys.executable).with_name("gcp-storage-emulator"))
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc)
        host = f"http://127.0.0.1:{port}"
        os.environ["STORAGE_EMULATOR_HOST"] = host
        os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "savflow-test")
        yield host
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.environ.pop("STORAGE_EMULATOR_HOST", None)


@pytest.fixture()
def gcs_bucket(gcs_emulator: str) -> str:
    """A fresh, empty bucket on the emulator; returns ``gs://name``."""
    from savflow.common.storage import gcs_client

    name = f"t-{uuid.uuid4().hex[:12]}"
    gcs_client().create_bucket(name)
    return f"gs://{name}"


@pytest.fixture(params=["local", "gcs"])
def store_root(request, tmp_path: Path) -> str:
    """The same test against a temporary directory and against an emulator bucket."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("gcs_bucket") + "/root"


@pytest.fixture(scope="session")
def sample_manual_json() -> Path:
    return DATA / "sav_sample" / "sav_000001_manual.json"


@pytest.fixture()
def faulty_gcs(gcs_emulator: str, gcs_bucket: str, monkeypatch):
    """A fresh emulator bucket seen through a :class:`fault_proxy.FaultProxy` (15% faults, seed 0; tests may
    change ``proxy.rate``), with the retry backoff of :mod:`savflow.common.storage_gcs` cut to milliseconds;
    yields ``(proxy, "gs://bucket")``."""
    from fault_proxy import FaultProxy
    from savflow.common import storage_gcs

    with FaultProxy(gcs_emulator, rate=0.15, seed=0, stall_s=0.2) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        monkeypatch.setattr(storage_gcs, "_clients", {})  # a fresh client that sees the proxy
        monkeypatch.setattr(storage_gcs, "RETRY_INITIAL_S", 0.01)
        monkeypatch.setattr(storage_gcs, "RETRY_MAXIMUM_S", 0.1)
        monkeypatch.setattr(storage_gcs, "RETRY_DEADLINE_S", 30.0)
        yield proxy, gcs_bucket


def pytest_terminal_summary(terminalreporter) -> None:
    """The reliability table of this run (tests/reliability.py), when tests recorded figures."""
    import reliability

    lines = reliability.table()
    if lines:
        terminalreporter.section("reliability (issue 12): faults, kills and bad inputs")
        for line in lines:
            terminalreporter.write_line(line)
