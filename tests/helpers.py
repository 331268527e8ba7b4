"""Helpers for end-to-end tests: run the real CLI in a subprocess, publish tiny models on the test Hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tinymodels import make_repo

CARDS = {
    "bert": {"pipeline_tag": "text-classification", "library_name": "transformers", "license": "apache-2.0"},
    "sentence-transformers": {"pipeline_tag": "sentence-similarity", "library_name": "sentence-transformers", "license": "apache-2.0"},
}


def gpux(*args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None, timeout: float = 600):
    """Run `python -m gpuxbuild ARGS` like a user would; returns the CompletedProcess."""
    r = subprocess.run([sys.executable, "-m", "gpuxbuild", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"gpux {' '.join(args)} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def publish(hub, repo_id: str, kind: str = "bert", *, card: dict | None = None, seed: int = 0, **kw) -> str:
    """Create `repo_id` on the hub holding a tiny model of `kind`; returns the commit sha of main."""
    hub.create_repo(repo_id, card=card if card is not None else CARDS.get(kind, {}), **kw)
    return hub.commit(repo_id, make_repo(kind, seed=seed), message=f"add {kind}")


def write_manifest(project: Path, models: dict, defaults: dict | None = None) -> Path:
    """Write gpux.models.yml with `models` (name -> entry)."""
    project.mkdir(parents=True, exist_ok=True)
    doc = {"version": 1, "models": models}
    if defaults:
        doc["defaults"] = defaults
    path = project / "gpux.models.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def gets(hub, repo_id: str) -> dict[str, int]:
    """Downloads per file: GETs of small files (resolve) and of LFS files (CDN)."""
    out: dict[str, int] = {}
    for r in hub.requests("GET", repo=repo_id):
        if r.kind in ("resolve", "lfs"):
            out[r.path] = out.get(r.path, 0) + 1
    return out


def read_lock(project: Path) -> dict:
    return yaml.safe_load((project / "gpux.lock").read_text())
