"""Model signatures (OpenSSF model signing) verified at `gpux lock`, `sync --require-signatures`, license policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from helpers import gpux, write_manifest

pytest.importorskip("model_signing", reason="needs the 'supply' extra")


def _key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A fresh P-256 key pair as PEM files `name.pem` (private) and `name.pub`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def _sign(model: Path, private: Path) -> None:
    from model_signing import signing

    signing.Config().use_elliptic_key_signer(private_key=private).sign(model, model / "model.sig")


def _project(tmp_path: Path, *, sign: bool = True, verify_key: str = "keys/team.pub") -> Path:
    from tinymodels import write_repo

    model = write_repo("bert", tmp_path / "models" / "m")
    private, _ = _key_pair(tmp_path / "keys", "team")
    if sign:
        _sign(model, private)
    write_manifest(tmp_path, {"m": {"source": "path:./models/m", "verify": {"key": verify_key}}})
    return tmp_path


def _lock(project: Path) -> dict:
    return yaml.safe_load((project / "gpux.lock").read_text())


def test_signed_model_locks_with_its_signer(tmp_path):
    from cryptography.hazmat.primitives import serialization

    p = _project(tmp_path)
    gpux("lock", cwd=p)
    entry = _lock(p)["models"]["m"]
    sig = entry["signature"]
    der = serialization.load_pem_public_key((p / "keys/team.pub").read_bytes()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib

    assert sig["method"] == "key" and sig["signer"] == "sha256:" + hashlib.sha256(der).hexdigest()
    assert (
        sig["file"] == "model.sig"
        and {"path": "model.sig", "sha256": sig["sha256"], "size": (p / "models/m/model.sig").stat().st_size}
        in entry["files"]
    )
    assert entry["options"]["verify"] == {"key": "keys/team.pub"}
    gpux("lock", "--check", cwd=p)
    before = (p / "gpux.lock").read_bytes()
    gpux("lock", cwd=p)
    assert (p / "gpux.lock").read_bytes() == before


def test_unsigned_model_with_verify_is_refused(tmp_path):
    p = _project(tmp_path, sign=False)
    r = gpux("lock", cwd=p, check=False)
    assert r.returncode == 1 and "model 'm': `verify:` is set but the model has no model.sig" in r.stderr
    assert not (p / "gpux.lock").exists()


def test_tampered_file_is_named(tmp_path):
    p = _project(tmp_path)
    cfg = p / "models/m/config.json"
    cfg.write_bytes(cfg.read_bytes().replace(b"{", b"{ ", 1))
    r = gpux("lock", cwd=p, check=False)
    assert r.returncode == 1, r.stderr
    assert "model 'm': config.json differs from what model.sig signed" in r.stderr
    assert not (p / "gpux.lock").exists()


def test_file_added_after_signing_is_named(tmp_path):
    p = _project(tmp_path)
    (p / "models/m/extra.txt").write_text("added later")
    r = gpux("lock", cwd=p, check=False)
    assert r.returncode == 1 and "model 'm': extra.txt is not covered by model.sig" in r.stderr


def test_wrong_key_is_refused(tmp_path):
    p = _project(tmp_path, verify_key="keys/other.pub")
    _key_pair(p / "keys", "other")
    r = gpux("lock", cwd=p, check=False)
    assert r.returncode == 1
    assert "model 'm': model.sig does not verify with key keys/other.pub" in r.stderr
    assert not (p / "gpux.lock").exists()


def test_missing_key_file_is_a_manifest_error(tmp_path):
    p = _project(tmp_path, verify_key="keys/nope.pub")
    r = gpux("lock", cwd=p, check=False)
    assert r.returncode == 2 and "verify.key: no public key 'keys/nope.pub'" in r.stderr


def test_sync_require_signatures(tmp_path):
    from tinymodels import write_repo

    p = _project(tmp_path)
    write_repo("bert", p / "models" / "plain")
    doc = yaml.safe_load((p / "gpux.models.yml").read_text())
    doc["models"]["plain"] = {"source": "path:./models/plain"}
    (p / "gpux.models.yml").write_text(yaml.safe_dump(doc))
    gpux("lock", cwd=p)
    r = gpux("sync", "--require-signatures", "--dry-run", cwd=p, check=False)
    assert r.returncode == 1 and "model 'plain' is not signed" in r.stderr
    del doc["models"]["plain"]
    (p / "gpux.models.yml").write_text(yaml.safe_dump(doc))
    r = gpux("sync", "--require-signatures", "--dry-run", cwd=p)
    assert "dry run" in r.stdout


def test_lock_without_verify_is_unchanged_by_signatures(tmp_path):
    """A model without `verify:` gets neither options.verify nor a signature record: old locks stay byte-identical."""
    p = _project(tmp_path)
    write_manifest(p, {"m": {"source": "path:./models/m"}})
    gpux("lock", cwd=p)
    entry = _lock(p)["models"]["m"]
    assert "signature" not in entry and "verify" not in entry["options"]


@pytest.mark.parametrize(
    ("allowed", "card", "error"),
    [
        (["apache-2.0", "mit"], {"license": "apache-2.0"}, None),
        (["Apache-2.0"], {"license": "apache-2.0"}, None),
        (
            ["mit"],
            {"license": "apache-2.0"},
            "model 'm': license 'apache-2.0' is not allowed by policy.allow_licenses (mit)",
        ),
        (["mit"], {}, "model 'm': no license in its card or config is not allowed by policy.allow_licenses (mit)"),
    ],
)
def test_license_policy(tmp_path, allowed, card, error):
    from tinymodels import write_repo

    model = write_repo("bert", tmp_path / "models" / "m")
    (model / "README.md").write_text("---\n" + yaml.safe_dump(card) + "---\n# m\n" if card else "# m\n")
    doc = {"version": 1, "policy": {"allow_licenses": allowed}, "models": {"m": {"source": "path:./models/m"}}}
    (tmp_path / "gpux.models.yml").write_text(yaml.safe_dump(doc))
    r = gpux("lock", cwd=tmp_path, check=False)
    if error is None:
        assert r.returncode == 0, r.stderr
        assert _lock(tmp_path)["models"]["m"]["license"] == card["license"]
        gpux("lock", "--check", cwd=tmp_path)
    else:
        assert r.returncode == 1 and error in r.stderr
        assert not (tmp_path / "gpux.lock").exists()


def test_license_from_config_when_the_card_has_none(tmp_path):
    import json

    from tinymodels import write_repo

    model = write_repo("bert", tmp_path / "models" / "m")
    cfg = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**cfg, "license": "mit"}))
    write_manifest(tmp_path, {"m": {"source": "path:./models/m"}})
    gpux("lock", cwd=tmp_path)
    assert _lock(tmp_path)["models"]["m"]["license"] == "mit"


def test_policy_change_is_enforced_by_lock_check(tmp_path):
    from tinymodels import write_repo

    write_repo("bert", tmp_path / "models" / "m")
    write_manifest(tmp_path, {"m": {"source": "path:./models/m"}})
    gpux("lock", cwd=tmp_path)
    doc = yaml.safe_load((tmp_path / "gpux.models.yml").read_text())
    doc["policy"] = {"allow_licenses": ["mit"]}
    (tmp_path / "gpux.models.yml").write_text(yaml.safe_dump(doc))
    r = gpux("lock", "--check", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "model 'm'" in r.stderr and "policy.allow_licenses" in r.stderr


def _signed_files(tmp_path: Path, private: Path, *, tamper: str | None = None) -> dict[str, bytes]:
    """The files of a tiny bert repo plus its model.sig; `tamper`: a file changed after signing."""
    from tinymodels import write_repo

    folder = write_repo("bert", tmp_path / "signed")
    _sign(folder, private)
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    if tamper:
        files[tamper] = files[tamper] + b" "
    return files


@pytest.mark.parametrize("tamper", [None, "model.safetensors"])
def test_hub_model_signature_is_checked_against_pinned_hashes(hub, repo_id, tmp_path, tamper):
    """A Hub repo's model.sig is fetched alone: the weights are compared through the sha256 the Hub lists."""
    private, _ = _key_pair(tmp_path / "keys", "team")
    hub.create_repo(repo_id, card={"license": "mit"})
    hub.commit(repo_id, _signed_files(tmp_path, private, tamper=tamper))
    write_manifest(tmp_path, {"m": {"source": f"hf:{repo_id}", "verify": {"key": "keys/team.pub"}}})
    r = gpux("lock", cwd=tmp_path, check=False)
    if tamper is None:
        assert r.returncode == 0, r.stderr
        entry = _lock(tmp_path)["models"]["m"]
        assert entry["signature"]["method"] == "key" and entry["license"] == "mit"
        weights = next(f["sha256"] for f in entry["files"] if f["path"] == "model.safetensors")
        assert not any(weights in p.name for p in Path(os.environ["GPUX_HOME"]).rglob("*"))  # never downloaded
    else:
        assert r.returncode == 1 and f"model 'm': {tamper} differs from what model.sig signed" in r.stderr


