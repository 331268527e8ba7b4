"""`OciManager`: a model folder packed as an OCI artifact (`oci://registry/repository:tag` or `@sha256:...`), as
ORAS pushes one: an image manifest whose layers are the files, each titled with its path
(`org.opencontainers.image.title`), or a KitOps ModelKit, whose layers are tar archives of the model's folders
(`application/vnd.kitops.modelkit.{model,modelpart,code,docs,...}.v1.tar[+gzip]`; dataset layers are left out).

A tag resolves to the manifest's digest, which is the pin ("commit": its hex). A titled layer's digest is its
file's sha256, so nothing is downloaded to lock it; an archive layer is downloaded into the store (verified by
its digest) and each regular file in it is hashed there, so the lock pins every file by its own sha256 as
for any registry (links and devices in an archive are refused). Every file is verified again on arrival. Client,
credentials and errors: gpuxbuild/ociclient.py.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import threading
from dataclasses import dataclass
from typing import BinaryIO

from gpuxbuild.errors import RegistryError, quote
from gpuxbuild.hashing import is_sha256, sha256_bytes
from gpuxbuild.ociclient import CHUNK, DOCKER_MANIFEST, INDEX, MANIFEST, TITLE, OciClient
from gpuxbuild.registries.base import Listed, ModelManager, PinnedModel, Progress, check_repo_path, offline_miss
from gpuxbuild.registries.files import model_info
from gpuxbuild.store.files import FileEntry

MAX_MANIFEST_BYTES = 4 << 20
_REF = re.compile(r"oci://([^/]+)/(.+?)(?::([A-Za-z0-9_][A-Za-z0-9._-]{0,127})|@sha256:([0-9a-f]{64}))?")
# Layers that are archives of a folder, not files: KitOps's tar layers, and folders oras packs (it marks them to
# be unpacked). A plain file's layer has a tar media type too (oras's default), so the type alone says nothing.
_KITOPS_TAR = re.compile(r"^application/vnd\.kitops\.modelkit\.([a-z]+)\.v1\.tar(?:\+([a-z]+))?$")
UNPACK = "io.deis.oras.content.unpack"
_ACCEPT = ", ".join((MANIFEST, DOCKER_MANIFEST, INDEX))
SKIPPED_KINDS = ("dataset",)  # ModelKit layers a model does not need to run


@dataclass(frozen=True)
class Archive:
    """A layer that is a tar archive of files (a ModelKit's, or a folder oras packed)."""

    sha256: str
    size: int
    gzip: bool


def split_oci(repo: str) -> tuple[str, str, str]:
    """(registry host, repository, tag or `sha256:...` digest; `latest` when the source names neither)."""
    m = _REF.fullmatch(repo)
    if m is None:
        raise RegistryError(f"bad OCI source {quote(repo)}", "write oci://registry/repository:tag or @sha256:...")
    host, name, tag, digest = m.groups()
    return host, name, f"sha256:{digest}" if digest else (tag or "latest")


class OciManager(ModelManager):
    """Model folders in OCI registries."""

    name = "oci"

    def display(self, repo: str) -> str:
        return repo

    def __init__(self, *, project, offline: bool = False, store=None):
        super().__init__(project=project, offline=offline, store=store)
        self._archives: dict[tuple[str, str], dict[str, Archive | None]] = {}  # (repo, commit) -> path -> layer
        self._lock = threading.Lock()

    def _client(self, repo: str) -> OciClient:
        host, name, _ = split_oci(repo)
        return OciClient(host, name, label=repo, error=RegistryError)

    def resolve(self, repo: str, revision: str | None, *, pin: str | None = None) -> PinnedModel:
        return self.resolve_streaming(repo, revision, lambda *_: None, pin=pin)

    def resolve_streaming(
        self, repo: str, revision: str | None, on_listed: Listed, *, pin: str | None = None
    ) -> PinnedModel:
        if self.offline:
            raise RegistryError(
                f"{repo}: resolving it needs the network, but offline mode is on",
                "run `gpux lock` online once; a locked model syncs offline from the store",
            )
        _, _, reference = split_oci(repo)
        client = self._client(repo)
        asked = f"sha256:{pin}" if pin else reference
        resp = client.request(
            "GET",
            f"{client.base}/manifests/{asked}",
            "manifest",
            headers={"Accept": _ACCEPT},
        )
        if resp.status_code == 404:
            raise RegistryError(f"{repo}: no such repository or tag", "check the source; `oras repo tags` lists tags")
        body = resp.content
        commit = sha256_bytes(body)
        if asked.startswith("sha256:") and commit != asked.removeprefix("sha256:"):
            raise RegistryError(
                f"{repo}: the registry sent a manifest whose digest is sha256:{commit}, not {asked}",
                "the registry is faulty or tampered with: use another",
            )
        files, archives = self._layers(repo, body)
        for archive in archives:
            for path, entry in self._unpack(repo, archive, hash_files=True).items():
                if any(f.path == path for f in files):
                    raise RegistryError(f"{repo}: {quote(path)} is in two layers", "pack each file once")
                files.append(entry)
        files.sort()
        paths = [f.path for f in files]
        on_listed(commit, paths, files)
        wanted = [f for f in files if f.path in ("config.json", "README.md")]
        if wanted:  # read for the model's task and license
            self.fetch(repo, commit, wanted, label=repo)
        return PinnedModel(
            self.name, repo, revision, commit, files, model_info(self._store(), wanted, where=repo), paths
        )

    def _layers(self, repo: str, body: bytes) -> tuple[list[FileEntry], list[Archive]]:
        """The files of a manifest (layers titled with their path, their digest the file's sha256) and its
        archive layers."""
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{repo}: the manifest is over {MAX_MANIFEST_BYTES >> 20} MiB", "check the source")
        try:
            manifest = json.loads(body)
        except ValueError:
            raise RegistryError(f"{repo}: the registry sent a manifest that is not JSON", "check the source") from None
        media = manifest.get("mediaType") if isinstance(manifest, dict) else None
        if media == INDEX or (isinstance(manifest, dict) and "manifests" in manifest):
            raise RegistryError(
                f"{repo}: an image index (several platforms), not a model artifact",
                "name the artifact's own manifest by tag or @sha256:...",
            )
        layers = manifest.get("layers") if isinstance(manifest, dict) else None
        if not isinstance(layers, list) or not layers or not all(isinstance(x, dict) for x in layers):
            raise RegistryError(f"{repo}: the manifest has no layers", "check the source: a model artifact has files")
        files: dict[str, FileEntry] = {}
        archives: list[Archive] = []
        for layer in layers:
            annotations = layer.get("annotations") or {}
            title, media_type = annotations.get(TITLE), str(layer.get("mediaType", ""))
            digest, size = layer.get("digest", ""), layer.get("size")
            sha = digest.removeprefix("sha256:") if isinstance(digest, str) else ""
            what = quote(title) if isinstance(title, str) and title else f"of type {media_type or 'unknown'}"
            if not digest.startswith("sha256:") or not is_sha256(sha) or not isinstance(size, int) or size < 0:
                raise RegistryError(f"{repo}: layer {what} has no sha256 digest and size", "check the source registry")
            kitops = _KITOPS_TAR.match(media_type)
            if kitops or annotations.get(UNPACK) == "true":
                if not (kitops and kitops.group(1) in SKIPPED_KINDS):
                    compression = kitops.group(2) if kitops else "gzip"
                    if compression not in (None, "gzip"):
                        raise RegistryError(
                            f"{repo}: layer {what} is compressed with {compression}", "pack it with gzip or none"
                        )
                    archives.append(Archive(sha, size, compression == "gzip"))
                continue
            if not isinstance(title, str) or not title:
                raise RegistryError(
                    f"{repo}: a layer ({media_type or 'no media type'}) has no {TITLE} annotation naming its file",
                    "push each file as its own layer (oras push does), or as a KitOps ModelKit",
                )
            check_repo_path(repo, title)
            if title in files:
                raise RegistryError(f"{repo}: two layers are titled {quote(title)}", "push each file once")
            files[title] = FileEntry(title, sha, size)
        return sorted(files.values()), archives

    def _unpack(self, repo: str, archive: Archive, *, hash_files: bool) -> dict[str, FileEntry]:
        """The regular files of an archive layer, fetched into the store first (verified by its digest); with
        `hash_files`, each file is also stored under its own sha256."""
        store = self._store()
        label = f"{repo}: layer sha256:{archive.sha256[:12]}"
        store.ensure_object(
            archive.sha256,
            archive.size,
            lambda dest, resume: self._get_blob(repo, archive.sha256, dest, resume, None, what=label),
            label=label,
        )
        found: dict[str, FileEntry] = {}
        try:
            with tarfile.open(store.object_path(archive.sha256), "r:gz" if archive.gzip else "r:") as tar:
                for member in tar:
                    if member.isdir():
                        continue
                    path = member.name.removeprefix("./")
                    check_repo_path(repo, path)
                    if not member.isfile():
                        raise RegistryError(
                            f"{repo}: {quote(path)} in layer sha256:{archive.sha256[:12]} is a link or a device, not a file",
                            "pack the model's files themselves: a model is made of regular files",
                        )
                    if path in found:
                        raise RegistryError(
                            f"{repo}: {quote(path)} is twice in an archive layer", "pack each file once"
                        )
                    if hash_files:
                        source = tar.extractfile(member)
                        sha, size = store.ingest(
                            lambda dest, _resume, src=source: shutil.copyfileobj(src, dest, 1 << 20),
                            size=member.size,
                            label=f"{repo}: {path}",
                        )
                        found[path] = FileEntry(path, sha, size)
                    else:
                        found[path] = FileEntry(path, "", member.size)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise RegistryError(
                f"{repo}: layer sha256:{archive.sha256[:12]} is not a readable tar archive ({type(exc).__name__})",
                "check the source: ModelKit layers are tar archives",
            ) from None
        return found

    def _store(self):
        if self.store is None:
            from gpuxbuild.store.objects import Store

            self.store = Store()
        return self.store

    def _get_blob(
        self, repo: str, sha: str, dest: BinaryIO, resume_from: int, progress: Progress | None, *, what: str
    ) -> None:
        client = self._client(repo)
        headers = {"Range": f"bytes={resume_from}-"} if resume_from else {}
        resp = client.request(
            "GET", f"{client.base}/blobs/sha256:{sha}", what, ok=(200, 206), headers=headers, stream=True
        )
        if resp.status_code == 404:
            raise RegistryError(f"{repo}: {what}: the registry no longer has this layer", "push the artifact again")
        skip = resume_from if resp.status_code == 200 else 0  # a registry that ignored the Range sends it all again
        for chunk in resp.iter_content(CHUNK):
            if skip:
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
            if chunk:
                dest.write(chunk)
                if progress:
                    progress(len(chunk))

    def download(
        self,
        repo: str,
        commit: str,
        file: FileEntry,
        dest: BinaryIO,
        *,
        resume_from: int = 0,
        progress: Progress | None = None,
    ) -> None:
        if self.offline:
            raise offline_miss(f"{repo}: {file.path}")
        archive = self._archive_of(repo, commit, file.path)
        if archive is None:
            self._get_blob(repo, file.sha256, dest, resume_from, progress, what=file.path)
            return
        self._unpack(repo, archive, hash_files=False)  # the layer is in the store now
        with tarfile.open(self._store().object_path(archive.sha256), "r:gz" if archive.gzip else "r:") as tar:
            for member in tar:
                if member.name.removeprefix("./") == file.path and member.isfile():
                    source = tar.extractfile(member)
                    assert source is not None
                    source.seek(resume_from)
                    while chunk := source.read(CHUNK):
                        dest.write(chunk)
                        if progress:
                            progress(len(chunk))
                    return
        raise RegistryError(f"{repo}: {file.path} is not in the pinned artifact", "re-lock: `gpux lock --upgrade NAME`")

    def _archive_of(self, repo: str, commit: str, path: str) -> Archive | None:
        """The archive layer of the pinned manifest that holds `path`, or None for a file of its own; the
        manifest is read once per artifact."""
        with self._lock:
            if (repo, commit) not in self._archives:
                client = self._client(repo)
                resp = client.request(
                    "GET", f"{client.base}/manifests/sha256:{commit}", "manifest", headers={"Accept": _ACCEPT}
                )
                if resp.status_code == 404 or sha256_bytes(resp.content) != commit:
                    raise RegistryError(
                        f"{repo}: the registry no longer has the pinned manifest sha256:{commit[:12]}",
                        "push the artifact again, or re-lock: `gpux lock --upgrade NAME`",
                    )
                files, archives = self._layers(repo, resp.content)
                by_path: dict[str, Archive | None] = {f.path: None for f in files}
                for archive in archives:
                    by_path.update(dict.fromkeys(self._unpack(repo, archive, hash_files=False), archive))
                self._archives[(repo, commit)] = by_path
        return self._archives[(repo, commit)].get(path)
