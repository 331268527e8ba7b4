"""Processes the tests start and stop: servers on 127.0.0.1 (gpux serve, the storage engines)."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections and to bind(0)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(span: int = 1) -> int:
    """A port P on 127.0.0.1 such that P..P+span-1 are free now. It is drawn at random outside the kernel's
    ephemeral range: a port from that range can be taken by any outgoing connection (another test worker's, the
    starting server's own) between being chosen here and being bound by the server, which then exits."""
    low, high = _ephemeral_range()
    choices = range(20000, low - span) if low - span > 20000 else range(high + 1, 65536 - span)
    draw = random.SystemRandom()  # not the tests' `random`, which a test may seed alike in every worker
    for _ in range(200):
        base = draw.choice(choices)
        if all(_bindable(p) for p in range(base, base + span)):
            return base
    raise RuntimeError(f"no {span} free consecutive ports on 127.0.0.1")


class ExitedEarly(RuntimeError):
    """A server process ended before it was ready."""


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a server's log, for an error that says why it did not start."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def start_retrying(start: Callable[[], None], attempts: int = 3) -> None:
    """Call `start` again, on new ports, when its server exits before it is ready: on a busy machine another
    process can bind a chosen port first. Other failures (not ready in time) are raised at once."""
    for attempt in range(attempts):
        try:
            start()
            return
        except ExitedEarly:
            if attempt == attempts - 1:
                raise


def wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen, *, timeout: float, what: str, log: Path | None = None
) -> None:
    """Poll `ready` until it says yes; ExitedEarly (with the end of `log`) when `proc` exits, RuntimeError when
    `timeout` seconds pass, each naming `what`."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            tail = log_tail(log) if log is not None else ""
            raise ExitedEarly(
                f"{what} exited (status {proc.returncode})" + (f"; its log ends:\n{tail}" if tail else "")
            )
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
