"""`gpux sync` through the real CLI against the test Hub: plan, restore, lock modes, offline, kills, races."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gpux_runtime import load_with_gpux_runtime
from helpers import gpux, publish, read_lock, write_manifest

HEAVY = ("torch", "transformers", "optimum", "onnxruntime", "huggingface_hub")


def models_dir(project: Path) -> Path:
    return project / ".gpux" / "models"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_folder(folder: Path) -> str:
    """Assert `folder` is exactly one artifact (its artifact.json's files, byte for byte); return its digest."""
    manifest = json.loads((folder / "artifact.json").read_text())
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert present == set(listed) | {"artifact.json"}, (
        f"{folder.name}: {sorted(present ^ (set(listed) | {'artifact.json'}))}"
    )
    for rel, digest in listed.items():
        assert sha(folder / rel) == digest, f"{folder.name}/{rel} differs from its artifact.json"
    return "sha256:" + sha(folder / "artifact.json")


def snapshot(root: Path) -> dict:
    """Every path under root with its inode, mtime and bytes' hash."""
    out = {}
    for p in sorted(root.rglob("*")) if root.exists() else []:
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (st.st_ino, st.st_mtime_ns, sha(p) if p.is_file() else None)
    return out


def summary(out: str) -> str:
    return next(line for line in out.splitlines() if line.endswith("unchanged"))


@pytest.fixture
def onnx_repo(hub, repo_id):
    """A repo shipping ONNX (no export, no torch needed to build)."""
    publish(hub, repo_id, "onnx-shipped")
    return repo_id


def test_first_sync_then_noop(hub, onnx_repo, tmp_path, gpux_home):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}, "b": {"source": f"hf:{onnx_repo}"}})
    r = gpux("sync", cwd=tmp_path)
    assert summary(r.stdout) == "2 added, 0 updated, 0 removed, 0 unchanged"
    assert "artifacts: 0 reused, 2 built" in r.stdout and "placed by hardlink" in r.stdout
    lock = read_lock(tmp_path)  # sync locked the project first, then recorded each artifact's digest
    target = models_dir(tmp_path)
    for name in ("a", "b"):
        folder = target / name
        digest = check_folder(folder)
        art = lock["models"][name]["artifact"]
        assert art["digest"] == digest
        store_art = gpux_home / "artifacts" / art["build_key"].removeprefix("sha256:")
        for p in folder.iterdir():
            assert p.stat().st_mode & 0o222 == 0  # read-only
            assert p.stat().st_ino == (store_art / p.name).stat().st_ino  # a hardlink, not a copy
    assert (target / ".gitignore").read_text().endswith("*\n")

    # The store knows what this project uses, so `cache prune` keeps it.
    records = list((gpux_home / "refs" / "projects").glob("*.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["project"] == str(tmp_path.resolve()) and sorted(rec["models"]) == ["a", "b"]
    assert rec["models"]["a"]["artifact"]["digest"] == lock["models"]["a"]["artifact"]["digest"]
    assert set(rec["models"]["a"]["files"]) == {f["sha256"] for f in lock["models"]["a"]["files"]}
    pruned = json.loads(gpux("cache", "prune", "--dry-run", "--json", cwd=tmp_path).stdout)
    assert pruned["artifacts"] == []
    assert not set(pruned["objects"]) & {f["sha256"] for m in lock["models"].values() for f in m["files"]}

    before, lock_bytes = snapshot(target), (tmp_path / "gpux.lock").read_bytes()
    hub.reset_log()
    t = time.perf_counter()
    r = gpux("sync", cwd=tmp_path)
    assert summary(r.stdout) == "0 added, 0 updated, 0 removed, 2 unchanged"
    assert time.perf_counter() - t < 5
    assert hub.count() == 0
    assert snapshot(target) == before and (tmp_path / "gpux.lock").read_bytes() == lock_bytes

    # The folder is what the GPUX runtime itself loads.
    config = load_with_gpux_runtime(target / "a" / "gpux.yml")
    assert config["name"] == "a"
    for ref in ("a", str(target / "a")):
        r = gpux("run", ref, "I loved this movie", "--json", cwd=tmp_path)
        assert "POSITIVE" in r.stdout or "NEGATIVE" in r.stdout


def test_added_removed_revision_bump_and_options(hub, onnx_repo, tmp_path):
    first = hub.head(onnx_repo)
    hub.tag(onnx_repo, "v1")
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}", "revision": "v1"}, "b": {"source": f"hf:{onnx_repo}"}})
    gpux("sync", cwd=tmp_path)
    target = models_dir(tmp_path)
    old_a = check_folder(target / "a")

    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}", "revision": "v1"}, "c": {"source": f"hf:{onnx_repo}"}})
    r = gpux("sync", cwd=tmp_path)
    assert summary(r.stdout) == "1 added, 0 updated, 1 removed, 1 unchanged"
    assert "+ c" in r.stdout and "- b" in r.stdout and "no longer locked" in r.stdout and "re-locked" in r.stdout
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == ["a", "c"]
    assert check_folder(target / "a") == old_a

    from tinymodels import make_repo

    second = hub.commit(onnx_repo, make_repo("onnx-shipped", seed=1), message="retrain")
    hub.tag(onnx_repo, "v2")
    write_manifest(
        tmp_path,
        {
            "a": {"source": f"hf:{onnx_repo}", "revision": "v2"},
            "c": {"source": f"hf:{onnx_repo}", "runtime": {"gpu": {"memory": "4GB"}}},
        },
    )
    r = gpux("sync", "--json", cwd=tmp_path)
    plan = {m["name"]: m for m in json.loads(r.stdout)["models"]}
    assert plan["a"]["action"] == "update" and plan["a"]["reasons"] == [f"commit {first[:12]} -> {second[:12]}"]
    assert plan["c"]["action"] == "update" and plan["c"]["reasons"] == ["options changed"]
    lock = read_lock(tmp_path)
    assert lock["models"]["a"]["commit"] == second and lock["models"]["c"]["commit"] == first
    for name in ("a", "c"):
        assert check_folder(target / name) == lock["models"][name]["artifact"]["digest"]
    assert check_folder(target / "a") != old_a
    assert "4GB" in (target / "c" / "gpux.yml").read_text()


