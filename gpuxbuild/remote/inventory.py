"""`gpux cache remote ls|verify`: what a remote cache holds, and whether every object is intact."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError
from gpuxbuild.remote.cache import ARTIFACTS, BLOBS, blob_key, parse_index

if TYPE_CHECKING:
    from gpuxbuild.remote.cache import RemoteCache

# Why an artifact's attachments (name -> bytes) do not belong to it (artifact.json, its digest), or None.
AttachedCheck = Callable[[dict, str, dict[str, bytes]], str | None]


@dataclass
class RemoteArtifact:
    remote: str  # the URL, credentials hidden
    build_key: str
    digest: str
    name: str
    task: str
    files: int
    size: int  # bytes of its files


@dataclass
class RemoteReport:
    artifacts: int = 0
    blobs: int = 0
    problems: list[str] = field(default_factory=list)  # one line each, naming the remote and the object

    def as_dict(self) -> dict:
        return asdict(self)


def _indexes(remotes: RemoteCache):
    """(spec, backend, build key, index bytes) of every artifact index of every remote, in order."""
    for spec in remotes.readers():
        backend = remotes.backend(spec)
        for key, _ in backend.list(ARTIFACTS):
            name = key.removeprefix(ARTIFACTS)
            if name.endswith(".json"):
                yield spec, backend, "sha256:" + name.removesuffix(".json"), key, backend.get(key)


def list_artifacts(remotes: RemoteCache) -> list[RemoteArtifact]:
    out = []
    for spec, _, build_key, _, data in _indexes(remotes):
        if data is None:
            continue
        try:
            doc = parse_index(spec, build_key, data, None)
        except GpuxError:
            doc = {"name": "?", "task": "?", "files": []}  # `verify` says what is wrong with it
        out.append(
            RemoteArtifact(
                spec.display,
                build_key,
                "sha256:" + hashlib.sha256(data).hexdigest(),
                doc.get("name", "?"),
                doc.get("task", "?"),
                len(doc["files"]),
                sum(f["size"] for f in doc["files"]),
            )
        )
    return sorted(out, key=lambda a: (a.remote, a.name, a.build_key))


class _Hasher:
    def __init__(self) -> None:
        self.h, self.size = hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        return len(data)


def verify(remotes: RemoteCache, attached: tuple[str, ...] = (), check: AttachedCheck | None = None) -> RemoteReport:
    """Download and hash every blob of every remote, and check each artifact index lists only blobs it holds and,
    with `check`, that its attachments `attached` (its provenance) belong to it."""
    report = RemoteReport()
    for spec in remotes.readers():
        backend = remotes.backend(spec)
        held = {}
        for key, size in backend.list(BLOBS):
            report.blobs += 1
            sink = _Hasher()
            backend.download(key, sink)
            held[key] = size
            if sink.h.hexdigest() != key.removeprefix(BLOBS):
                report.problems.append(f"remote {spec.display}: {key}: content hashes to {sink.h.hexdigest()}")
    for spec, backend, build_key, key, data in _indexes(remotes):
        report.artifacts += 1
        try:
            doc = parse_index(spec, build_key, data or b"", None)
        except GpuxError as exc:
            report.problems.append(exc.message)
            continue
        missing = [f["path"] for f in doc["files"] if not backend.exists(blob_key(f["sha256"]))]
        if missing:
            report.problems.append(f"remote {spec.display}: {key}: missing blobs for {', '.join(missing[:5])}")
        if check is not None and data is not None:
            problem = check(
                doc, "sha256:" + hashlib.sha256(data).hexdigest(), backend.get_attached(key, data, attached)
            )
            if problem is not None:
                report.problems.append(f"remote {spec.display}: {key}: {problem}")
    return report
