"""Model signatures at `gpux lock`: a repo's `model.sig` (OpenSSF model signing) checked against the manifest's
`verify:` and the sha256 of every file the lock pins.

The signature is a Sigstore bundle over a DSSE envelope whose payload lists every signed file's digest. Its
signature is verified with the `model-signing` package (a public key, or a Sigstore identity and issuer); the
signed digests are then compared with the lock's own sha256 of each pinned file. So nothing but model.sig is
downloaded, and a file that differs from what was signed is named. Verification with a key is fully offline,
and so is an identity with `certificate_chain:` (a model signed with a certificate of your own CA: the chain is
checked with model-signing's certificate verifier, the identity and issuer with Sigstore's own policy). A
Sigstore (keyless) identity needs Sigstore's trust root: offline only with `trust_config:` (a trust
configuration file), else it is fetched from Sigstore's TUF repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError, IntegrityError, ManifestError, MissingExtraError, quote
from gpuxbuild.hashing import sha256_bytes

if TYPE_CHECKING:
    from pathlib import Path

    from gpuxbuild.project.lockfile import LockedModel
    from gpuxbuild.store.files import FileEntry

SIGNATURE_FILE = "model.sig"


@dataclass(frozen=True)
class SignatureRecord:
    """What the lock records of a verified signature."""

    file: str
    sha256: str
    method: str  # key | certificate | sigstore
    signer: str  # key: sha256 of the public key (DER); certificate, sigstore: "identity (issuer)"

    def as_dict(self) -> dict:
        return {"file": self.file, "method": self.method, "sha256": self.sha256, "signer": self.signer}


def signature_paths(verify: dict | None, paths: list[str]) -> set[str]:
    """The signature file a model with `verify` needs pinned beside its selected files (when the repo has one)."""
    return {SIGNATURE_FILE} if verify is not None and SIGNATURE_FILE in paths else set()


def _signed_digests(verify: dict, sig: Path, project: Path) -> tuple[dict[str, str], list[str], str, str]:
    """(path -> signed sha256, ignored path prefixes, method, signer) of the bundle `sig`, verified with `verify`."""
    try:
        from model_signing._signing import sign_ec_key, sign_sigstore, sign_sigstore_pb
    except ImportError as exc:
        raise MissingExtraError("supply", "verifying model signatures") from exc
    if "key" in verify:
        key = project / verify["key"]
        if not key.is_file():
            raise ManifestError(
                f"verify.key: no public key {quote(verify['key'])} in {project}",
                "the key path is relative to the project",
            )
        from cryptography.hazmat.primitives import serialization

        try:
            der = serialization.load_pem_public_key(key.read_bytes()).public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        except ValueError:
            raise ManifestError(
                f"verify.key: {quote(verify['key'])} is not a PEM public key", "use a .pub PEM file"
            ) from None
        manifest = sign_ec_key.Verifier(key).verify(sign_sigstore_pb.Signature.read(sig))
        method, signer = "key", "sha256:" + sha256_bytes(der)
    elif "certificate_chain" in verify:
        manifest = _verify_certificate(verify, sig, project)
        method, signer = "certificate", f"{verify['identity']} ({verify['issuer']})"
    else:
        trust = project / verify["trust_config"] if verify.get("trust_config") else None
        if trust is not None and not trust.is_file():
            raise ManifestError(
                f"verify.trust_config: no file {quote(verify['trust_config'])} in {project}",
                "the path is relative to the project",
            )
        try:
            verifier = sign_sigstore.Verifier(
                identity=verify["identity"], oidc_issuer=verify["issuer"], trust_config=trust
            )
        except Exception as exc:  # a trust configuration it cannot read, or the TUF fetch of Sigstore's trust root
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            where = f"verify.trust_config {quote(verify['trust_config'])}" if trust else "Sigstore's TUF repository"
            raise GpuxError(
                f"cannot load Sigstore's trust root from {where} ({type(exc).__name__}: {reason})",
                "keyless verification needs Sigstore's trust root: set `trust_config:` to a Sigstore trust "
                "configuration file kept in the project (works offline), or allow the network once",
            ) from None
        try:
            manifest = verifier.verify(sign_sigstore.Signature.read(sig))
        except (ValueError, KeyError):
            raise
        except Exception as exc:  # sigstore's own errors (trust root, its network fetch): fail closed
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc
        method, signer = "sigstore", f"{verify['identity']} ({verify['issuer']})"
    params = manifest.serialization_type
    if params.get("method") != "files" or params.get("hash_type") != "sha256":
        raise GpuxError(
            f"{SIGNATURE_FILE} hashes with {params.get('method')}/{params.get('hash_type')}, not files/sha256",
            "sign with model-signing's default hashing (one sha256 per file) so the lock's hashes can be compared",
        )
    digests = {str(rd.identifier): rd.digest.digest_value.hex() for rd in manifest.resource_descriptors()}
    return digests, list(params.get("ignore_paths") or ()), method, signer


def _verify_certificate(verify: dict, sig: Path, project: Path):
    """The signed manifest of `sig`, a bundle signed with a certificate (model-signing's certificate signer) that
    chains to `verify.certificate_chain` and names `verify.identity` (a SAN) and `verify.issuer` (the Fulcio
    OIDC issuer extension), as a Sigstore certificate does. ValueError when it does not verify."""
    from cryptography import x509
    from model_signing._signing import sign_certificate, sign_sigstore_pb
    from sigstore.errors import VerificationError
    from sigstore.verify.policy import Identity

    chain = project / verify["certificate_chain"]
    if not chain.is_file():
        raise ManifestError(
            f"verify.certificate_chain: no file {quote(verify['certificate_chain'])} in {project}",
            "the path is relative to the project",
        )
    try:
        verifier = sign_certificate.Verifier([chain])
    except (OSError, ValueError):
        raise ManifestError(
            f"verify.certificate_chain: {quote(verify['certificate_chain'])} is not a PEM certificate file",
            "name the CA certificate(s) (PEM) that issue the signers' certificates, relative to the project",
        ) from None
    signature = sign_sigstore_pb.Signature.read(sig)
    try:
        manifest = verifier.verify(signature)  # checks the chain: a bundle without one fails here
        chain_pb = signature.bundle.verification_material.x509_certificate_chain
        assert chain_pb is not None
        Identity(identity=verify["identity"], issuer=verify["issuer"]).verify(
            x509.load_der_x509_certificate(chain_pb.certificates[0].raw_bytes)
        )
    except (ValueError, KeyError):
        raise
    except Exception as exc:  # OpenSSL's chain errors, Sigstore's policy errors, a bundle without a chain
        if isinstance(exc, VerificationError):
            raise ValueError(str(exc)) from exc
        raise ValueError(f"certificate chain: {exc or type(exc).__name__}") from exc
    return manifest


def verify_signature(name: str, verify: dict, files: list[FileEntry], sig: Path, project: Path) -> SignatureRecord:
    """Check `sig` (the model's model.sig, as pinned) against `verify` and the pinned `files`; raise IntegrityError
    naming the first file that differs, or the reason the signature itself is refused."""
    try:
        digests, ignored, method, signer = _signed_digests(verify, sig, project)
    except (ValueError, KeyError) as exc:  # model-signing's errors: bad key, bad bundle, bad signature
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]  # one line, as every error
        raise IntegrityError(
            f"model {name!r}: {SIGNATURE_FILE} does not verify with {_what(verify)}: {reason}",
            "the model was not signed by that signer, or model.sig was changed: check the source, or `verify:`",
        ) from None
    for f in sorted(files):
        if f.path == SIGNATURE_FILE or any(f.path == p or f.path.startswith(p.rstrip("/") + "/") for p in ignored):
            continue
        want = digests.get(f.path)
        if want is None:
            raise IntegrityError(
                f"model {name!r}: {f.path} is not covered by {SIGNATURE_FILE}",
                "the file was added after signing: ask the publisher to re-sign, or exclude it",
            )
        if want != f.sha256:
            raise IntegrityError(
                f"model {name!r}: {f.path} differs from what {SIGNATURE_FILE} signed (sha256 {f.sha256[:12]}, "
                f"signed {want[:12]})",
                "the file was changed after signing: do not use this revision; report it to the publisher",
            )
    return SignatureRecord(SIGNATURE_FILE, sha256_bytes(sig.read_bytes()), method, signer)


def check_model_signature(manager, verify: dict, entry: LockedModel) -> SignatureRecord:
    """Fetch the pinned model.sig of the lock `entry` (with its registry's `manager`) and verify it (`verify_signature`)."""
    sig = next((f for f in entry.files if f.path == SIGNATURE_FILE), None)
    if sig is None:
        raise GpuxError(
            f"model {entry.name!r}: `verify:` is set but the model has no {SIGNATURE_FILE}",
            "sign the model with model-signing (`gpux help supply-chain`), or remove `verify:`",
        )
    manager.fetch(entry.repo, entry.commit, [sig], label=entry.name)
    return verify_signature(entry.name, verify, entry.files, manager.store.object_path(sig.sha256), manager.project)


def _what(verify: dict) -> str:
    if "key" in verify:
        return f"key {verify['key']}"
    return f"identity {verify['identity']}" + (
        f" (CA {verify['certificate_chain']})" if "certificate_chain" in verify else ""
    )


def require_signed(models: dict) -> None:
    """`sync --require-signatures`: raise GpuxError naming the first model (by name) of a lock's `models` whose
    entry records no verified signature of the model.sig it pins. The record is the one `gpux lock` wrote after
    verifying; its sha256 must still be that of the pinned model.sig."""
    for name, entry in sorted(models.items()):
        pinned = {f.path: f.sha256 for f in entry.files}
        rec = entry.signature or {}
        if not rec or pinned.get(rec.get("file")) != rec.get("sha256"):
            raise GpuxError(
                f"model {name!r} is not signed: gpux.lock records no verified {SIGNATURE_FILE} for it",
                "sign it and set `verify:` for it in gpux.models.yml, then run `gpux lock`; or drop --require-signatures",
            )