def test_drift_restored_user_files_left_alone(onnx_repo, tmp_path, gpux_home):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("sync", cwd=tmp_path)
    target = models_dir(tmp_path)
    folder = target / "a"
    digest = check_folder(folder)
    store_tok = (
        gpux_home / "artifacts" / read_lock(tmp_path)["models"]["a"]["artifact"]["build_key"][7:] / "tokenizer.json"
    )
    store_tok_sha = sha(store_tok)

    (folder / "config.json").unlink()
    (folder / "tokenizer.json").unlink()  # editors replace a file; the store's copy is a separate link
    (folder / "tokenizer.json").write_text("{}")
    os.utime(folder / "gpux.yml", ns=(1, 1))  # a new mtime with the same bytes is no drift
    (folder / "notes.txt").write_text("mine")
    (target / "mine").mkdir()
    (target / "mine" / "x.onnx").write_bytes(b"my own model")
    (target / "README.md").write_text("my readme")

    r = gpux("sync", cwd=tmp_path)
    assert summary(r.stdout) == "0 added, 1 updated, 0 removed, 0 unchanged"
    assert "files drifted: config.json (deleted), tokenizer.json (changed)" in r.stdout
    for user in ("a/notes.txt", "mine/", "README.md"):
        assert f"? {user}" in r.stdout
    assert check_folder_with_user(folder, {"notes.txt"}) == digest
    assert sha(store_tok) == store_tok_sha
    assert (folder / "notes.txt").read_text() == "mine" and (target / "mine" / "x.onnx").exists()

    r = gpux("sync", cwd=tmp_path)
    assert summary(r.stdout) == "0 added, 0 updated, 0 removed, 1 unchanged" and "? a/notes.txt" in r.stdout

    # Removing the model removes what sync placed, never the user's files.
    write_manifest(tmp_path, {})
    r = gpux("sync", cwd=tmp_path)
    assert summary(r.stdout) == "0 added, 0 updated, 1 removed, 0 unchanged"
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert (target / "mine" / "x.onnx").read_bytes() == b"my own model" and (target / "README.md").exists()


