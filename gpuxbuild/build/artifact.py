"""Artifacts: the build key, the artifact manifest (artifact.json) and atomic placement in the store.

build key = digest of everything that decides an artifact's bytes: the source files' sha256, the
source commit, the resolved task and library, the conversion and runtime options, the model name
(it is written into gpux.yml), the converter toolchain versions and the artifact format version.
The artifact digest is the sha256 of artifact.json, which lists every other file with its sha256.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import metadata
from pathlib import Path

from gpuxbuild.hashing import digest, sha256_bytes, sha256_file
from gpuxbuild.store.objects import Store, fsync_dir

ARTIFACT_FORMAT = 1
ARTIFACT_MANIFEST = "artifact.json"
# Options that change whether a build passes, not what it produces.
_NOT_IN_KEY = ("validate", "atol")


@cache  # versions do not change while a process runs, and metadata lookups scan sys.path
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def toolchain_versions(conversion: str, convert: dict) -> dict[str, str]:
    """Versions of the packages that produce an artifact's bytes (read from metadata, nothing imported)."""
    tools = {"gpuxbuild-artifact-format": str(ARTIFACT_FORMAT), "onnx": _version("onnx")}
    if conversion == "export":
        for dist in ("torch", "transformers", "optimum", "optimum-onnx"):
            tools[dist] = _version(dist)
    if convert.get("optimize") is not None or convert.get("quantize") or (conversion == "export" and convert.get("dtype") == "fp16"):
        tools["onnxruntime"] = _version("onnxruntime")
    return dict(sorted(tools.items()))


def build_key(
    *, name: str, source: dict, files: list[dict], task: str, library: str, options: dict, conversion: str, toolchain: dict
) -> str:
    """The digest that addresses an artifact in the store."""
    convert = {k: v for k, v in options.get("convert", {}).items() if k not in _NOT_IN_KEY}
    return digest({
        "format": ARTIFACT_FORMAT,
        "name": name,
        "source": source,
        "files": sorted((f["path"], f["sha256"]) for f in files),
        "task": task,
        "library": library,
        "conversion": conversion,
        "convert": convert,
        "runtime": options.get("runtime", {}),
        "trust_remote_code": options.get("trust_remote_code", False),
        "toolchain": toolchain,
    })


def artifact_path(store: Store, key: str) -> Path:
    return store.root / "artifacts" / key.removeprefix("sha256:")


def write_manifest(folder: Path, *, task: str, graphs: dict, source: dict, library: str, key: str, toolchain: dict, name: str) -> str:
    """Write artifact.json listing every file of `folder`; return the artifact digest."""
    files = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != ARTIFACT_MANIFEST:
            files.append({"path": rel, "sha256": sha256_file(p), "size": p.stat().st_size})
    doc = {
        "format": ARTIFACT_FORMAT,
        "name": name,
        "task": task,
        "library": library,
        "graphs": dict(sorted(graphs.items())),
        "source": source,
        "build_key": key,
        "toolchain": toolchain,
        "files": files,
    }
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
    (folder / ARTIFACT_MANIFEST).write_bytes(data)
    return "sha256:" + sha256_bytes(data)


def artifact_digest(folder: Path) -> str:
    """The digest of a placed artifact (sha256 of its artifact.json)."""
    return "sha256:" + sha256_file(folder / ARTIFACT_MANIFEST)


def publish(staging: Path, dest: Path) -> None:
    """Make the staged artifact read-only and rename it into place (atomic on one filesystem)."""
    for p in staging.rglob("*"):
        if p.is_file():
            os.chmod(p, 0o444)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staging, dest)
    fsync_dir(dest.parent)
