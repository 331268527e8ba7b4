"""What a build produces: the build key, and the artifact manifest (artifact.json) it writes. The stored
artifacts themselves (placement, checks) are gpuxbuild.store.artifacts.

build key = digest of everything that decides an artifact's bytes: the source files' sha256, the
source commit, the resolved task and library, the conversion and runtime options, the model name
(it is written into gpux.yml), the converter toolchain versions and the artifact format version.
The artifact digest is the sha256 of artifact.json, which lists every other file with its sha256.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path

from gpuxbuild.errors import IntegrityError
from gpuxbuild.hashing import digest, sha256_bytes, sha256_file
from gpuxbuild.store.artifacts import ARTIFACT_FORMAT, ARTIFACT_MANIFEST, ArtifactManifest
from gpuxbuild.store.files import FileEntry

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
    if (
        convert.get("optimize") is not None
        or convert.get("quantize")
        or (conversion == "export" and convert.get("dtype") == "fp16")
    ):
        tools["onnxruntime"] = _version("onnxruntime")
    return dict(sorted(tools.items()))


def build_key(
    *,
    name: str,
    source: dict,
    files: list[dict],
    task: str,
    library: str,
    options: dict,
    conversion: str,
    toolchain: dict,
) -> str:
    """The digest that addresses an artifact in the store."""
    convert = {k: v for k, v in options.get("convert", {}).items() if k not in _NOT_IN_KEY}
    return digest(
        {
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
        }
    )


def write_manifest(
    folder: Path, *, task: str, graphs: dict, source: dict, library: str, key: str, toolchain: dict, name: str
) -> str:
    """Write artifact.json listing every file of `folder`; return the artifact digest."""
    files = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != ARTIFACT_MANIFEST:
            files.append(FileEntry(rel, sha256_file(p), p.stat().st_size))
    manifest = ArtifactManifest(name, task, library, dict(sorted(graphs.items())), source, key, toolchain, files)
    data = manifest.to_json()
    (folder / ARTIFACT_MANIFEST).write_bytes(data)
    return "sha256:" + sha256_bytes(data)


def not_reproducible(name: str, found: str, recorded: str) -> IntegrityError:
    """The error for an artifact whose digest differs from the one gpux.lock records for the same build key."""
    return IntegrityError(
        f"model {name!r}: artifact {found} differs from {recorded} recorded in gpux.lock for the same inputs and "
        "toolchain: not reproducible, or a corrupted input: run `gpux cache verify`",
        "if the store is intact, the build is not reproducible here; to accept the new digest, delete the model's "
        "`artifact:` from gpux.lock and build again",
    )
