"""Build provenance: an in-toto Statement v1 with a SLSA Provenance v1 predicate for every artifact.

`provenance.json` lives in the artifact folder, beside artifact.json and, like it, is not listed in
artifact.json: its subject names the artifact digest (the sha256 of artifact.json), so listing it would be
circular, and leaving it out keeps the artifact digest what it was before provenance existed. It holds no
timestamp and no absolute path: it is a function of artifact.json, the lock entry and the gpuxbuild version,
so a rebuild writes the same bytes. `gpux build --sign-key` adds `provenance.dsse.json`, a DSSE envelope
signed with an EC key; ECDSA signatures are randomized, so that file differs between signings (it is
verified, not compared).
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING

from gpuxbuild import __version__
from gpuxbuild.errors import GpuxError, MissingExtraError, quote
from gpuxbuild.fsutil import write_atomic
from gpuxbuild.hashing import sha256_bytes
from gpuxbuild.store.files import FileEntry

if TYPE_CHECKING:
    from pathlib import Path

    from gpuxbuild.store.objects import Store

PROVENANCE = "provenance.json"
SIGNED_PROVENANCE = "provenance.dsse.json"
EVIDENCE = (
    PROVENANCE,
    SIGNED_PROVENANCE,
)  # kept beside artifact.json, not listed in it; a signature needs its statement
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "https://gpuxbuild.dev/provenance/build/v1"
BUILDER_ID = "https://gpuxbuild.dev/gpux"


def source_purl(registry: str, repo: str, commit: str) -> str:
    """The package URL of a pinned model source: purl type `huggingface` for the Hub, `oci` for an OCI artifact
    (its manifest digest, the repository as `repository_url`), `generic` otherwise (a URL source's own URL as
    `download_url`)."""
    from urllib.parse import quote as pct

    if registry == "huggingface":
        return f"pkg:huggingface/{repo}@{commit}"
    if "://" in repo:
        location = repo.split("://", 1)[1]
        name = re.split(r"[@:]", location.rstrip("/").rsplit("/", 1)[-1], maxsplit=1)[0] or "model"
        if registry == "oci":
            repository = re.sub(r"(@sha256:[0-9a-f]+|:[^/:@]+)$", "", location)
            return f"pkg:oci/{pct(name, safe='')}@sha256%3A{commit}?repository_url={pct(repository, safe='/:')}"
        return f"pkg:generic/{pct(name, safe='')}@{commit}?download_url={pct(repo, safe='/:')}&registry={registry}"
    return f"pkg:generic/{repo.replace('/', '%2F')}@{commit}?registry={registry}"


def statement(manifest: dict, artifact_digest: str, sources: list[FileEntry], options: dict, version: str) -> dict:
    """The provenance statement of an artifact: `manifest` is its artifact.json, `sources` the pinned source files
    and `options` the lock entry's options; `version` is the gpuxbuild that built it."""
    src = manifest["source"]
    purl = source_purl(src["registry"], src["repo"], src["commit"])
    commit_digest = {"gitCommit": src["commit"]} if len(src["commit"]) == 40 else {"sha256": src["commit"]}
    subject = [{"name": f["path"], "digest": {"sha256": f["sha256"]}} for f in manifest["files"]]
    subject.append({"name": "artifact.json", "digest": {"sha256": artifact_digest.removeprefix("sha256:")}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "name": manifest["name"],
                    "source": src,
                    "task": manifest["task"],
                    "library": manifest["library"],
                    "options": options,
                },
                "internalParameters": {"build_key": manifest["build_key"], "format": manifest["format"]},
                "resolvedDependencies": [
                    {"uri": purl, "digest": commit_digest},
                    *({"uri": f"{purl}#{f.path}", "digest": {"sha256": f.sha256}} for f in sorted(sources)),
                ],
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"gpuxbuild": version, **manifest["toolchain"]}},
                "metadata": {"invocationId": manifest["build_key"]},
            },
        },
    }


