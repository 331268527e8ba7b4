"""Ctrl-C during an export: `gpux build` ends the export at once and leaves nothing half-placed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import publish, write_manifest

pytestmark = pytest.mark.convert  # exports with torch, or runs what it exported


def children(pid: int) -> set[int]:
    """The direct child processes of `pid` (Linux /proc)."""
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            pass
    return kids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc")
@pytest.mark.parametrize("to", ["command", "group"])
def test_ctrl_c_during_an_export_stops_it_at_once(hub, repo_id, tmp_path, gpux_home, to):
    """SIGINT to the command alone (`kill -INT`), or to its whole process group as a terminal's Ctrl-C sends it."""
    publish(hub, repo_id, "bert")
    write_manifest(tmp_path, {"m": {"source": f"hf:{repo_id}"}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuxbuild", "build"],
        cwd=tmp_path,
        start_new_session=to == "group",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    # The export has begun once its scratch folder exists inside the build's staging folder.
    while not list((gpux_home / "tmp").glob("build-*/gpux-onnx-*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    workers = children(proc.pid)
    assert workers, "no export process"
    if to == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert not any(alive(pid) for pid in workers)  # the export process did not outlive the command
    # The export did not run on to completion behind the interrupt: no artifact, nothing staged, no lock entry.
    assert list((gpux_home / "artifacts").glob("*")) == [] and list((gpux_home / "tmp").glob("build-*")) == []
    lock = tmp_path / "gpux.lock"
    assert not lock.exists() or "artifact" not in lock.read_text()
