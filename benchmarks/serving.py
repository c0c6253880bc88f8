"""`facedb serve` in a process of its own on a free loopback port, for the benchmarks that
measure the service from outside (load.py, request_memory.py)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def serving(
    facedb_args: list[str], env: dict, cwd: Path | None = None, **popen
) -> Iterator[tuple[subprocess.Popen, str]]:
    """The service started with `python -m facedb <facedb_args> serve`, once /healthz answers
    (at most 120 s); yields the process and its URL, and stops it with SIGTERM after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "facedb", *facedb_args, "serve", "--port", str(port)], cwd=cwd, env=env, **popen
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield server, url
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
