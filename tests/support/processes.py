"""Processes the tests start and stop: servers on 127.0.0.1 (gpux serve, the storage engines)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, *, timeout: float, what: str) -> None:
    """Poll `ready` until it says yes; RuntimeError naming `what` when `proc` exits or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited (status {proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready after {timeout:.0f} s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    """Stop a server: SIGTERM, then SIGKILL when it has not ended after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def missing_server(why: str) -> None:
    """Skip a test whose storage engine is not installed; fail it where the set-up must have installed it
    (GPUX_SERVERS_REQUIRED=1, as scripts/test.sh sets), so that CI cannot pass by skipping."""
    if os.environ.get("GPUX_SERVERS_REQUIRED") == "1":
        pytest.fail(why)
    pytest.skip(why)