def check_folder_with_user(folder: Path, user: set[str]) -> str:
    manifest = json.loads((folder / "artifact.json").read_text())
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert present == {f["path"] for f in manifest["files"]} | {"artifact.json"} | user
    for f in manifest["files"]:
        assert sha(folder / f["path"]) == f["sha256"]
    return "sha256:" + sha(folder / "artifact.json")


def test_dry_run_changes_nothing(hub, onnx_repo, tmp_path, gpux_home):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("sync", cwd=tmp_path)
    write_manifest(
        tmp_path,
        {"a": {"source": f"hf:{onnx_repo}", "runtime": {"gpu": {"memory": "8GB"}}}, "b": {"source": f"hf:{onnx_repo}"}},
    )
    (models_dir(tmp_path) / "a" / "config.json").unlink()
    before = snapshot(tmp_path), snapshot(gpux_home / "artifacts")
    r = gpux("sync", "--dry-run", cwd=tmp_path)
    assert "dry run, nothing changed: 1 added, 1 updated, 0 removed, 0 unchanged" in r.stdout
    assert "would re-lock" in r.stdout and "(to build)" in r.stdout
    data = json.loads(gpux("sync", "--dry-run", "--json", cwd=tmp_path).stdout)
    assert data["dry_run"] is True
    assert {m["name"]: m["action"] for m in data["models"]} == {"a": "update", "b": "add"}
    assert {c["name"] for c in data["relocked"]} == {"a", "b"}
    assert (snapshot(tmp_path), snapshot(gpux_home / "artifacts")) == before


def test_locked_and_frozen(onnx_repo, tmp_path):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    r = gpux("sync", "--locked", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "there is no gpux.lock" in r.stderr
    gpux("sync", cwd=tmp_path)
    assert summary(gpux("sync", "--locked", cwd=tmp_path).stdout).endswith("1 unchanged")

    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}, "b": {"source": f"hf:{onnx_repo}"}})
    lock_bytes, before = (tmp_path / "gpux.lock").read_bytes(), snapshot(models_dir(tmp_path))
    r = gpux("sync", "--locked", cwd=tmp_path, check=False)
    assert (
        r.returncode == 1 and "gpux.lock is out of date: not locked yet: b" in r.stderr and "Traceback" not in r.stderr
    )
    assert (tmp_path / "gpux.lock").read_bytes() == lock_bytes and snapshot(models_dir(tmp_path)) == before

    # --frozen: the lock as it is, without even reading the manifest.
    (tmp_path / "gpux.models.yml").write_text("models: [not valid")
    (models_dir(tmp_path) / "a" / "gpux.yml").unlink()
    r = gpux("sync", "--frozen", cwd=tmp_path)
    assert summary(r.stdout) == "0 added, 1 updated, 0 removed, 0 unchanged"
    assert (tmp_path / "gpux.lock").read_bytes() == lock_bytes and not (models_dir(tmp_path) / "b").exists()
    assert gpux("sync", "--locked", "--frozen", cwd=tmp_path, check=False).returncode == 2

    # --locked also holds the artifacts to the digests gpux.lock records.
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    text = (tmp_path / "gpux.lock").read_text()
    digest = read_lock(tmp_path)["models"]["a"]["artifact"]["digest"]
    (tmp_path / "gpux.lock").write_text(text.replace(digest, "sha256:" + "0" * 64))
    r = gpux("sync", "--locked", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "differs from sha256:0000" in r.stderr


def test_offline_with_hub_stopped(hub, onnx_repo, tmp_path, hf_env, tmp_path_factory):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("sync", cwd=tmp_path)
    hub.stop()
    try:
        (models_dir(tmp_path) / "a" / "model.onnx").unlink()
        r = gpux("sync", "--offline", cwd=tmp_path)
        assert summary(r.stdout) == "0 added, 1 updated, 0 removed, 0 unchanged"
        check_folder(models_dir(tmp_path) / "a")

        # A model not locked yet needs the network: the error names it.
        write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}, "b": {"source": f"hf:{onnx_repo}"}})
        r = gpux("sync", "--offline", cwd=tmp_path, check=False)
        assert r.returncode != 0 and "'b'" in r.stderr and "offline" in r.stderr and "Traceback" not in r.stderr

        # An empty store under HF_HUB_OFFLINE=1: the missing sources are named, nothing is tried.
        write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
        hf_env(HF_HUB_OFFLINE="1", GPUX_HOME=str(tmp_path_factory.mktemp("empty_home")))
        r = gpux("sync", "--target", str(tmp_path / "elsewhere"), cwd=tmp_path, check=False)
        assert r.returncode == 1 and "'a'" in r.stderr and "not in the store" in r.stderr and "model.onnx" in r.stderr
        assert not (tmp_path / "elsewhere").exists()
    finally:
        hub.start()


