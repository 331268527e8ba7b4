"""`gpux sbom`: a CycloneDX 1.6 ML-BOM of the project's gpux.lock, valid and byte-stable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import gpux, publish, write_manifest

pytest.importorskip("cyclonedx", reason="needs the 'supply' extra")


def _validate(text: str) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, error


def test_sbom_of_hub_and_built_local_models(hub, repo_id, tmp_path):
    from tinymodels import write_repo

    commit = publish(hub, repo_id, "bert")
    write_repo("onnx-shipped", tmp_path / "models" / "local")
    write_manifest(tmp_path, {"hub": {"source": f"hf:{repo_id}"}, "local": {"source": "path:./models/local"}})
    gpux("lock", cwd=tmp_path)
    gpux("build", "local", cwd=tmp_path)
    text = gpux("sbom", cwd=tmp_path).stdout
    _validate(text)
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6" and "timestamp" not in doc["metadata"]
    comps = {c["bom-ref"]: c for c in doc["components"]}
    hub_model = comps["model:hub"]
    assert hub_model["type"] == "machine-learning-model" and hub_model["version"] == commit
    assert hub_model["purl"] == f"pkg:huggingface/{repo_id}@{commit}"
    assert hub_model["licenses"] == [{"expression": "apache-2.0"}]
    assert hub_model["externalReferences"] == [
        {"type": "distribution", "url": f"https://huggingface.co/{repo_id}/tree/{commit}"}
    ]
    assert hub_model["modelCard"]["modelParameters"]["task"] == "text-classification"
    lock = (tmp_path / "gpux.lock").read_text()
    for f in hub_model["components"]:
        assert f["type"] == "file" and f["hashes"][0]["content"] in lock
    artifact = comps["artifact:local"]
    assert artifact["pedigree"]["ancestors"][0]["name"] == "local"
    assert {"ref": "artifact:local", "dependsOn": ["model:local"]} in doc["dependencies"]
    assert "artifact:hub" not in comps  # not built: the lock records no artifact for it
    # Byte-stable for one lock, and written with -o as printed.
    gpux("sbom", "-o", "bom.json", cwd=tmp_path)
    assert (tmp_path / "bom.json").read_text() == text == gpux("sbom", cwd=tmp_path).stdout
    # Another lock, another serial number.
    write_manifest(tmp_path, {"local": {"source": "path:./models/local"}})
    gpux("lock", cwd=tmp_path)
    other = json.loads(gpux("sbom", cwd=tmp_path).stdout)
    assert other["serialNumber"] != doc["serialNumber"]


def test_sbom_without_lock_is_one_line(tmp_path):
    write_manifest(tmp_path, {})
    r = gpux("sbom", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "no gpux.lock" in r.stderr and "Traceback" not in r.stderr


def test_lock_check_and_noop_sync_import_no_supply_library(tmp_path):
    """The supply-chain libraries load only on the paths that use them."""
    from tinymodels import write_repo

    write_repo("onnx-shipped", tmp_path / "models" / "m")
    write_manifest(tmp_path, {"m": {"source": "path:./models/m"}})
    gpux("sync", cwd=tmp_path)
    code = (
        "import sys; from gpuxbuild.cli import main\n"
        "for args in (['lock', '--check'], ['sync']):\n"
        "    try:\n        main(['--project', sys.argv[1], *args])\n"
        "    except SystemExit as e:\n        assert e.code in (0, None), e.code\n"
        "bad = [m for m in ('model_signing', 'cyclonedx', 'cryptography', 'sigstore') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _validate_spdx(text: str) -> None:
    import tempfile

    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    with tempfile.NamedTemporaryFile("w", suffix=".spdx.json", delete=False) as f:
        f.write(text)
    messages = validate_full_spdx_document(parse_file(f.name))
    assert messages == [], [m.validation_message for m in messages]


def test_spdx_sbom(hub, repo_id, tmp_path):
    pytest.importorskip("spdx_tools", reason="needs the 'supply' extra")
    from tinymodels import write_repo

    commit = publish(hub, repo_id, "bert")
    model = write_repo("onnx-shipped", tmp_path / "models" / "local")
    (model / "README.md").write_text("---\nlicense: other\n---\n")
    write_manifest(tmp_path, {"hub": {"source": f"hf:{repo_id}"}, "local": {"source": "path:./models/local"}})
    gpux("lock", cwd=tmp_path)
    gpux("build", "local", cwd=tmp_path)
    text = gpux("sbom", "--format", "spdx-json", cwd=tmp_path).stdout
    _validate_spdx(text)
    doc = json.loads(text)
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
    pkgs = {p["name"]: p for p in doc["packages"]}
    assert pkgs["hub"]["versionInfo"] == commit and pkgs["hub"]["licenseDeclared"] == "Apache-2.0"
    assert pkgs["hub"]["downloadLocation"] == f"https://huggingface.co/{repo_id}/tree/{commit}"
    assert pkgs["hub"]["externalRefs"][0]["referenceLocator"] == f"pkg:huggingface/{repo_id}@{commit}"
    assert pkgs["local"]["licenseDeclared"] == "NOASSERTION" and "other" in pkgs["local"]["licenseComments"]
    art = pkgs["local-onnx"]
    assert {
        "spdxElementId": art["SPDXID"],
        "relationshipType": "GENERATED_FROM",
        "relatedSpdxElement": pkgs["local"]["SPDXID"],
    } in doc["relationships"]
    assert gpux("sbom", "--format", "spdx-json", cwd=tmp_path).stdout == text
    later = gpux("sbom", "--format", "spdx-json", cwd=tmp_path, env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    assert json.loads(later.stdout)["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