def first_diff(want, found, path: str = "") -> str | None:
    """The path of the first place where `found` differs from `want` (JSON-like data), or None."""
    if isinstance(want, dict) and isinstance(found, dict):
        for k in sorted(set(want) | set(found)):
            if (d := first_diff(want.get(k), found.get(k), f"{path}.{k}" if path else k)) is not None:
                return d
        return None
    if isinstance(want, list) and isinstance(found, list):
        for i, (w, f) in enumerate(zip(want, found, strict=False)):
            if (d := first_diff(w, f, f"{path}[{i}]")) is not None:
                return d
        return None if len(want) == len(found) else f"{path} (length)"
    return None if want == found else path


def mismatch(
    manifest: dict, digest: str, prov: dict, sources: list[FileEntry] | None = None, options: dict | None = None
) -> str | None:
    """Where the provenance statement `prov` first differs from the one of the artifact (artifact.json `manifest`,
    its `digest`) built from the lock entry's `sources` and `options`, or None. Without them the statement's own
    materials and options are taken, so everything else is still checked; the gpuxbuild version is always the
    statement's. KeyError or TypeError when `prov` is not a gpuxbuild provenance statement."""
    predicate = prov["predicate"]
    version = predicate["runDetails"]["builder"]["version"]["gpuxbuild"]
    if sources is None:
        deps = predicate["buildDefinition"]["resolvedDependencies"]
        sources = [
            FileEntry(d["uri"].split("#", 1)[1], d["digest"].get("sha256", ""), 0) for d in deps if "#" in d["uri"]
        ]
    if options is None:
        options = predicate["buildDefinition"]["externalParameters"]["options"]
    return first_diff(statement(manifest, digest, sources, options, version), prov)


def evidence_problem(
    manifest: dict,
    digest: str,
    evidence: dict[str, bytes],
    sources: list[FileEntry] | None = None,
    options: dict | None = None,
) -> str | None:
    """Why the evidence files `evidence` (name -> bytes, names of EVIDENCE) are not those of the artifact
    (artifact.json `manifest`, its `digest`; the lock entry's `sources` and `options` when known): one line naming
    the file, or None. No evidence at all is not a problem here (an artifact from before provenance); a
    signature is checked to sign exactly this statement, not cryptographically (that needs the public key)."""
    prov_bytes = evidence.get(PROVENANCE)
    if prov_bytes is None:
        return f"{PROVENANCE}: missing, but {SIGNED_PROVENANCE} is there" if SIGNED_PROVENANCE in evidence else None
    try:
        where = mismatch(manifest, digest, json.loads(prov_bytes), sources, options)
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{PROVENANCE}: not a gpuxbuild provenance statement"
    if where is not None:
        return f"{PROVENANCE}: {where} does not match artifact.json"
    if SIGNED_PROVENANCE in evidence:
        try:
            envelope = json.loads(evidence[SIGNED_PROVENANCE])
        except ValueError:
            return f"{SIGNED_PROVENANCE}: not JSON"
        return check_envelope(envelope, prov_bytes, None)
    return None


def read_evidence(folder: Path) -> dict[str, bytes]:
    """The evidence files (EVIDENCE) the artifact `folder` holds, by name."""
    return {name: (folder / name).read_bytes() for name in EVIDENCE if (folder / name).is_file()}


def rehash_with_provenance(store: Store, key: str) -> tuple[int, list[str]]:
    """`gpux cache verify`'s check of the stored artifact `key` (gpuxbuild.store.gc.ArtifactCheck): every file
    hashed again (rehash_artifact), then its provenance checked against artifact.json (`evidence_problem`)."""
    from gpuxbuild.store.artifacts import artifact_path, rehash_artifact

    checked, problems = rehash_artifact(store, key)
    folder = artifact_path(store, key)
    try:
        data = (folder / "artifact.json").read_bytes()
        problem = evidence_problem(json.loads(data), "sha256:" + sha256_bytes(data), read_evidence(folder))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return checked, problems  # artifact.json itself is missing or unreadable: rehash_artifact says so
    return checked, problems + ([problem] if problem else [])