def test_a_hand_edited_signature_record_is_not_trusted(tmp_path):
    p = _project(tmp_path)
    gpux("lock", cwd=p)
    text = (p / "gpux.lock").read_text()
    sig = _lock(p)["models"]["m"]["signature"]["sha256"]
    edited = text.replace(f"sha256: {sig}\n      signer", f"sha256: {'a' * 64}\n      signer")
    assert edited != text
    (p / "gpux.lock").write_text(edited)
    r = gpux("sync", "--require-signatures", "--dry-run", cwd=p, check=False)
    assert r.returncode == 1 and "model 'm' is not signed" in r.stderr


def test_verify_removed_from_the_lock_by_hand_is_refused(tmp_path):
    p = _project(tmp_path)
    gpux("lock", cwd=p)
    doc = yaml.safe_load((p / "gpux.lock").read_text())
    del doc["models"]["m"]["options"]["verify"]
    del doc["models"]["m"]["signature"]
    (p / "gpux.lock").write_text(yaml.safe_dump(doc))
    r = gpux("lock", "--check", cwd=p, check=False)
    assert r.returncode == 1 and "gpux.lock does not match gpux.models.yml for m: options.verify" in r.stderr
    r = gpux("sync", "--frozen", "--dry-run", cwd=p, check=False)
    assert r.returncode == 1 and "gpux.lock is not consistent for m: spec_digest" in r.stderr


