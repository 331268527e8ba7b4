"""The remote cache's content layout and its operations over the configured remotes.

Layout (the same under every URL scheme):
    blobs/sha256/<hex>          a file's bytes (artifact files and source files), by sha256
    artifacts/<build key hex>.json   an artifact's artifact.json, by build key: its sha256 is the artifact digest
    attestations/<artifact digest hex>/provenance.json (and provenance.dsse.json)   its provenance, by digest
                                (an OCI registry keeps these as layers of the artifact's manifest instead)

Publishing uploads the blobs and the provenance first and then creates the index object with a conditional create, so a
half-finished upload is never visible and a second publisher of the same build key changes nothing. Every
downloaded byte is checked against its sha256 before it is used.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from gpuxbuild.errors import IntegrityError
from gpuxbuild.hashing import is_sha256, sha256_bytes
from gpuxbuild.remote import RemoteError, RemoteSpec, Warn, open_backend

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    from gpuxbuild.remote.base import Backend, Sink
    from gpuxbuild.store.fetch import Reporter
    from gpuxbuild.store.objects import HashingWriter, Store, Writer

BLOBS = "blobs/sha256/"
TRANSFERS = 8  # files moved at once (each large one also in parallel parts where the client does that: S3)
T = TypeVar("T")
R = TypeVar("R")
ARTIFACTS = "artifacts/"


def blob_key(sha256: str) -> str:
    return BLOBS + sha256


def index_key(build_key: str) -> str:
    return f"{ARTIFACTS}{build_key.removeprefix('sha256:')}.json"


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class _Counting:
    """A sink that passes a download on to `f` (the store's hashing writer), counting its bytes for the reporter."""

    def __init__(self, f: Sink, label: str, reporter: Reporter | None):
        self.f, self.label, self.reporter, self.size = f, label, reporter, 0

    def write(self, data: bytes) -> int:
        n = self.f.write(data)
        self.size += len(data)
        if self.reporter:
            self.reporter.advance(self.label, len(data))
        return n


class RemoteCache:
    """The configured remotes: read from each in order, push to the first. Backends open on first use; an optional
    remote that fails is dropped with a warning (`warn`) and the command goes on without it."""

    def __init__(self, specs: list[RemoteSpec], warn: Warn = _stderr):
        self.specs = specs
        self.warn = warn
        self.reporter: Reporter | None = None  # byte-level progress of transfers (the CLI's, on a terminal)
        self._open: dict[RemoteSpec, Backend | None] = {}

    def __bool__(self) -> bool:
        return bool(self.specs)

    def backend(self, spec: RemoteSpec) -> Backend:
        """`spec`'s backend, opened; its failures are errors even for an optional remote (for `cache remote`)."""
        return self._open.get(spec) or open_backend(spec)

    def _backend(self, spec: RemoteSpec) -> Backend | None:
        if spec not in self._open:
            try:
                self._open[spec] = open_backend(spec)
            except RemoteError as exc:
                self._fail(spec, exc)
        return self._open.get(spec)

    def _fail(self, spec: RemoteSpec, exc: RemoteError) -> None:
        """An optional remote is dropped with a warning; any other remote's failure is the command's error."""
        if not spec.optional:
            raise exc
        self._open[spec] = None
        self.warn(f"{exc.message}; going on without it (optional remote)")

    def _call(self, spec: RemoteSpec, op: str, *args):
        """`backend.op(*args)` on `spec`'s backend; None when the remote is unavailable (and optional)."""
        backend = self._backend(spec)
        if backend is None:
            return None
        try:
            return getattr(backend, op)(*args)
        except RemoteError as exc:
            self._fail(spec, exc)
            return None

    def readers(self) -> Iterator[RemoteSpec]:
        for spec in self.specs:
            if self._backend(spec) is not None:
                yield spec

    # -- artifacts -------------------------------------------------------------------------------
    def find_index(self, build_key: str) -> tuple[RemoteSpec, bytes] | None:
        """(remote, artifact.json bytes) of the first remote that holds an artifact for `build_key`."""
        for spec in self.readers():
            data = self._call(spec, "get", index_key(build_key))
            if data is not None:
                return spec, data
        return None

    def locate(self, build_key: str) -> RemoteSpec | None:
        """The first remote that holds an artifact for `build_key` (an existence check: nothing is read)."""
        for spec in self.readers():
            if self._call(spec, "exists", index_key(build_key)):
                return spec
        return None

    def download_blob(self, spec: RemoteSpec, store: Store, sha256: str, size: int, dest: Path, label: str) -> None:
        """Blob `sha256` from `spec` into the new file `dest`, verified. It goes through the store's resumable
        partial (tmp/<sha256>.partial): a download cut off mid-way resumes from where it stopped (a ranged read),
        now while it makes progress and else in a later run. A mismatch leaves no file and says which object of
        which remote is wrong."""
        backend = self._backend(spec)
        if backend is None:
            raise RemoteError(f"remote {spec.display}: unavailable")
        key, reporter = blob_key(sha256), self.reporter
        if reporter:
            reporter.start(label, size)
        try:
            store.download_to(
                sha256,
                size,
                _writer(backend, key, label, reporter),
                dest,
                wrong=lambda got, n: corrupt(spec, key, f"sha256 {got}, {n} bytes"),
            )
        finally:
            if reporter:
                reporter.finish(label, False)

    def find_attached(self, spec: RemoteSpec, build_key: str, index: bytes, names: tuple[str, ...]) -> dict[str, bytes]:
        """The attachments `names` (its provenance) `spec` holds for the artifact whose artifact.json is `index`."""
        return self._call(spec, "get_attached", index_key(build_key), index, names) or {}

    def _upload(self, backend: Backend, sha256: str, path: Path, label: str) -> bool:
        """Blob `sha256` from the file `path`, in parts where the remote takes them, its bytes told to the reporter."""
        reporter = self.reporter
        if reporter:
            reporter.start(label, path.stat().st_size)
        try:
            backend.upload(blob_key(sha256), path, (lambda n: reporter.advance(label, n)) if reporter else None)
        finally:
            if reporter:
                reporter.finish(label, False)
        return True

    def publish(
        self,
        build_key: str,
        manifest: bytes,
        files: list[tuple[str, Path, str]],
        attached: Sequence[tuple[str, bytes]],
    ) -> str:
        """Upload `files` ((sha256, path, label) triples), then `attached` ((name, bytes): its provenance) and the
        index `manifest` for `build_key` to the first remote. Returns "pushed", "present" when the remote already
        holds this artifact for that key, or "skipped" when the remote is optional and failed (the warning says why)."""
        spec = self.specs[0]
        backend = self._backend(spec)
        if backend is None:
            return "skipped"
        try:
            parallel(lambda f: backend.exists(blob_key(f[0])) or self._upload(backend, *f), files)
            if backend.create_index(index_key(build_key), manifest, attached):
                return "pushed"
            held = backend.get(index_key(build_key))
        except RemoteError as exc:
            self._fail(spec, exc)
            return "skipped"
        if held != manifest:
            self.warn(
                f"remote {spec.display} already holds artifact sha256:{sha256_bytes(held or b'')} for build key "
                f"{build_key}, not sha256:{sha256_bytes(manifest)}: kept the remote's (the first publisher wins)"
            )
        return "present"

    # -- sources ---------------------------------------------------------------------------------
    def push_objects(self, store: Store, shas: list[str]) -> int:
        """Upload store objects (source files) as blobs to the first remote; returns how many were new there."""
        spec = self.specs[0]
        backend = self._backend(spec)
        if backend is None:
            return 0
        try:
            made = parallel(
                lambda sha: (
                    not backend.exists(blob_key(sha))
                    and self._upload(backend, sha, store.object_path(sha), f"source {sha[:12]}")
                ),
                shas,
            )
        except RemoteError as exc:
            self._fail(spec, exc)
            return 0
        return sum(map(bool, made))

    def fetch_object(self, store: Store, sha256: str, size: int, label: str) -> bool:
        """Store object `sha256` from the first remote that holds it, verified by the store. False if none has it."""
        for spec in self.readers():
            backend = self._backend(spec)
            if backend is None or not self._call(spec, "exists", blob_key(sha256)):
                continue

            writer = _writer(backend, blob_key(sha256), label, self.reporter)
            if self.reporter:
                self.reporter.start(label, size)
            try:
                store.ensure_object(sha256, size, writer, label=f"{label} (from remote {spec.display})")
            except RemoteError as exc:
                self._fail(spec, exc)
                continue
            finally:
                if self.reporter:
                    self.reporter.finish(label, False)
            return True
        return False


def _writer(backend: Backend, key: str, label: str, reporter: Reporter | None) -> Writer:
    """A store writer that streams `key` from `backend` from the offset it is given (what a partial holds). A
    download cut off mid-way goes on from where it stopped while it makes progress (each request is retried
    already); with none, the error stands and the partial stays for a later run to resume."""

    def write(f: HashingWriter, start: int) -> None:
        sink = _Counting(f, label, reporter)
        if reporter and start:
            reporter.advance(label, start)
        while True:
            before = sink.size
            try:
                return backend.download(key, sink, start + sink.size)
            except RemoteError:
                if sink.size == before:
                    raise

    return write


def parallel(fn: Callable[[T], R], items: list[T]) -> list[R]:
    """`fn` over `items` on TRANSFERS threads (transfers wait on the network, not the CPU); the first failure is
    raised once the others are done or cancelled."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(TRANSFERS, len(items)), thread_name_prefix="gpux-remote") as pool:
        futures = [pool.submit(fn, x) for x in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def corrupt(spec: RemoteSpec, key: str, what: str) -> IntegrityError:
    return IntegrityError(
        f"remote {spec.display}: object {key} is corrupt ({what}); not used",
        "delete that object on the remote (or run `gpux cache remote verify`) and push again",
    )


def _inside(path) -> bool:
    """A relative file path that stays inside the artifact folder (no absolute path, no `..`, no backslash)."""
    return (
        isinstance(path, str)
        and bool(path)
        and not path.startswith("/")
        and "\\" not in path
        and all(part not in ("", ".", "..") for part in path.split("/"))
    )


def parse_index(spec: RemoteSpec, build_key: str, data: bytes, expected: str | None) -> dict:
    """The artifact.json held under `build_key`, checked: its digest is `expected` (when the lock records one), it
    names that build key, and lists files by sha256 and size."""
    import json

    key = index_key(build_key)
    found = "sha256:" + sha256_bytes(data)
    if expected and found != expected:
        raise corrupt(spec, key, f"artifact {found}, gpux.lock records {expected}")
    try:
        doc = json.loads(data)
        ok = doc.get("build_key") == build_key and all(
            _inside(f.get("path")) and is_sha256(f.get("sha256")) and isinstance(f.get("size"), int)
            for f in doc["files"]
        )
    except (ValueError, AttributeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise corrupt(spec, key, "not an artifact.json for this build key")
    return doc
