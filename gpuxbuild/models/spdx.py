"""`gpux sbom --format spdx-json`: the project's models as an SPDX 2.3 document, made with spdx-tools.

SPDX 2.3 has no machine-learning package type (SPDX 3's AI profile has, and spdx-tools does not write it
yet): each model is a package (version: the pinned commit; a purl; the registry URL as download location;
its license), and each recorded artifact a package GENERATED_FROM it, with the artifact digest as its
SHA-256. Files are not listed: SPDX 2.3 requires a SHA-1 of each file, which the lock does not record.
SPDX requires a creation time; for one lock to give one document it is SOURCE_DATE_EPOCH when set, else
the Unix epoch, and the namespace is derived from the lock's bytes.
"""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gpuxbuild import __version__
from gpuxbuild.errors import GpuxError, MissingExtraError
from gpuxbuild.hashing import sha256_bytes

if TYPE_CHECKING:
    from gpuxbuild.project.lockfile import Lock

REGISTRY_URLS = {"huggingface": "https://huggingface.co/{repo}/tree/{commit}"}


def _spdx_id(kind: str, name: str) -> str:
    """An SPDX id for model `name` (ids allow letters, digits, '.', '-'; the hash keeps `a_b` and `a-b` apart)."""
    return f"SPDXRef-{kind}-{name.replace('_', '-')}-{sha256_bytes(name.encode())[:8]}"


def created_at() -> datetime:
    """SOURCE_DATE_EPOCH (the reproducible-builds convention) when set, else the Unix epoch."""
    try:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        raise GpuxError("SOURCE_DATE_EPOCH is not an integer", "set it to seconds since 1970, or unset it") from None
    return datetime.fromtimestamp(epoch, tz=UTC).replace(tzinfo=None)


def spdx_json(lock: Lock, lock_bytes: bytes) -> str:
    """The SPDX 2.3 JSON document of `lock` (whose file bytes are `lock_bytes`), validated by spdx-tools."""
    try:
        from spdx_tools.common.spdx_licensing import spdx_licensing
        from spdx_tools.spdx.model import (
            Actor,
            ActorType,
            Checksum,
            ChecksumAlgorithm,
            CreationInfo,
            Document,
            ExternalPackageRef,
            ExternalPackageRefCategory,
            Package,
            PackagePurpose,
            Relationship,
            RelationshipType,
            SpdxNoAssertion,
        )
        from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream
    except ImportError as exc:
        raise MissingExtraError("supply", "gpux sbom --format spdx-json") from exc
    from gpuxbuild.build.provenance import source_purl

    digest = sha256_bytes(lock_bytes)
    info = CreationInfo(
        spdx_version="SPDX-2.3",
        spdx_id="SPDXRef-DOCUMENT",
        name="gpux.lock",
        document_namespace=f"https://gpuxbuild.dev/spdx/gpux.lock/{digest}",
        creators=[Actor(ActorType.TOOL, f"gpuxbuild-{__version__}")],
        created=created_at(),
    )
    packages, relationships = [], []
    for name, entry in sorted(lock.models.items()):
        url = REGISTRY_URLS.get(entry.registry)
        # A license id SPDX does not know (the Hub's "other", "llama2", ...) is kept as a comment.
        known = bool(entry.license) and not spdx_licensing.validate(entry.license).errors
        model = Package(
            spdx_id=_spdx_id("Model", name),
            name=name,
            download_location=url.format(repo=entry.repo, commit=entry.commit) if url else SpdxNoAssertion(),
            version=entry.commit,
            files_analyzed=False,
            license_declared=(spdx_licensing.parse(entry.license) if known else SpdxNoAssertion()),
            license_comment=None if known or not entry.license else f"license as the model states it: {entry.license}",
            license_concluded=SpdxNoAssertion(),
            copyright_text=SpdxNoAssertion(),
            external_references=[
                ExternalPackageRef(
                    ExternalPackageRefCategory.PACKAGE_MANAGER,
                    "purl",
                    source_purl(entry.registry, entry.repo, entry.commit),
                )
            ],
            primary_package_purpose=PackagePurpose.OTHER,
            comment=f"machine-learning model {entry.repo} ({entry.registry}); task {entry.task}",
        )
        packages.append(model)
        relationships.append(Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, model.spdx_id))
        art = entry.artifact or {}
        if art.get("digest"):
            artifact = Package(
                spdx_id=_spdx_id("Artifact", name),
                name=f"{name}-onnx",
                download_location=SpdxNoAssertion(),
                version=art["digest"],
                files_analyzed=False,
                checksums=[Checksum(ChecksumAlgorithm.SHA256, art["digest"].removeprefix("sha256:"))],
                license_concluded=SpdxNoAssertion(),
                license_declared=SpdxNoAssertion(),
                copyright_text=SpdxNoAssertion(),
                primary_package_purpose=PackagePurpose.OTHER,
                comment="ONNX artifact built by gpuxbuild; checksum: sha256 of its artifact.json",
            )
            packages.append(artifact)
            relationships.append(Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, artifact.spdx_id))
            relationships.append(Relationship(artifact.spdx_id, RelationshipType.GENERATED_FROM, model.spdx_id))
    document = Document(info, packages=packages, relationships=relationships)
    stream = io.StringIO()
    try:
        write_document_to_stream(document, stream, validate=True)
    except ValueError as exc:
        raise GpuxError(f"the SPDX document does not validate: {exc}", "report this gpuxbuild bug") from None
    return json.dumps(json.loads(stream.getvalue()), indent=2, sort_keys=True) + "\n"
