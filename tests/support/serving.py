"""A real `gpux serve` (or the library's `serve`) in a process of its own on 127.0.0.1, for the server tests."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
from processes import free_port, stop, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@contextmanager
def serving_process(args: list[str], port: int, *, cwd: Path | None = None, env: dict | None = None) -> Iterator:
    """Run the server command `args`, which listens on `port`; yields (base URL, process) once `GET /health`
    answers 200, and stops it afterwards."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        try:
            wait_until(healthy, proc, timeout=60, what="the server")
        except RuntimeError as exc:
            output = proc.stdout.read() if proc.stdout and proc.poll() is not None else ""
            raise RuntimeError(f"{exc}: {output}") from None
        yield base, proc
    finally:
        stop(proc)


@contextmanager
def serving(artifacts: Path | dict[str, Path], **env: str) -> Iterator:
    """Serve an artifact folder (or {name: folder}) in a subprocess, limits from `env`; yields (base URL, process)."""
    port = free_port()
    target = repr({k: str(v) for k, v in artifacts.items()} if isinstance(artifacts, dict) else str(artifacts))
    code = f"from gpuxbuild.runtime import serve; serve({target}, host='127.0.0.1', port={port})"
    with serving_process([sys.executable, "-c", code], port, env={**os.environ, **env}) as served:
        yield served


@contextmanager
def gpux_serving(*args: str, cwd: Path) -> Iterator:
    """`gpux serve ARGS` run from `cwd` on a free port; yields (base URL, process)."""
    port = free_port()
    command = [sys.executable, "-m", "gpuxbuild", "serve", *args, "--port", str(port)]
    with serving_process(command, port, cwd=cwd) as served:
        yield served
