"""Build provenance (in-toto Statement v1 + SLSA Provenance v1) beside every artifact, and `gpux verify`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from helpers import gpux, write_manifest

pytest.importorskip("in_toto_attestation", reason="needs the 'supply' extra")


def _built(tmp_path: Path, *args: str) -> tuple[Path, dict]:
    """A project with one local model that ships ONNX (placed, not exported), built; (project, lock entry)."""
    from tinymodels import write_repo

    write_repo("onnx-shipped", tmp_path / "models" / "m")
    write_manifest(tmp_path, {"m": {"source": "path:./models/m"}})
    gpux("build", *args, cwd=tmp_path)
    return tmp_path, yaml.safe_load((tmp_path / "gpux.lock").read_text())["models"]["m"]


def _folder(entry: dict) -> Path:
    return Path(os.environ["GPUX_HOME"]) / "artifacts" / entry["artifact"]["build_key"].removeprefix("sha256:")


def _key_pair(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / "build.pem", folder / "build.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def test_provenance_validates_and_describes_the_artifact(tmp_path):
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    p, entry = _built(tmp_path)
    folder = _folder(entry)
    raw = (folder / "provenance.json").read_text()
    doc = json.loads(raw)
    # The in-toto project's own schema (protobuf) and validator; unknown fields are errors.
    Statement.copy_from_pb(json_format.Parse(raw, statement_pb2.Statement())).validate()
    json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
    manifest = json.loads((folder / "artifact.json").read_bytes())
    subjects = {s["name"]: s["digest"]["sha256"] for s in doc["subject"]}
    assert subjects == {
        **{f["path"]: f["sha256"] for f in manifest["files"]},
        "artifact.json": entry["artifact"]["digest"].removeprefix("sha256:"),
    }
    deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert deps[0]["digest"] == {"sha256": entry["commit"]}
    assert {d["uri"].split("#")[1]: d["digest"]["sha256"] for d in deps[1:]} == {
        f["path"]: f["sha256"] for f in entry["files"]
    }
    assert doc["predicate"]["buildDefinition"]["externalParameters"]["options"] == entry["options"]
    version = doc["predicate"]["runDetails"]["builder"]["version"]
    assert version["gpuxbuild"] and version["onnx"] == manifest["toolchain"]["onnx"]
    assert "provenance.json" not in {f["path"] for f in manifest["files"]}  # the artifact digest does not cover it
    assert str(tmp_path) not in raw and "startedOn" not in raw
    r = gpux("verify", "m", cwd=p)
    assert r.stdout.startswith(f"ok m {entry['artifact']['digest']}\n")
    assert "provenance matches gpux.lock and artifact.json; provenance not signed" in r.stdout
    assert json.loads(gpux("verify", "m", "--json", cwd=p).stdout) == {
        "digest": entry["artifact"]["digest"],
        "files": len(manifest["files"]),
        "locked": True,
        "name": "m",
        "path": str(folder),
        "signature": "none",
    }


def test_provenance_is_byte_stable_and_leaves_the_digest_alone(tmp_path):
    """A rebuild writes the same provenance; an artifact built without it gets it on the next build, same digest."""
    p, entry = _built(tmp_path)
    folder = _folder(entry)
    before = (folder / "provenance.json").read_bytes()
    os.chmod(folder / "provenance.json", 0o644)
    (folder / "provenance.json").unlink()
    r = gpux("build", "--json", cwd=p)
    res = json.loads(r.stdout)["models"][0]
    assert res["status"] == "cached" and res["digest"] == entry["artifact"]["digest"]
    assert (folder / "provenance.json").read_bytes() == before


@pytest.mark.parametrize("victim", ["model.onnx", "gpux.yml", "artifact.json", "provenance.json"])
def test_verify_catches_a_one_byte_change(tmp_path, victim):
    p, entry = _built(tmp_path)
    path = _folder(entry) / victim
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    r = gpux("verify", "m", cwd=p, check=False)
    assert r.returncode == 1, r.stdout
    line = r.stderr.splitlines()[0]
    if victim in ("model.onnx", "gpux.yml"):
        assert f"{victim}: sha256 differs from artifact.json" in line
    elif victim == "artifact.json":
        assert "artifact.json" in line  # a listed sha256, the JSON or the digest: whichever the flipped byte hit
    else:
        assert "provenance.json" in line


def test_verify_catches_an_added_file_and_provenance_edits(tmp_path):
    p, entry = _built(tmp_path)
    folder = _folder(entry)
    (folder / "extra.bin").write_bytes(b"x")
    r = gpux("verify", str(folder), cwd=p, check=False)
    assert r.returncode == 1 and "extra.bin: not listed in artifact.json" in r.stderr
    (folder / "extra.bin").unlink()
    prov = folder / "provenance.json"
    doc = json.loads(prov.read_bytes())
    doc["predicate"]["buildDefinition"]["resolvedDependencies"][1]["digest"]["sha256"] = "0" * 64
    os.chmod(prov, 0o644)
    prov.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    r = gpux("verify", "m", cwd=p, check=False)
    assert r.returncode == 1
    assert "provenance.json: predicate.buildDefinition.resolvedDependencies[1].digest.sha256 does not match" in r.stderr


def test_verify_a_folder_outside_the_project(tmp_path):
    import shutil

    p, entry = _built(tmp_path / "p")
    copy = tmp_path / "copy"
    shutil.copytree(_folder(entry), copy)
    r = gpux("verify", str(copy), cwd=tmp_path)  # no gpux.lock here: checked against artifact.json alone
    assert "provenance matches artifact.json (no gpux.lock entry)" in r.stdout
    r = gpux("verify", "nope", cwd=p, check=False)
    assert r.returncode == 2 and "no model 'nope'" in r.stderr


def test_signed_provenance(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    private, public = _key_pair(keys)
    p, entry = _built(tmp_path / "p", "--sign-key", str(private))
    folder = _folder(entry)
    env = json.loads((folder / "provenance.dsse.json").read_bytes())
    import base64

    assert base64.b64decode(env["payload"]) == (folder / "provenance.json").read_bytes()
    r = gpux("verify", "m", "--key", str(public), cwd=p)
    assert "provenance signature verified" in r.stdout
    assert "signature not checked" in gpux("verify", "m", cwd=p).stdout
    _, other = _key_pair(tmp_path)
    r = gpux("verify", "m", "--key", str(other), cwd=p, check=False)
    assert r.returncode == 1 and "provenance.dsse.json: no signature verifies with build.pub" in r.stderr


def test_verify_key_without_signature_fails(tmp_path):
    _, public = _key_pair(tmp_path)
    p, _ = _built(tmp_path / "p")
    r = gpux("verify", "m", "--key", str(public), cwd=p, check=False)
    assert r.returncode == 1 and "no provenance.dsse.json to check with --key" in r.stderr


def test_bad_sign_key_is_one_line(tmp_path):
    from tinymodels import write_repo

    write_repo("onnx-shipped", tmp_path / "models" / "m")
    write_manifest(tmp_path, {"m": {"source": "path:./models/m"}})
    (tmp_path / "bad.pem").write_text("not a key")
    r = gpux("build", "--sign-key", str(tmp_path / "bad.pem"), cwd=tmp_path, check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: --sign-key: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "gpux.lock").exists()  # refused before anything was locked or built


def test_verify_a_synced_folder_uses_the_stores_provenance(tmp_path):
    """`gpux sync` places what artifact.json lists; the provenance of the same digest is the store's."""
    p, entry = _built(tmp_path)
    gpux("sync", cwd=p)
    synced = p / ".gpux" / "models" / "m"
    r = gpux("verify", str(synced), cwd=p)
    assert r.stdout.startswith(f"ok m {entry['artifact']['digest']}")
    os.chmod(synced / "gpux.yml", 0o644)
    (synced / "gpux.yml").write_text((synced / "gpux.yml").read_text() + "#")
    r = gpux("verify", str(synced), cwd=p, check=False)
    assert r.returncode == 1 and "gpux.yml: sha256 differs from artifact.json" in r.stderr


