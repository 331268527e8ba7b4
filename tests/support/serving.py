"""A real `gpux serve`-like uvicorn process on 127.0.0.1 for the server tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(artifacts: Path | dict[str, Path], **env: str):
    """Serve an artifact folder (or {name: folder}) in a subprocess, limits from `env`; yields (base URL, process)."""
    port = free_port()
    target = repr({k: str(v) for k, v in artifacts.items()} if isinstance(artifacts, dict) else str(artifacts))
    code = f"from gpuxbuild.runtime import serve; serve({target}, host='127.0.0.1', port={port})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {proc.stdout.read() if proc.poll() is not None else ''}")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
