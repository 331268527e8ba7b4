"""`OciManager`: a model folder packed as an OCI artifact (`oci://registry/repository:tag` or `@sha256:...`), as
ORAS pushes one: an image manifest whose layers are the files, each titled with its path
(`org.opencontainers.image.title`). KitOps ModelKits are such artifacts too when their layers are the files
themselves; a ModelKit whose layers are tar archives is refused with a hint (its files have no digest of their
own to pin).

A tag resolves to the manifest's digest, which is the pin ("commit": its hex); the layers' digests are the
files' sha256, so nothing is downloaded to lock a model (but config.json and README.md, read for its metadata),
and every file is verified on arrival by the store. Client, credentials and errors: gpuxbuild/ociclient.py.
"""

from __future__ import annotations

import json
import re
from typing import BinaryIO

from gpuxbuild.errors import RegistryError, quote
from gpuxbuild.hashing import is_sha256, sha256_bytes
from gpuxbuild.ociclient import CHUNK, DOCKER_MANIFEST, INDEX, MANIFEST, TITLE, OciClient
from gpuxbuild.registries.base import Listed, ModelManager, PinnedModel, Progress, check_repo_path
from gpuxbuild.registries.files import model_info
from gpuxbuild.store.files import FileEntry

MAX_MANIFEST_BYTES = 4 << 20
_REF = re.compile(r"oci://([^/]+)/(.+?)(?::([A-Za-z0-9_][A-Za-z0-9._-]{0,127})|@sha256:([0-9a-f]{64}))?")
# Layers that are archives of a folder, not files: KitOps's tar layers, and folders oras packs (it marks them to
# be unpacked). A plain file's layer has a tar media type too (oras's default), so the type alone says nothing.
_KITOPS_TAR = re.compile(r"^application/vnd\.kitops\.modelkit\.[a-z]+\.v1\.tar(\+gzip|\+zstd)?$")
UNPACK = "io.deis.oras.content.unpack"


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
            headers={"Accept": ", ".join((MANIFEST, DOCKER_MANIFEST, INDEX))},
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
        files = self._layers(repo, body)
        paths = [f.path for f in files]
        on_listed(commit, paths, files)
        wanted = [f for f in files if f.path in ("config.json", "README.md")]
        if wanted:  # read for the model's task and license
            self.fetch(repo, commit, wanted, label=repo)
        return PinnedModel(self.name, repo, revision, commit, files, model_info(self.store, wanted, where=repo), paths)

    def _layers(self, repo: str, body: bytes) -> list[FileEntry]:
        """The files of a manifest: each layer titled with its path, its digest the file's sha256."""
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
        if not isinstance(layers, list) or not layers:
            raise RegistryError(f"{repo}: the manifest has no layers", "check the source: a model artifact has files")
        files: dict[str, FileEntry] = {}
        for layer in layers:
            title = (layer.get("annotations") or {}).get(TITLE) if isinstance(layer, dict) else None
            media_type = str(layer.get("mediaType", "")) if isinstance(layer, dict) else ""
            if not isinstance(title, str) or not title:
                raise RegistryError(
                    f"{repo}: a layer ({media_type or 'no media type'}) has no {TITLE} annotation naming its file",
                    "push each file as its own layer (oras push does; `kit pack` with raw layers)",
                )
            if _KITOPS_TAR.match(media_type) or (layer.get("annotations") or {}).get(UNPACK) == "true":
                raise RegistryError(
                    f"{repo}: layer {quote(title)} is a tar archive ({media_type}), not a file",
                    "push the model's files as layers of their own (oras push FILE...), so that each has a digest",
                )
            check_repo_path(repo, title)
            digest, size = layer.get("digest", ""), layer.get("size")
            sha = digest.removeprefix("sha256:") if isinstance(digest, str) else ""
            if not digest.startswith("sha256:") or not is_sha256(sha) or not isinstance(size, int) or size < 0:
                raise RegistryError(
                    f"{repo}: layer {quote(title)} has no sha256 digest and size", "check the source registry"
                )
            if title in files:
                raise RegistryError(f"{repo}: two layers are titled {quote(title)}", "push each file once")
            files[title] = FileEntry(title, sha, size)
        return sorted(files.values())

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
            raise RegistryError(f"{repo}: {file.path} is not in the store and offline mode is on", "run once online")
        client = self._client(repo)
        headers = {"Range": f"bytes={resume_from}-"} if resume_from else {}
        resp = client.request(
            "GET", f"{client.base}/blobs/sha256:{file.sha256}", file.path, ok=(200, 206), headers=headers, stream=True
        )
        if resp.status_code == 404:
            raise RegistryError(
                f"{repo}: {file.path}: the registry no longer has this layer", "push the artifact again"
            )
        skip = resume_from if resp.status_code == 200 else 0  # a registry that ignored the Range sends it all again
        for chunk in resp.iter_content(CHUNK):
            if skip:
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
            if chunk:
                dest.write(chunk)
                if progress:
                    progress(len(chunk))
