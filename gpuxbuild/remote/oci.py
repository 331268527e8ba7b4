"""`oci://registry/repository`: any OCI registry (GHCR, ECR, Harbor, Docker Hub, the CNCF distribution registry).

The registry HTTP API over `requests` (already a dependency, through huggingface_hub): the oras SDK adds little
for this and does not check digests on pull. Each artifact is an ordinary OCI artifact that oras, crane and skopeo
list and pull: an image manifest with `artifactType` application/vnd.gpuxbuild.artifact.v1, tagged with the build
key's hex, whose layers are the artifact's files (annotated with their paths, `org.opencontainers.image.title`)
plus artifact.json, then its provenance (`provenance.json`, in-toto, and `provenance.dsse.json` when signed) as
more titled layers: part of the one manifest, so an artifact is never visible without its provenance, and
`oras pull` brings the whole artifact folder. (A referrer manifest would need the referrers API, which the
distribution registry 2.x lacks, and a second write after the tag.) Blobs are the registry's own (sha256, the
same digests gpux uses); every download is hashed by gpux. Registries have no conditional tag create: a manifest
is written only when the tag is absent; two publishers of one artifact write the same files, artifact.json and
(unsigned) provenance, so whichever manifest lands describes the same artifact.

Credentials (the docker credential store), auth, retries and errors are the registry client's, shared with the
oci:// model source (gpuxbuild/ociclient.py). Loopback registries are spoken to over plain HTTP.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gpuxbuild.hashing import sha256_bytes
from gpuxbuild.ociclient import CHUNK, EMPTY, MANIFEST, TITLE, OciClient
from gpuxbuild.remote.base import Backend, Progress, RemoteError, RemoteSpec, Sink, part_size

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

ARTIFACT_TYPE = "application/vnd.gpuxbuild.artifact.v1"
# The media types of an artifact's attachments (gpuxbuild.build.provenance.EVIDENCE): what oras and cosign use.
_ATTACHMENT_TYPES = {
    "provenance.json": "application/vnd.in-toto+json",
    "provenance.dsse.json": "application/vnd.dsse.envelope.v1+json",
}


class OciBackend(Backend):
    def __init__(self, spec: RemoteSpec):
        super().__init__(spec)
        parts = urlsplit(spec.url)
        self.host, self.repo = parts.netloc.rpartition("@")[2], parts.path.strip("/")
        if not self.repo:
            raise RemoteError(f"remote {spec.display}: no repository", "write oci://registry/repository")
        self.http = OciClient(self.host, self.repo, label=f"remote {spec.display}", error=RemoteError)
        self.base = self.http.base
        self._request = self.http.request
        self._upload = self.http.upload

    # -- keys ------------------------------------------------------------------------------------
    @staticmethod
    def _tag(key: str) -> str | None:
        if key.startswith("artifacts/") and key.endswith(".json"):
            return key.removeprefix("artifacts/").removesuffix(".json")
        return None

    @staticmethod
    def _digest(key: str) -> str:
        return "sha256:" + key.removeprefix("blobs/sha256/")

    def _manifest(self, tag: str) -> dict | None:
        resp = self._request("GET", f"{self.base}/manifests/{tag}", tag, headers={"Accept": MANIFEST})
        return None if resp.status_code == 404 else resp.json()

    def get(self, key: str) -> bytes | None:
        tag = self._tag(key)
        if tag is None:
            resp = self._request("GET", f"{self.base}/blobs/{self._digest(key)}", key)
            return None if resp.status_code == 404 else resp.content
        manifest = self._manifest(tag)
        if manifest is None:
            return None
        layer = next(
            (x for x in manifest.get("layers", []) if x.get("annotations", {}).get(TITLE) == "artifact.json"), None
        )
        if layer is None:
            raise RemoteError(f"remote {self.spec.display}: {key}: manifest {tag} has no artifact.json layer")
        resp = self._request("GET", f"{self.base}/blobs/{layer['digest']}", key)
        return None if resp.status_code == 404 else resp.content

    def download(self, key: str, f: Sink, start: int = 0) -> None:
        headers = {"Range": f"bytes={start}-"} if start else {}
        resp = self._request(
            "GET", f"{self.base}/blobs/{self._digest(key)}", key, ok=(200, 206), headers=headers, stream=True
        )
        if resp.status_code == 404:
            raise RemoteError(f"remote {self.spec.display}: no object {key}")
        skip = start if resp.status_code == 200 else 0  # a registry that ignored the Range sends it all again
        stream = resp.iter_content(CHUNK)
        while True:
            try:  # only the registry's errors are the remote's: the sink's own (a full disk) pass as they are
                chunk = next(stream, None)
            except OSError as exc:  # requests' ConnectionError, ChunkedEncodingError: cut off mid-way
                raise RemoteError(f"remote {self.spec.display}: {key}: cut off ({type(exc).__name__})") from exc
            if chunk is None:
                return
            if skip:
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
            if chunk:
                f.write(chunk)

    def exists(self, key: str) -> bool:
        tag = self._tag(key)
        url = f"{self.base}/manifests/{tag}" if tag else f"{self.base}/blobs/{self._digest(key)}"
        return self._request("HEAD", url, key, headers={"Accept": MANIFEST}).status_code == 200

    def _location(self, resp) -> str:
        location = resp.headers["Location"]
        return self.base.split("/v2/")[0] + location if location.startswith("/") else location

    def upload(self, key: str, source: Path, progress: Progress | None = None) -> None:
        """A blob: a large one as a chunked upload (POST, a PATCH per part in order, then PUT ?digest=), which the
        registry checks against the digest and makes visible only when complete; each request is retried."""
        size, part = source.stat().st_size, part_size()
        digest = self._digest(key)
        with open(source, "rb") as f:
            if size <= part:
                self._upload(digest, f.read(), key)
                if progress:
                    progress(size)
                return
            location = self._location(self._request("POST", f"{self.base}/blobs/uploads/", key, ok=(202,)))
            offset = 0
            while chunk := f.read(part):
                resp = self._request(
                    "PATCH",
                    location,
                    key,
                    ok=(202,),
                    data=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    },
                )
                location, offset = self._location(resp), offset + len(chunk)
                if progress:
                    progress(len(chunk))
        sep = "&" if "?" in location else "?"
        self._request("PUT", f"{location}{sep}digest={digest}", key, ok=(201,))

    def create(self, key: str, source: bytes | Path) -> bool:
        tag = self._tag(key)
        if tag is None:
            if self.exists(key):
                return False
            if isinstance(source, bytes):
                self._upload(self._digest(key), source, key)
            else:
                self.upload(key, source)
            return True
        assert isinstance(source, bytes)  # an index is artifact.json's bytes
        return self.create_index(key, source, [])

    def _blob(self, data: bytes, title: str, key: str) -> dict:
        """The layer of a small file `data` titled `title`, uploaded unless the registry holds it."""
        digest = "sha256:" + sha256_bytes(data)
        if not self.exists(f"blobs/sha256/{digest[7:]}"):
            self._upload(digest, data, key)
        media = _ATTACHMENT_TYPES.get(title, "application/octet-stream")
        return {"mediaType": media, "digest": digest, "size": len(data), "annotations": {TITLE: title}}

    def create_index(self, key: str, index: bytes, attached: Sequence[tuple[str, bytes]]) -> bool:
        """The artifact's manifest, tagged with the build key: a layer per file, artifact.json, then one layer per
        attachment (its provenance), each titled with its name; written only when the tag is absent."""
        tag = self._tag(key)
        assert tag is not None
        doc = json.loads(index)
        if not self.exists(f"blobs/sha256/{EMPTY['digest'][7:]}"):
            self._upload(EMPTY["digest"], b"{}", key)
        layers = [
            {
                "mediaType": "application/octet-stream",
                "digest": "sha256:" + f["sha256"],
                "size": f["size"],
                "annotations": {TITLE: f["path"]},
            }
            for f in doc["files"]
        ]
        layers += [self._blob(data, name, key) for name, data in [("artifact.json", index), *attached]]
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": EMPTY,
            "layers": layers,
            "annotations": {
                "dev.gpuxbuild.build-key": doc.get("build_key", ""),
                "dev.gpuxbuild.name": doc.get("name", ""),
            },
        }
        if self.exists(key):
            return False
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        self._request(
            "PUT", f"{self.base}/manifests/{tag}", key, ok=(201,), data=body, headers={"Content-Type": MANIFEST}
        )
        return True

    def get_attached(self, key: str, index: bytes, names: tuple[str, ...]) -> dict[str, bytes]:
        """The layers titled `names` of the manifest tagged for `key`, if its artifact.json layer is `index`."""
        tag = self._tag(key)
        manifest = self._manifest(tag) if tag else None
        layers = {x.get("annotations", {}).get(TITLE): x for x in (manifest or {}).get("layers", [])}
        if layers.get("artifact.json", {}).get("digest") != "sha256:" + sha256_bytes(index):
            return {}
        out = {}
        for name in names:
            if name in layers:
                data = self._request("GET", f"{self.base}/blobs/{layers[name]['digest']}", key).content
                if "sha256:" + sha256_bytes(data) != layers[name]["digest"]:
                    raise RemoteError(f"remote {self.spec.display}: {key}: layer {name} is corrupt")
                out[name] = data
        return out

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        tags = [t for t in self.http.tags() if len(t) == 64]
        if prefix.startswith("artifacts"):
            for t in tags:
                yield f"artifacts/{t}.json", 0
            return
        seen = {}
        for t in tags:
            for layer in (self._manifest(t) or {}).get("layers", []):
                seen[layer["digest"]] = layer["size"]
        for digest, size in sorted(seen.items()):
            yield f"blobs/sha256/{digest[7:]}", size
