"""Corruption never reaches a built, synced or running model (issue 12): an edit through a hard link, a byte
flipped in a store artifact or source object, a build whose digest differs from the one gpux.lock records.
And the store's accounting (issue 13): prune beside a pull, partials after a full disk, copies from local
folders, a build started by `gpux run`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import gets, gpux, publish, read_lock, write_manifest
from test_sync import check_folder, models_dir, summary


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Change one byte in place (as `chmod u+w` and an editor writing in place would), keeping the mtime.
    The default, the middle byte, lies in a tiny model's weights: the graph still loads."""
    st = path.stat()
    offset = st.st_size // 2 if offset is None else offset
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def onnx_repo(hub, repo_id):
    publish(hub, repo_id, "onnx-shipped")
    return repo_id


def _synced(project: Path, repo: str, store: Path) -> tuple[str, Path]:
    write_manifest(project, {"a": {"source": f"hf:{repo}"}})
    gpux("sync", cwd=project)
    key = read_lock(project)["models"]["a"]["artifact"]["build_key"].removeprefix("sha256:")
    return check_folder(models_dir(project) / "a"), store / "artifacts" / key


def _quarantined(store: Path) -> list[str]:
    base = store / "quarantine"
    return sorted(p.name for p in base.iterdir() if any(p.iterdir())) if base.is_dir() else []