def dumps(doc: dict) -> bytes:
    """The canonical bytes of a provenance document (sorted keys, 2-space indent, trailing newline)."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_provenance(
    folder: Path, manifest: dict, artifact_digest: str, sources: list[FileEntry], options: dict, sign_key: Path | None
) -> None:
    """Write provenance.json (and with `sign_key`, provenance.dsse.json) into the artifact `folder`."""
    payload = dumps(statement(manifest, artifact_digest, sources, options, __version__))
    signed = folder / SIGNED_PROVENANCE
    if sign_key is not None:
        envelope = sign(payload, sign_key)  # before writing anything: a bad key leaves nothing half-written
        _write(signed, dumps(envelope))
    elif signed.is_file() and check_envelope(json.loads(signed.read_bytes()), payload, None) is not None:
        signed.unlink()  # it signs the statement of another gpuxbuild version: stale, not evidence
    _write(folder / PROVENANCE, payload)


def _write(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    if path.exists():
        path.chmod(0o644)  # artifact files are read-only
    write_atomic(path, data)
    path.chmod(0o444)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _crypto():
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError as exc:
        raise MissingExtraError("supply", "signing provenance") from exc
    return hashes, serialization, ec


def key_id(public_key) -> str:
    """`sha256:` of a public key's DER SubjectPublicKeyInfo: how a signer is named."""
    _, serialization, _ = _crypto()
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + sha256_bytes(der)


def load_signing_key(key_path: Path):
    """The EC private key (PEM, unencrypted) at `key_path`; a usage error (exit 2) naming it otherwise."""
    _, serialization, ec = _crypto()
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise GpuxError(
            f"--sign-key: {quote(str(key_path))} is not an unencrypted PEM private key ({type(exc).__name__})",
            "pass an EC private key in PEM, e.g. from `openssl ecparam -name prime256v1 -genkey -noout -out key.pem`",
            exit_code=2,
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise GpuxError(f"--sign-key: {quote(str(key_path))} is not an EC key", "use an EC (P-256) key", exit_code=2)
    return key


def sign(payload: bytes, key_path: Path) -> dict:
    """A DSSE envelope of `payload` signed with the EC private key (PEM) at `key_path`."""
    hashes, _, ec = _crypto()
    key = load_signing_key(key_path)
    sig = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(sig).decode("ascii")}],
    }


def check_envelope(envelope: dict, payload: bytes, public_key_path: Path | None) -> str | None:
    """Why the DSSE `envelope` does not sign `payload` (with the key at `public_key_path`, when given), or None."""
    try:
        signed = base64.b64decode(envelope["payload"], validate=True)
        sigs = envelope["signatures"]
    except (KeyError, TypeError, ValueError):
        return f"{SIGNED_PROVENANCE}: not a DSSE envelope"
    if signed != payload or envelope.get("payloadType") != PAYLOAD_TYPE:
        return f"{SIGNED_PROVENANCE}: signs another statement than {PROVENANCE}"
    if public_key_path is None:
        return None
    hashes, serialization, ec = _crypto()
    from cryptography.exceptions import InvalidSignature

    try:
        key = serialization.load_pem_public_key(public_key_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise GpuxError(
            f"--key: {quote(str(public_key_path))} is not a PEM public key ({type(exc).__name__})",
            "pass the public half of the --sign-key used by `gpux build`",
            exit_code=2,
        ) from None
    for s in sigs:
        try:
            key.verify(base64.b64decode(s["sig"]), pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
            return None
        except (InvalidSignature, KeyError, TypeError, ValueError):
            continue
    return f"{SIGNED_PROVENANCE}: no signature verifies with {public_key_path.name}"
