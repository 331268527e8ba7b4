"""`gpux sbom`: the project's models as a CycloneDX 1.6 ML-BOM, made from gpux.lock alone (offline).

Each model is a `machine-learning-model` component (name, pinned commit, package URL, registry URL, license,
one nested `file` component per pinned file with its SHA-256); its built artifact, when the lock records one,
is a second component whose pedigree names the model as its ancestor, and which depends on it. The document is
built with cyclonedx-python-lib; two things it cannot write are done on its JSON: `modelCard` (the library has
no model for it) and dropping the generation timestamp. The serial number is derived from the lock's bytes, so
one lock gives one byte-identical BOM.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError, MissingExtraError
from gpuxbuild.hashing import sha256_bytes

if TYPE_CHECKING:
    from pathlib import Path

    from gpuxbuild.project.lockfile import LockedModel

FORMATS = ("cyclonedx-json", "spdx-json")
REGISTRY_URLS = {"huggingface": "https://huggingface.co/{repo}/tree/{commit}"}


def _model_ref(name: str) -> str:
    return f"model:{name}"


def _components(entry: LockedModel):
    """(model component, artifact component or None) of a lock entry."""
    from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, XsUri
    from cyclonedx.model.component import Component, ComponentType, Pedigree
    from cyclonedx.model.license import LicenseExpression
    from packageurl import PackageURL

    from gpuxbuild.build.provenance import source_purl

    files = [
        Component(
            name=f.path,
            type=ComponentType.FILE,
            bom_ref=f"{_model_ref(entry.name)}:{f.path}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=f.sha256)],
        )
        for f in sorted(entry.files)
    ]
    refs = []
    if url := REGISTRY_URLS.get(entry.registry):
        refs.append(
            ExternalReference(
                type=ExternalReferenceType.DISTRIBUTION, url=XsUri(url.format(repo=entry.repo, commit=entry.commit))
            )
        )
    model = Component(
        name=entry.name,
        type=ComponentType.MACHINE_LEARNING_MODEL,
        version=entry.commit,
        bom_ref=_model_ref(entry.name),
        purl=PackageURL.from_string(source_purl(entry.registry, entry.repo, entry.commit)),
        description=f"{entry.repo} ({entry.registry}{', revision ' + entry.revision if entry.revision else ''})",
        licenses=[LicenseExpression(entry.license)] if entry.license else [],
        external_references=refs,
        components=files,
    )
    art = entry.artifact or {}
    if not art.get("digest"):
        return model, None
    artifact = Component(
        name=f"{entry.name}-onnx",
        type=ComponentType.MACHINE_LEARNING_MODEL,
        version=art["digest"],
        bom_ref=f"artifact:{entry.name}",
        description="ONNX artifact built by gpuxbuild; hash: sha256 of its artifact.json",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=art["digest"].removeprefix("sha256:"))],
        pedigree=Pedigree(ancestors=[Component(name=entry.name, version=entry.commit, type=model.type)]),
    )
    return model, artifact


def _model_card(entry: LockedModel) -> dict:
    """CycloneDX `modelCard` from what the lock knows of the model."""
    params: dict = {}
    if entry.task:
        params["task"] = entry.task
    if entry.architecture:
        params["modelArchitecture"] = entry.architecture
    if entry.library:
        params["architectureFamily"] = entry.library
    return {"modelParameters": params} if params else {}


def serial_number(lock_bytes: bytes) -> str:
    """A serial number fixed by the lock's content."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "gpuxbuild:gpux.lock:" + sha256_bytes(lock_bytes)).urn


def project_sbom(project: Path, fmt: str = "cyclonedx-json") -> str:
    """The ML-BOM of the project's gpux.lock, as text (verified against the manifest like every lock read)."""
    from gpuxbuild.project.lockfile import lock_path, read_lock, verify_lock
    from gpuxbuild.project.manifest import MANIFEST_NAME, load_manifest

    if fmt not in FORMATS:
        raise GpuxError(f"--format {fmt}: not a known format", f"use one of: {', '.join(FORMATS)}", exit_code=2)
    path = lock_path(project)
    lock = read_lock(path)
    if lock is None:
        raise GpuxError(f"no gpux.lock in {project}", "run `gpux lock` first")
    manifest = load_manifest(project / MANIFEST_NAME) if (project / MANIFEST_NAME).is_file() else None
    verify_lock(manifest, lock, project)
    if fmt == "spdx-json":
        from gpuxbuild.models.spdx import spdx_json

        return spdx_json(lock, path.read_bytes())
    try:
        from cyclonedx.model.bom import Bom
        from cyclonedx.output.json import JsonV1Dot6
    except ImportError as exc:
        raise MissingExtraError("supply", "gpux sbom") from exc

    bom = Bom()
    cards = {}
    for _, entry in sorted(lock.models.items()):
        model, artifact = _components(entry)
        bom.components.add(model)
        cards[model.bom_ref.value] = _model_card(entry)
        bom.register_dependency(model, [])
        if artifact is not None:
            bom.components.add(artifact)
            bom.register_dependency(artifact, [model])
    doc = json.loads(JsonV1Dot6(bom).output_as_string())
    doc["serialNumber"] = serial_number(path.read_bytes())
    doc.get("metadata", {}).pop("timestamp", None)
    for comp in doc.get("components", []):
        if card := cards.get(comp.get("bom-ref")):
            comp["modelCard"] = card
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