def test_sigstore_identity_checks_fail_closed_offline(tmp_path):
    """A Sigstore identity needs a trust root: a missing trust_config is a manifest error, a bad one (or a
    bundle that is not a Sigstore one) refuses the model in one line. Nothing is fetched."""
    p = _project(tmp_path)
    sigstore = {"identity": "release@example.com", "issuer": "https://accounts.example.com"}
    write_manifest(p, {"m": {"source": "path:./models/m", "verify": {**sigstore, "trust_config": "trust.json"}}})
    r = gpux("lock", cwd=p, check=False)
    assert r.returncode == 2 and "verify.trust_config: no file 'trust.json'" in r.stderr
    (p / "trust.json").write_text("{}")
    r = gpux("lock", cwd=p, check=False)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 2, r.stderr
    assert r.stderr.startswith(
        "error: model 'm': cannot load Sigstore's trust root from verify.trust_config 'trust.json' ("
    )
    assert "set `trust_config:` to a Sigstore trust configuration file" in r.stderr
    assert not (p / "gpux.lock").exists()


# ------------------------------------------------ an identity in a certificate of your own CA (offline, no Sigstore)

ISSUER = "https://issuer.example"


def _ca(folder: Path, name: str):
    """A self-signed CA: (its private key, its certificate, the PEM file)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, folder / f"{name}.pem"


def _sign_with_certificate(model: Path, ca, identity: str, issuer: str = ISSUER) -> None:
    """Sign `model` with a fresh leaf certificate of `ca` shaped like a Fulcio one: the identity as SAN, the
    OIDC issuer in Fulcio's extensions (1.3.6.1.4.1.57264.1.1 raw, .1.8 DER UTF8String), code signing."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from model_signing import signing

    ca_key, ca_cert, ca_pem = ca
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    raw = issuer.encode()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(minutes=10))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(identity)]), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), raw), False)
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), b"\x0c" + bytes([len(raw)]) + raw
            ),
            False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    work = ca_pem.parent
    (work / "leaf.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (work / "leaf.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    signing.Config().use_certificate_signer(
        private_key=work / "leaf.key", signing_certificate=work / "leaf.pem", certificate_chain=[ca_pem]
    ).sign(model, model / "model.sig")
    for name in ("leaf.key", "leaf.pem"):
        (work / name).unlink()


def _certificate_project(tmp_path: Path, identity: str = "release@example.com", issuer: str = ISSUER) -> Path:
    """A model signed by release@example.com with a certificate of ca/team.pem; the manifest expects `identity`
    and `issuer` from that CA."""
    from tinymodels import write_repo

    model = write_repo("bert", tmp_path / "models" / "m")
    _sign_with_certificate(model, _ca(tmp_path / "ca", "team"), "release@example.com")
    verify = {"identity": identity, "issuer": issuer, "certificate_chain": "ca/team.pem"}
    write_manifest(tmp_path, {"m": {"source": "path:./models/m", "verify": verify}})
    return tmp_path


def test_certificate_identity_locks_offline(tmp_path):
    p = _certificate_project(tmp_path)
    gpux("lock", cwd=p)
    sig = _lock(p)["models"]["m"]["signature"]
    assert sig["method"] == "certificate" and sig["signer"] == f"release@example.com ({ISSUER})"
    gpux("sync", "--require-signatures", "--dry-run", cwd=p)


@pytest.mark.parametrize(
    ("identity", "issuer", "why"),
    [
        ("other@example.com", ISSUER, "Certificate's SANs do not match other@example.com; actual SANs: "),
        (
            "release@example.com",
            "https://accounts.example.com",
            f"Certificate's OIDCIssuer does not match (got '{ISSUER}', expected 'https://accounts.example.com')",
        ),
    ],
)
def test_certificate_with_another_identity_or_issuer_is_refused(tmp_path, identity, issuer, why):
    p = _certificate_project(tmp_path, identity, issuer)
    r = gpux("lock", cwd=p, check=False)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 2, r.stderr
    assert r.stderr.startswith(
        f"error: model 'm': model.sig does not verify with identity {identity} (CA ca/team.pem): "
    )
    assert why in r.stderr and not (p / "gpux.lock").exists()


def test_certificate_of_another_ca_or_a_changed_file_is_refused(tmp_path):
    p = _certificate_project(tmp_path)
    _ca(p / "ca", "team")  # the manifest's CA is now another one, with the same name
    r = gpux("lock", cwd=p, check=False)
    assert r.returncode == 1 and "model.sig does not verify with identity release@example.com (CA ca/team.pem): " in (
        r.stderr
    )
    assert "certificate chain: " in r.stderr and len(r.stderr.splitlines()) == 2

    q = _certificate_project(tmp_path / "q")
    (q / "models/m/config.json").write_text((q / "models/m/config.json").read_text() + " ")
    r = gpux("lock", cwd=q, check=False)
    assert r.returncode == 1 and "config.json differs from what model.sig signed" in r.stderr

    k = _project(tmp_path / "k")  # signed with a bare key: no certificate chain in the bundle
    manifest = yaml.safe_load((k / "gpux.models.yml").read_text())
    _ca(k / "ca", "team")
    manifest["models"]["m"]["verify"] = {"identity": "a@b.c", "issuer": ISSUER, "certificate_chain": "ca/team.pem"}
    (k / "gpux.models.yml").write_text(yaml.safe_dump(manifest))
    r = gpux("lock", cwd=k, check=False)
    assert r.returncode == 1 and "model.sig does not verify with identity a@b.c (CA ca/team.pem): " in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 2