def test_cache_verify_checks_provenance(tmp_path):
    """`gpux cache verify` reports a provenance that does not describe its artifact as such, with the fix."""
    keys = tmp_path / "keys"
    keys.mkdir()
    private, _ = _key_pair(keys)
    p, entry = _built(tmp_path / "p", "--sign-key", str(private))
    folder = _folder(entry)
    hexkey = folder.name
    assert gpux("cache", "verify", cwd=p).stdout.endswith(": 0 problems\n")

    prov = folder / "provenance.json"
    good = prov.read_bytes()
    doc = json.loads(good)
    doc["subject"][0]["digest"]["sha256"] = "0" * 64
    os.chmod(prov, 0o644)
    prov.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    r = gpux("cache", "verify", cwd=p, check=False)
    assert r.returncode == 1
    assert f"corrupt provenance {hexkey}: provenance.json: subject[0].digest.sha256 does not match artifact.json" in (
        r.stdout
    )
    assert r.stdout.splitlines()[-1].endswith(
        ": 1 problem; run `gpux cache verify --fix`, then `gpux build` builds (or downloads) it again with its provenance"
    )
    report = json.loads(gpux("cache", "verify", "--json", cwd=p, check=False).stdout)
    assert report["bad_artifacts"] == [
        {"artifact": hexkey, "problems": ["provenance.json: subject[0].digest.sha256 does not match artifact.json"]}
    ]

    prov.write_bytes(good)  # the statement back, but the signature signs another one
    dsse = folder / "provenance.dsse.json"
    os.chmod(dsse, 0o644)
    envelope = json.loads(dsse.read_bytes())
    envelope["payload"] = "e30="
    dsse.write_text(json.dumps(envelope))
    r = gpux("cache", "verify", cwd=p, check=False)
    assert r.returncode == 1 and "provenance.dsse.json: signs another statement than provenance.json" in r.stdout

    prov.unlink()  # a signature without its statement: the statement is missing
    r = gpux("cache", "verify", cwd=p, check=False)
    assert "provenance.json: missing, but provenance.dsse.json is there" in r.stdout

    r = gpux("cache", "verify", "--fix", cwd=p)
    assert f"corrupt provenance {hexkey}" in r.stdout and "quarantined" in r.stdout and not folder.exists()
    gpux("build", cwd=p)
    assert gpux("verify", "m", cwd=p).stdout.startswith("ok m ")
    assert gpux("cache", "verify", cwd=p).returncode == 0


def test_cache_verify_accepts_an_artifact_without_provenance(tmp_path):
    """An artifact from before provenance existed (or from a remote that held none) is not corrupt."""
    p, entry = _built(tmp_path)
    prov = _folder(entry) / "provenance.json"
    os.chmod(prov, 0o644)
    prov.unlink()
    assert gpux("cache", "verify", cwd=p).stdout.endswith(": 0 problems\n")