def test_edit_through_a_hard_link_is_caught_and_never_linked_again(onnx_repo, tmp_path, gpux_home):
    digest, art = _synced(tmp_path, onnx_repo, gpux_home)
    placed = models_dir(tmp_path) / "a" / "model.onnx"
    good = sha(placed)
    flip_byte(placed)  # with hard links this is also the store's file

    r = gpux("run", "a", "hello", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "model 'a'" in r.stderr and "model.onnx (changed)" in r.stderr and "gpux sync" in r.stderr

    r = gpux("sync", cwd=tmp_path)
    assert summary(r.stdout) == "0 added, 1 updated, 0 removed, 0 unchanged" and "model.onnx (changed)" in r.stdout
    assert check_folder(models_dir(tmp_path) / "a") == digest and sha(placed) == good
    assert sha(art / "model.onnx") == good  # rebuilt, not the corrupted inode linked again
    assert _quarantined(gpux_home) in ([], ["artifacts"])  # quarantined when the edit reached the store
    assert gpux("cache", "verify", cwd=tmp_path).returncode == 0
    assert summary(gpux("sync", "--locked", cwd=tmp_path).stdout).endswith("1 unchanged")
    assert gpux("run", "a", "hello", cwd=tmp_path).returncode == 0


def test_byte_flipped_in_a_store_artifact(onnx_repo, tmp_path, gpux_home):
    digest, art = _synced(tmp_path, onnx_repo, gpux_home)
    good = sha(art / "model.onnx")
    flip_byte(art / "model.onnx")
    os.chmod(art / "model.onnx", 0o444)

    r = gpux("cache", "verify", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "model.onnx: sha256 mismatch" in r.stdout + r.stderr
    r = gpux("sync", "--locked", cwd=tmp_path)
    assert "1 updated" in r.stdout and "artifacts: 0 reused, 1 built" in r.stdout
    assert check_folder(models_dir(tmp_path) / "a") == digest and sha(art / "model.onnx") == good
    assert _quarantined(gpux_home) == ["artifacts"]
    assert gpux("cache", "verify", cwd=tmp_path).returncode == 0

    # A second project placing the same artifact never takes the corrupted one either.
    flip_byte(art / "tokenizer.json", 5)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tmp_path / "gpux.models.yml", other)
    shutil.copy(tmp_path / "gpux.lock", other)
    r = gpux("sync", cwd=other)
    assert "1 added" in r.stdout and "1 built" in r.stdout and check_folder(models_dir(other) / "a") == digest


def test_corrupt_source_object_is_fetched_again_not_built_from(hub, onnx_repo, tmp_path, gpux_home):
    digest, art = _synced(tmp_path, onnx_repo, gpux_home)
    lock_bytes = (tmp_path / "gpux.lock").read_bytes()
    entry = next(f for f in read_lock(tmp_path)["models"]["a"]["files"] if f["path"].endswith("model.onnx"))
    obj = gpux_home / "objects" / "sha256" / entry["sha256"][:2] / entry["sha256"]
    flip_byte(obj)
    os.chmod(obj, 0o444)
    shutil.rmtree(art, onerror=lambda fn, p, e: (os.chmod(os.path.dirname(p), 0o755), fn(p)))
    before = gets(hub, onnx_repo).get(entry["path"], 0)

    r = gpux("build", "--json", cwd=tmp_path)
    out = json.loads(r.stdout)["models"][0]
    assert out["status"] == "built" and out["digest"] == digest
    assert (tmp_path / "gpux.lock").read_bytes() == lock_bytes
    assert gets(hub, onnx_repo).get(entry["path"], 0) == before + 1  # fetched again
    assert sha(obj) == entry["sha256"] and _quarantined(gpux_home) == ["objects"]
    assert gpux("cache", "verify", cwd=tmp_path).returncode == 0


def test_a_digest_other_than_the_locked_one_is_never_recorded(onnx_repo, tmp_path, gpux_home):
    digest, _ = _synced(tmp_path, onnx_repo, gpux_home)
    text = (tmp_path / "gpux.lock").read_text().replace(digest, "sha256:" + "0" * 64)
    (tmp_path / "gpux.lock").write_text(text)

    r = gpux("build", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "model 'a'" in r.stderr and "not reproducible, or a corrupted input: run `gpux cache verify`" in r.stderr
    assert (tmp_path / "gpux.lock").read_text() == text

    other = tmp_path / "other"
    write_manifest(other, {"a": {"source": f"hf:{onnx_repo}"}})
    (other / "gpux.lock").write_text(text)
    r = gpux("sync", cwd=other, check=False)
    assert r.returncode == 1 and "not reproducible, or a corrupted input" in r.stderr
    assert (other / "gpux.lock").read_text() == text and not (models_dir(other) / "a").exists()


def test_local_model_sources_are_copied_not_downloaded(tmp_path):
    from tinymodels import write_repo

    write_repo("onnx-shipped", tmp_path / "local-model")
    write_manifest(tmp_path, {"a": {"source": "path:./local-model", "task": "text-classification"}})
    r = gpux("sync", cwd=tmp_path)
    assert "downloaded" not in r.stdout and "source files copied from local folders" in r.stdout
    counters = json.loads(gpux("cache", "info", "--json", cwd=tmp_path).stdout)["counters"]
    assert counters.get("object_downloads", 0) == 0 and counters["object_copies"] > 0


def test_run_of_a_locked_unsynced_model_says_it_builds_and_counts_it(onnx_repo, tmp_path):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("lock", cwd=tmp_path)
    r = gpux("run", "a", "hello", cwd=tmp_path)
    assert "a is locked but not built here yet: building it" in r.stderr
    counters = json.loads(gpux("cache", "info", "--json", cwd=tmp_path).stdout)["counters"]
    assert counters["builds"] == 1 and counters["object_downloads"] > 0


def test_prune_beside_a_pull_keeps_what_the_pull_fetched(hub, repo_id, gpux_home, tmp_path):
    import subprocess
    import sys
    import time

    from test_pull import big_file

    publish(hub, repo_id, "bert")
    hub.commit(repo_id, {"extra.safetensors": big_file(3 * 1024 * 1024)})
    hub.throttle(repo_id, "extra.safetensors", 1024 * 1024)  # 3 s: the prune runs while it downloads
    hub.reset_log()
    pull = subprocess.Popen(
        [sys.executable, "-m", "gpuxbuild", "pull", repo_id, "--no-build"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while not ({"config.json", "extra.safetensors"} <= set(gets(hub, repo_id))) and time.monotonic() < deadline:
        time.sleep(0.05)  # the small files are in the store, the large one is arriving
    assert pull.poll() is None, "the pull finished before the prune could run beside it"
    pruned = json.loads(gpux("cache", "prune", "--json", cwd=tmp_path).stdout)
    assert pull.poll() is None, "the pull finished before the prune was done"
    _, err = pull.communicate(timeout=120)
    assert pull.returncode == 0, err
    assert pruned["objects"] == [], pruned
    counts = gets(hub, repo_id)
    assert counts == dict.fromkeys(counts, 1), counts  # nothing downloaded twice
    assert not list((gpux_home / "holds").iterdir())  # the pull's hold is gone with it


def test_prune_leaves_an_index_write_in_flight_alone(tmp_path):
    """An index entry being written by another process exists first as write_atomic's temp file, empty or half
    written: the prune's sweep of stale entries must not remove it (the writer's rename would then fail), while
    one left by a killed process long ago goes."""
    import time

    from gpuxbuild.store.objects import STALE_TMP_SECONDS, Store

    store = Store(tmp_path / "home")
    sha = hashlib.sha256(b"weights").hexdigest()
    store.object_path(sha).parent.mkdir(parents=True)
    store.object_path(sha).write_bytes(b"weights")
    store.remember_blob("0e" + "1" * 38, sha)
    store.remember_blob("0e" + "2" * 38, "0" * 64)  # its object is gone: a stale entry
    folder = tmp_path / "home" / "index" / "gitsha1" / "0e"
    in_flight = folder / f".0e{'3' * 38}.1a2b3c4d.tmp"
    in_flight.write_bytes(b"")
    left_over = folder / f".0e{'4' * 38}.5e6f7a8b.tmp"
    left_over.write_bytes(b"")
    old = time.time() - STALE_TMP_SECONDS - 60
    os.utime(left_over, (old, old))

    assert store.drop_stale_index() == 1
    assert sorted(p.name for p in folder.iterdir()) == [in_flight.name, "0e" + "1" * 38]


def test_after_a_full_disk_the_hint_and_prune_free_the_partial_download(tmp_path, gpux_home, monkeypatch):
    import errno
    import subprocess
    import sys

    from click.testing import CliRunner

    import gpuxbuild.store.gc
    from gpuxbuild.cli.app import cli

    tmp = gpux_home / "tmp"
    tmp.mkdir(parents=True)
    left = tmp / f"{'a' * 64}.partial"  # what a download cut by ENOSPC leaves, to be resumed
    left.write_bytes(b"x" * 3_000_000)
    busy = tmp / f"{'b' * 64}.partial"  # a download running in another process right now
    busy.write_bytes(b"y" * 1000)

    def full(*_args, **_kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(left))

    with monkeypatch.context() as patch:
        patch.setattr(gpuxbuild.store.gc, "info", full)
        r = CliRunner().invoke(cli, ["cache", "info"])
    assert r.exit_code == 1
    assert "`gpux cache prune --partials` removes the 3.0 MB of interrupted downloads" in " ".join(r.output.split())

    assert (
        "3.0 MB of interrupted downloads kept to resume them: `gpux cache prune --partials` removes them"
        in gpux("cache", "prune", cwd=tmp_path).stdout
    )
    assert left.exists()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import time; from gpuxbuild.store.objects import Store\n"
                f"with Store().lock('obj-{'b' * 64}'):\n    print('held', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        r = gpux("cache", "prune", "--partials", "--json", cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    out = json.loads(r.stdout)
    assert out["partials"] == [left.name] and out["bytes_freed"] == 3_000_000
    assert not left.exists() and busy.exists()