def test_missing_convert_extra_names_models(hub, repo_id, tmp_path, hf_env):
    publish(hub, repo_id, "bert")  # PyTorch weights: needs an export
    shadow = tmp_path / "shadow"
    (shadow / "torch").mkdir(parents=True)
    (shadow / "torch" / "__init__.py").write_text("raise ImportError('torch hidden by the test')\n")
    hf_env(PYTHONPATH=str(shadow))
    project = tmp_path / "p"
    write_manifest(project, {"x": {"source": f"hf:{repo_id}"}, "y": {"source": f"hf:{repo_id}"}})
    r = gpux("sync", cwd=project, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert (
        "syncing x, y" in r.stderr and "'convert' extra" in r.stderr and "pip install 'gpuxbuild[convert]'" in r.stderr
    )
    assert not models_dir(project).exists()


def test_link_modes_and_target(onnx_repo, tmp_path, gpux_home):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    out = tmp_path / "out"
    r = gpux("sync", "--target", str(out), "--link-mode", "copy", cwd=tmp_path)
    assert "placed by copy" in r.stdout
    key = read_lock(tmp_path)["models"]["a"]["artifact"]["build_key"][7:]
    for p in (out / "a").iterdir():
        assert (
            p.stat().st_ino != (gpux_home / "artifacts" / key / p.name).stat().st_ino and p.stat().st_mode & 0o222 == 0
        )
    check_folder(out / "a")
    r = gpux("sync", "--link-mode", "reflink", cwd=tmp_path, check=False)
    if r.returncode == 0:  # a filesystem with reflinks (btrfs, xfs)
        assert "placed by reflink" in r.stdout
    else:
        assert "--link-mode reflink: not supported here" in r.stderr and "Traceback" not in r.stderr
        assert not (models_dir(tmp_path) / "a").exists()


def _noop_modules(project: Path, watched: tuple[str, ...] = HEAVY) -> list[str]:
    """The `watched` top-level packages that a no-op `gpux sync` of `project` imports."""
    code = (
        "import json, sys\nfrom gpuxbuild.cli import main\n"
        "try:\n    main(['sync'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(watched)!r})))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert summary(r.stdout).endswith("unchanged") and " 0 updated" in r.stdout
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_noop_sync_imports_nothing_heavy(onnx_repo, tmp_path):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("sync", cwd=tmp_path)
    # The start-up fast path (gpuxbuild.cli.quick) needs not even the CLI framework or the store's locks.
    assert _noop_modules(tmp_path, (*HEAVY, "click", "rich", "filelock", "yaml", "jsonschema")) == []
    # Also through the full plan (no fast-path memo, every file re-hashed because its stat changed).
    record = models_dir(tmp_path) / ".gpux-sync.json"
    data = json.loads(record.read_text())
    del data["fast"]
    record.write_text(json.dumps(data))
    os.utime(models_dir(tmp_path) / "a" / "model.onnx", ns=(5, 5))
    assert _noop_modules(tmp_path) == []


def test_quick_noop_prints_what_the_full_command_prints(onnx_repo, tmp_path, monkeypatch, capsys):
    from gpuxbuild.cli.app import cli
    from gpuxbuild.cli.quick import quick_sync

    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}, "b": {"source": f"hf:{onnx_repo}"}})
    gpux("sync", cwd=tmp_path)
    other = tmp_path / "elsewhere"
    gpux("sync", "--target", str(other), cwd=tmp_path)
    monkeypatch.chdir(tmp_path)

    def both(argv: list[str]) -> tuple[bool, str, str]:
        answered = quick_sync(argv)
        quick = capsys.readouterr().out
        with pytest.raises(SystemExit) as exit:
            cli.main(argv, prog_name="gpux")
        assert exit.value.code == 0
        return answered, quick, capsys.readouterr().out

    for argv in (
        ["sync"],
        ["-q", "sync", "--locked"],
        ["--project", str(tmp_path), "sync", "--frozen", "--offline"],
        ["--quiet", "--project=.", "sync", "--link-mode=copy", "--offline", "--locked"],
        ["sync", "--target", "elsewhere"],
        ["sync", f"--target={other}", "--link-mode", "hardlink"],
    ):
        answered, quick, full = both(argv)
        assert answered and quick == full and "2 unchanged" in full, argv
    # What it leaves to the full command: other output forms, files to report, changes to make.
    for argv in (
        ["sync", "--json"],
        ["sync", "--dry-run"],
        ["sync", "-q"],
        ["sync", "--locked", "--frozen"],
        ["sync", "--link-mode", "fast"],
        ["sync", "--target"],
        ["lock"],
        ["--version"],
        ["sync", "--help"],
    ):
        assert not quick_sync(argv), argv
    assert capsys.readouterr().out == ""
    (models_dir(tmp_path) / "a" / "notes.txt").write_text("mine")
    answered, quick, full = both(["sync"])
    assert not answered and quick == "" and "a/notes.txt (not placed by gpux sync; left alone)" in full
    (models_dir(tmp_path) / "a" / "notes.txt").unlink()
    (models_dir(tmp_path) / "b" / "tokenizer.json").write_text("{}")
    answered, quick, full = both(["sync"])
    assert not answered and "1 updated" in full and "tokenizer.json (changed)" in full
    assert both(["sync"])[0]
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    answered, quick, full = both(["sync"])
    assert not answered and "1 removed, 1 unchanged" in full
    assert both(["sync"])[0]


def _folder_states(target: Path, names: list[str]) -> dict[str, str]:
    """Each model folder's digest, asserting it is complete (a kill must never leave a mix)."""
    return {n: check_folder(target / n) for n in names}


def _kill_at_staging(project: Path, target: Path, nth: int) -> bool:
    """Run `gpux sync` and SIGKILL it as soon as it has begun staging its `nth` model folder; False if it finished first."""
    p = subprocess.Popen(
        [sys.executable, "-m", "gpuxbuild", "sync"], cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    staged: set[str] = set()
    while p.poll() is None:
        try:
            staged |= {e.name for e in os.scandir(target) if e.name.startswith(".tmp-")}
        except FileNotFoundError:
            pass
        if len(staged) >= nth:
            p.send_signal(signal.SIGKILL)
            p.wait()
            return True
    return False


@pytest.mark.slow
def test_sigkill_mid_sync_then_resync(onnx_repo, tmp_path):
    names = [f"m{i}" for i in range(6)]
    manifests = [
        {n: {"source": f"hf:{onnx_repo}", "runtime": {"gpu": {"memory": mem}}} for n in names} for mem in ("3GB", "4GB")
    ]
    target = models_dir(tmp_path)
    digests = []
    for i, manifest in enumerate(manifests):  # both states' artifacts in the store: the kills hit placement
        write_manifest(tmp_path, manifest)
        gpux("sync", "--target", str(tmp_path / f"prebuilt{i}"), cwd=tmp_path)
        digests.append({n: m["artifact"]["digest"] for n, m in read_lock(tmp_path)["models"].items()})
    write_manifest(tmp_path, manifests[0])
    gpux("sync", cwd=tmp_path)
    mixed = killed = attempts = 0
    while killed < 4 or not mixed:  # until kills did land between two models' swaps
        # On a busy machine a sync may end before the kill: that attempt checks the finished state, and another
        # one follows.
        assert attempts < 24, f"only {killed} of {attempts} kills landed during a sync ({mixed} mixed states)"
        write_manifest(tmp_path, manifests[(attempts + 1) % 2])
        killed += _kill_at_staging(tmp_path, target, nth=1 + attempts % 5)
        states = _folder_states(target, names)  # every model complete, fully old or fully new
        assert all(states[n] in (digests[0][n], digests[1][n]) for n in names), states
        mixed += len({states[n] == digests[0][n] for n in names}) == 2
        attempts += 1
    write_manifest(tmp_path, manifests[1])
    r = gpux("sync", cwd=tmp_path)
    assert "0 added, " in summary(r.stdout) and "0 removed" in summary(r.stdout)
    assert _folder_states(target, names) == digests[1]
    assert not [p.name for p in target.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    assert summary(gpux("sync", cwd=tmp_path).stdout) == f"0 added, 0 updated, 0 removed, {len(names)} unchanged"


@pytest.mark.slow
def test_concurrent_syncs_of_one_project(onnx_repo, tmp_path):
    names = ["a", "b", "c"]
    write_manifest(tmp_path, {n: {"source": f"hf:{onnx_repo}"} for n in names})
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gpuxbuild", "sync", "--json"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    added = sorted(json.loads(o)["summary"]["add"] for o, _ in outs)
    assert added == [0, 3]  # one placed everything, the other waited and found nothing to do
    lock = read_lock(tmp_path)
    assert _folder_states(models_dir(tmp_path), names) == {n: lock["models"][n]["artifact"]["digest"] for n in names}


@pytest.mark.convert
@pytest.mark.slow
def test_sync_exports_a_pytorch_model(hub, repo_id, tmp_path):
    publish(hub, repo_id, "bert")
    write_manifest(tmp_path, {"clf": {"source": f"hf:{repo_id}"}})
    r = gpux("sync", cwd=tmp_path)
    assert summary(r.stdout) == "1 added, 0 updated, 0 removed, 0 unchanged" and "1 built" in r.stdout
    folder = models_dir(tmp_path) / "clf"
    assert check_folder(folder) == read_lock(tmp_path)["models"]["clf"]["artifact"]["digest"]
    assert "torch" in read_lock(tmp_path)["models"]["clf"]["artifact"]["toolchain"]
    load_with_gpux_runtime(folder / "gpux.yml")
    assert summary(gpux("sync", cwd=tmp_path).stdout) == "0 added, 0 updated, 0 removed, 1 unchanged"


def test_lost_record_adopts_and_foreign_folder_is_refused(onnx_repo, tmp_path):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("sync", cwd=tmp_path)
    target = models_dir(tmp_path)
    (target / ".gpux-sync.json").unlink()
    r = gpux("sync", cwd=tmp_path)  # the folder's artifact.json says what sync placed: every file re-hashed
    assert summary(r.stdout) == "0 added, 0 updated, 0 removed, 1 unchanged"
    assert "a" in json.loads((target / ".gpux-sync.json").read_text())["models"]

    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}, "b": {"source": f"hf:{onnx_repo}"}})
    (target / "b").mkdir()
    (target / "b" / "weights.onnx").write_bytes(b"not from gpux")
    r = gpux("sync", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "refusing to replace models/b/" in r.stderr and "Traceback" not in r.stderr
    assert (target / "b" / "weights.onnx").read_bytes() == b"not from gpux"
