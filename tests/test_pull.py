"""`gpux pull`, `ls`/`images`, `rm`/`rmi`, `inspect`, `cache verify|prune|info`, end to end: the real CLI in
subprocesses against the test Hub."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import gets, gpux, publish

from gpuxbuild.store.objects import Store

CHUNK = 10 * 1024 * 1024  # huggingface_hub writes whole 10 MiB chunks, so a resume starts at a multiple


def pull_json(*args: str, **kw) -> dict:
    return json.loads(gpux("pull", *args, "--no-build", "--json", **kw).stdout)


def objects(home: Path) -> set[str]:
    base = home / "objects" / "sha256"
    return {p.name for p in base.glob("*/*")} if base.is_dir() else set()


def big_file(size: int = 12 * 1024 * 1024, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def test_pull_then_again_ls_inspect(hub, repo_id, gpux_home):
    commit = publish(hub, repo_id, "bert")
    first = gpux("pull", repo_id, "--no-build")
    assert commit[:12] in first.stdout and "downloaded" in first.stdout
    files = {p for p in hub.files(repo_id) if p != ".gitattributes"}
    assert gets(hub, repo_id) == dict.fromkeys(files, 1)  # each file once; .gitattributes never
    assert f"{len(files)} files" in first.stdout and f"downloaded {len(files)} files" in first.stdout

    hub.reset_log()
    again = gpux("pull", repo_id, "--no-build")
    assert "already in the store, nothing downloaded" in again.stdout and "--upgrade" in again.stdout
    assert hub.count() == 0  # the branch keeps the commit it was pulled at: no network
    upgraded = gpux("pull", repo_id, "--no-build", "--upgrade")
    assert "already in the store" in upgraded.stdout
    assert gets(hub, repo_id) == {} and hub.count(kind="api") == 1  # only the branch is re-resolved

    hub.reset_log()
    pinned = pull_json(f"{repo_id}@{commit}")
    assert pinned["already_pulled"] and not pinned["resolved_online"] and hub.count() == 0

    rows = json.loads(gpux("ls", "--json").stdout)
    assert [(r["name"], r["revision"], r["commit"], r["task"], r["kind"]) for r in rows] == [
        (repo_id, "main", commit, "text-classification", "pulled")
    ]
    assert rows[0]["size"] == sum(b.size for p, b in hub.files(repo_id).items() if p in files)
    assert rows[0]["last_used"] is not None
    assert json.loads(gpux("images", "--json").stdout) == rows
    table = gpux("ls").stdout
    assert repo_id in table and commit[:12] in table and "text-classification" in table

    info = json.loads(gpux("inspect", repo_id, "--json").stdout)
    assert (info["registry"], info["repo"], info["commit"], info["task"], info["license"]) == (
        "huggingface",
        repo_id,
        commit,
        "text-classification",
        "apache-2.0",
    )
    by_path = {f["path"]: f for f in info["files"]}
    assert set(by_path) == files and all(f["stored"] for f in info["files"])
    weights = hub.files(repo_id)["model.safetensors"]
    assert by_path["model.safetensors"]["sha256"] == weights.sha256
    assert info["artifact"] is None
    text = gpux("inspect", repo_id).stdout
    assert commit in text and weights.sha256[:16] in text and "not built" in text

    missing = gpux("inspect", "nobody/nothing", check=False)
    assert missing.returncode == 1 and "nobody/nothing" in missing.stderr and "Traceback" not in missing.stderr


def test_concurrent_pulls_download_each_file_once(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    hub.commit(repo_id, {"extra.safetensors": big_file(2 * 1024 * 1024)})
    hub.throttle(repo_id, "extra.safetensors", 1024 * 1024)  # 2 s: all four pulls are in flight together
    hub.reset_log()
    cmd = [sys.executable, "-m", "gpuxbuild", "pull", repo_id, "--no-build", "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    results = [json.loads(o) for o, _ in outs]
    assert len({r["commit"] for r in results}) == 1
    counts = gets(hub, repo_id)
    assert "extra.safetensors" in counts and "model.safetensors" in counts
    assert counts == dict.fromkeys(counts, 1)
    assert sum(r["objects_downloaded"] for r in results) == len(objects(gpux_home))
    assert gpux("cache", "verify").returncode == 0


def test_sigkill_mid_download_then_resume(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    data = big_file()
    hub.commit(repo_id, {"extra.safetensors": data})
    digest = hashlib.sha256(data).hexdigest()
    partial = gpux_home / "tmp" / f"{digest}.partial"
    hub.throttle(repo_id, "extra.safetensors", 6 * 1024 * 1024)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuxbuild", "pull", repo_id, "--no-build"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size >= CHUNK):
        assert proc.poll() is None and time.monotonic() < deadline, "the download never reached one chunk"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert digest not in objects(gpux_home)
    assert partial.stat().st_size == CHUNK
    assert gpux("cache", "verify").returncode == 0  # whatever objects exist are whole and verified
    # leftovers of other killed processes: a small-file partial and a week-old staging folder
    leftover = gpux_home / "tmp" / f"blob-{'0' * 40}.partial"
    leftover.write_bytes(b"half")
    staging = gpux_home / "tmp" / "build-killed"
    staging.mkdir()
    os.utime(staging, (time.time() - 8 * 86400,) * 2)

    hub.clear_faults(repo_id)
    hub.reset_log()
    out = pull_json(repo_id)
    assert not out["already_pulled"]
    ranges = [r.range for r in hub.requests("GET", repo=repo_id, path="extra.safetensors", kind="lfs")]
    assert ranges == [f"bytes={CHUNK}-"]
    assert (gpux_home / "objects" / "sha256" / digest[:2] / digest).read_bytes() == data
    assert list((gpux_home / "tmp").iterdir()) == []


def test_ctrl_c_stops_at_once_and_keeps_what_arrived(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    data = big_file(seed=1)
    hub.commit(repo_id, {"extra.safetensors": data})
    partial = gpux_home / "tmp" / f"{hashlib.sha256(data).hexdigest()}.partial"
    hub.throttle(repo_id, "extra.safetensors", 4 * 1024 * 1024)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuxbuild", "pull", repo_id, "--no-build"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size >= CHUNK):
        assert proc.poll() is None and time.monotonic() < deadline, "the download never reached one chunk"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)  # the last 2 MB would take 0.5 s more: the transfer is stopped
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert partial.stat().st_size == CHUNK and hashlib.sha256(data).hexdigest() not in objects(gpux_home)
    hub.clear_faults(repo_id)
    hub.reset_log()
    pull_json(repo_id)
    assert [r.range for r in hub.requests("GET", repo=repo_id, path="extra.safetensors", kind="lfs")] == [
        f"bytes={CHUNK}-"
    ]


def test_cache_verify_catches_and_fixes_corruption(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    gpux("pull", repo_id, "--no-build")
    weights = hub.files(repo_id)["model.safetensors"].sha256
    path = gpux_home / "objects" / "sha256" / weights[:2] / weights
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"\xff\xff\xff\xff")
    bad = gpux("cache", "verify", check=False)
    assert bad.returncode == 1 and weights in bad.stdout
    report = json.loads(gpux("cache", "verify", "--json", check=False).stdout)
    assert [b["object"] for b in report["bad_objects"]] == [weights]
    fixed = gpux("cache", "verify", "--fix")
    assert "quarantined" in fixed.stdout and not path.exists()
    assert gpux("cache", "verify").returncode == 0
    hub.reset_log()
    assert pull_json(repo_id)["objects_downloaded"] == 1 and path.exists()


def test_tampered_file_is_caught_before_it_lands(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    real = hub.files(repo_id)["model.safetensors"]
    evil = bytes(reversed(real.data))
    hub.tamper(repo_id, "model.safetensors", evil)
    r = gpux("pull", repo_id, "--no-build", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    err = " ".join(r.stderr.split())
    for needle in (repo_id, "model.safetensors", real.sha256, hashlib.sha256(evil).hexdigest()):
        assert needle in err
    assert real.sha256 not in objects(gpux_home) and hashlib.sha256(evil).hexdigest() not in objects(gpux_home)
    assert list((gpux_home / "tmp").iterdir()) == []
    assert json.loads(gpux("ls", "--json").stdout) == []

    other = repo_id + "-small"  # a small file, never stored before: checked against its git blob id
    publish(hub, other, "bert")
    hub.commit(other, {"config.json": hub.files(other)["config.json"].data.replace(b"}", b', "y": 2}', 1)})
    hub.tamper(other, "config.json", b'{"evil": true}')
    r = gpux("pull", other, "--no-build", check=False)
    assert r.returncode == 1 and "config.json" in r.stderr and "git blob" in r.stderr
    assert hashlib.sha256(b'{"evil": true}').hexdigest() not in objects(gpux_home)


@pytest.mark.parametrize("name", ["../evil.txt", "/abs.txt", "a/../../x"], ids=["parent", "absolute", "nested"])
def test_hostile_file_names_are_refused(hub, repo_id, gpux_home, name):
    publish(hub, repo_id, "bert")
    hub.commit(repo_id, {name: b"pwned"})
    hub.reset_log()
    r = gpux("pull", repo_id, "--no-build", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "unsafe file name" in r.stderr and repr(name) in r.stderr
    assert gets(hub, repo_id) == {}  # refused before any download
    assert not (gpux_home.parent / "evil.txt").exists() and objects(gpux_home) == set()


def test_offline_pull_makes_no_request(hub, repo_id, gpux_home, hf_env):
    publish(hub, repo_id, "bert")
    gpux("pull", repo_id, "--no-build")
    hub.reset_log()
    assert pull_json(repo_id, "--offline")["already_pulled"]
    assert hub.count() == 0
    hub.stop()
    started = time.monotonic()
    out = gpux("pull", repo_id, "--offline", "--no-build")
    assert "already in the store" in out.stdout
    hf_env(HF_HUB_OFFLINE="1")
    assert pull_json(repo_id)["commit"] == hub.head(repo_id)
    assert time.monotonic() - started < 20  # huggingface_hub would retry a refused connection for ~23 s
    missing = gpux("pull", "test-org/never-pulled", "--no-build", check=False)
    assert missing.returncode == 1 and "test-org/never-pulled" in missing.stderr and "offline" in missing.stderr
    hf_env(HF_HUB_OFFLINE=None)
    hub.start()
    assert hub.count() == 0


def test_revisions_share_files_and_rm_keeps_shared(hub, repo_id, gpux_home):
    first = publish(hub, repo_id, "bert")
    weights = hub.files(repo_id)["model.safetensors"].sha256
    pull_json(repo_id)
    second = hub.commit(repo_id, {"config.json": hub.files(repo_id)["config.json"].data.replace(b"}", b',"x": 1}', 1)})
    assert pull_json(repo_id)["commit"] == first  # pinned until --upgrade
    hub.reset_log()
    out = pull_json(repo_id, "--upgrade")
    assert out["commit"] == second and out["objects_downloaded"] == 1
    assert gets(hub, repo_id) == {"config.json": 1}
    rows = json.loads(gpux("ls", "--json").stdout)
    assert sorted((r["commit"], r["revision"]) for r in rows) == sorted([(first, None), (second, "main")])
    before = objects(gpux_home)
    removed = gpux("rm", f"{repo_id}@{first}")
    assert first[:12] in removed.stdout
    assert weights in objects(gpux_home) and len(before - objects(gpux_home)) == 1  # only the old config.json
    assert [r["commit"] for r in json.loads(gpux("ls", "--json").stdout)] == [second]
    assert json.loads(gpux("inspect", repo_id, "--json").stdout)["commit"] == second
    gpux("rmi", repo_id)
    assert json.loads(gpux("ls", "--json").stdout) == []
    assert weights not in objects(gpux_home)
    gone = gpux("rm", repo_id, check=False)
    assert gone.returncode == 1 and "no such pulled model" in gone.stderr


def test_rm_keeps_files_of_another_model_and_of_synced_projects(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    twin = repo_id + "-twin"
    publish(hub, twin, "bert")  # same files, another repo
    pull_json(repo_id)
    pull_json(twin)
    stored = objects(gpux_home)
    gpux("rm", repo_id)
    assert objects(gpux_home) == stored
    weights = hub.files(twin)["model.safetensors"].sha256
    record = gpux_home / "refs" / "projects" / "p.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"project": "/p", "models": {"m": {"files": [weights]}}}))
    gpux("rm", twin)
    model_files = {
        b.sha256 or hashlib.sha256(b.data).hexdigest() for p, b in hub.files(twin).items() if p != ".gitattributes"
    }
    assert objects(gpux_home) & model_files == {weights}


def test_prune_and_info_counters(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    out = pull_json(repo_id)
    again = pull_json(repo_id)
    assert again["downloaded"] == [] and len(again["cached"]) == again["files"]
    orphan = b"nobody refers to me"
    Store(gpux_home).ensure_object(
        hashlib.sha256(orphan).hexdigest(), len(orphan), lambda dest, _: dest.write(orphan), label="x"
    )
    dry = json.loads(gpux("cache", "prune", "--dry-run", "--json").stdout)
    # only the orphan: resolving downloads no file the model does not keep (.gitattributes)
    assert set(dry["objects"]) == {hashlib.sha256(orphan).hexdigest()} and dry["dry_run"]
    # small files fetched while resolving count as downloaded by this pull, not as found in the store
    assert out["objects_downloaded"] == out["files"] == len(out["downloaded"]) and out["cached"] == []
    assert hashlib.sha256(orphan).hexdigest() in objects(gpux_home)
    assert "Would free" in gpux("cache", "prune", "--dry-run").stdout
    assert "Freed" in gpux("cache", "prune").stdout
    assert hashlib.sha256(orphan).hexdigest() not in objects(gpux_home)
    info = json.loads(gpux("cache", "info", "--json").stdout)
    assert info["objects"] == len(objects(gpux_home)) and info["pulled_models"] == 1
    counters = info["counters"]
    assert counters["object_downloads"] == out["objects_downloaded"]
    assert counters["bytes_downloaded"] == out["bytes_downloaded"]
    assert counters["object_hits"] >= out["files"]  # the second pull found every file in the store
    text = gpux("cache", "info").stdout
    assert "objects:" in text and "hits:" in text


def test_pickles_skipped_or_refused(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    hub.commit(repo_id, {"pytorch_model.bin": b"pickle bytes that must never be fetched"})
    hub.reset_log()
    out = pull_json(repo_id)
    assert "pytorch_model.bin" not in out["downloaded"] + out["cached"]
    assert "pytorch_model.bin" not in gets(hub, repo_id)

    only = repo_id + "-pickles"
    publish(hub, only, "pickle-only")
    refused = gpux("pull", only, "--no-build", check=False)
    assert refused.returncode == 1 and "pickle" in refused.stderr and "--allow-pickle" in refused.stderr
    assert json.loads(gpux("ls", "--json").stdout)[0]["name"] == repo_id  # nothing recorded for it
    allowed = pull_json(only, "--allow-pickle")
    assert "pytorch_model.bin" in allowed["downloaded"]


def test_no_progress_output_in_pipes(hub, repo_id):
    publish(hub, repo_id, "bert")
    hub.commit(repo_id, {"extra.safetensors": big_file(1024 * 1024)})
    r = gpux("pull", repo_id, "--no-build")
    for out in (r.stdout, r.stderr):
        assert "━" not in out and "%|" not in out and "\r" not in out and "\x1b[" not in out
    assert r.stderr == ""
    gpux("rm", repo_id)
    quiet = gpux("--quiet", "pull", repo_id, "--no-build")
    assert quiet.stdout == "" and quiet.stderr == ""


def test_bad_refs_are_user_errors(hub):
    for ref, needle in (
        ("hf:", "hf:"),
        ("org/a@b@c", "org/a"),
        ("nope:org/x", "unknown registry"),
        ("org/a@", "the revision is empty"),
        ("", "bad source ''"),
    ):
        r = gpux("pull", ref, "--no-build", check=False)
        assert r.returncode != 0 and needle in r.stderr and "Traceback" not in r.stderr
    for args in (("--revision", ""), ("-j", "0")):
        r = gpux("pull", "org/a", *args, "--no-build", check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr and hub.count(repo="org/a") == 0
    r = gpux("pull", "test-org/does-not-exist", "--no-build", check=False)
    assert r.returncode == 1 and "not found" in r.stderr


def test_pull_builds_a_model_that_ships_onnx(hub, repo_id, gpux_home):
    publish(hub, repo_id, "onnx-shipped")
    out = json.loads(gpux("pull", repo_id, "--json").stdout)
    assert out["build"]["status"] == "built"
    info = json.loads(gpux("inspect", repo_id, "--json").stdout)
    art = info["artifact"]
    assert art and art["digest"] == out["build"]["digest"] and Path(art["gpux_yml"]).is_file()
    again = json.loads(gpux("pull", repo_id, "--json").stdout)
    assert again["already_pulled"] and again["build"]["status"] == "cached"
    assert json.loads(gpux("cache", "prune", "--json").stdout)["artifacts"] == []


def test_force_downloads_and_builds_again_verified(hub, repo_id, gpux_home):
    """`gpux pull --force` (the GPUX documentation's "force re-download and conversion"): every file is
    fetched again and checked against its sha256, the artifact is built again, the pin is kept."""
    commit = publish(hub, repo_id, "onnx-shipped")
    first = json.loads(gpux("pull", repo_id, "--json").stdout)
    files = gets(hub, repo_id)
    assert set(files.values()) == {1}
    weights = hub.files(repo_id)["onnx/model.onnx"].sha256
    obj = gpux_home / "objects" / "sha256" / weights[:2] / weights
    os.chmod(obj, 0o644)
    with open(obj, "r+b") as f:  # damage the stored object without the store noticing (same size)
        f.write(b"\xff\xff\xff\xff")
    art = Path(first["build"]["path"])
    hub.reset_log()
    forced = json.loads(gpux("pull", repo_id, "--force", "--json").stdout)
    assert gets(hub, repo_id) == files  # every file again, once
    assert forced["commit"] == commit and not forced["already_pulled"]
    assert forced["objects_downloaded"] == len(files)
    assert hashlib.sha256(obj.read_bytes()).hexdigest() == weights
    assert forced["build"]["status"] == "built" and forced["build"]["digest"] == first["build"]["digest"]
    assert forced["build"]["path"] == str(art) and (art / "gpux.yml").is_file()
    assert gpux("cache", "verify").returncode == 0
    hub.reset_log()
    short = gpux("pull", repo_id, "-f")
    assert f"downloaded {len(files)} files" in short.stdout and "(built)" in short.stdout
    r = gpux("pull", repo_id, "--force", "--offline", check=False)
    assert r.returncode == 2 and "--force" in r.stderr and "--offline" in r.stderr and "Traceback" not in r.stderr


def test_progress_bars_on_a_tty(hub, repo_id):
    import pty

    publish(hub, repo_id, "bert")
    hub.commit(repo_id, {"extra.safetensors": big_file(1024 * 1024)})
    hub.throttle(repo_id, "extra.safetensors", 2 * 1024 * 1024)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuxbuild", "pull", repo_id, "--no-build"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        seen += data
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    assert b"extra.safetensors" in seen and b"total" in seen  # one bar per file and a total, on the terminal
    assert "━" not in proc.stdout.read().decode()  # stdout stays clean


def test_inspect_a_model_of_the_project_lock(hub, repo_id, tmp_path):
    from helpers import write_manifest

    commit = publish(hub, repo_id, "onnx-shipped")
    write_manifest(tmp_path, {"sentiment": {"source": f"hf:{repo_id}"}})
    gpux("lock", cwd=tmp_path)
    info = json.loads(gpux("inspect", "sentiment", "--json", cwd=tmp_path).stdout)
    assert (info["kind"], info["repo"], info["commit"], info["artifact"]) == ("locked", repo_id, commit, None)
    assert {f["path"] for f in info["files"]} >= {"config.json"}
    gpux("sync", cwd=tmp_path)
    info = json.loads(gpux("inspect", "sentiment", "--json", cwd=tmp_path).stdout)
    assert info["synced"] and Path(info["artifact"]["gpux_yml"]).is_file()
    assert Path(info["artifact"]["store_path"]).is_relative_to(Path(os.environ["GPUX_HOME"]))
    rows = json.loads(gpux("ls", "--json").stdout)
    assert [(r["name"], r["kind"], r["commit"]) for r in rows] == [("sentiment", "synced", commit)]


def test_pull_a_local_folder(tmp_path, hub):
    from tinymodels import write_repo

    write_repo("bert", tmp_path / "m")
    first = gpux("pull", "path:./m", "--no-build", cwd=tmp_path)
    assert first.stdout.startswith("path:m: commit ")  # printed as is (rich would make ":m:" an emoji)
    assert "already in the store" not in first.stdout
    assert "already in the store" in gpux("pull", "path:./m", "--no-build", cwd=tmp_path).stdout
    info = json.loads(gpux("inspect", "path:m", "--json", cwd=tmp_path).stdout)
    assert (info["registry"], info["repo"]) == ("local", "m") and all(f["stored"] for f in info["files"])
    assert "path:m" in gpux("ls", cwd=tmp_path).stdout
    assert hub.count() == 0


def test_large_files_are_listed_before_any_file_is_fetched(hub, repo_id, tmp_path):
    """The Hub manager hands out the LFS files (sha256 known) before it hashes the small ones, so a
    pull starts the large downloads one round trip earlier."""
    from gpuxbuild.registries.huggingface import HuggingFaceManager
    from gpuxbuild.store.files import FileEntry

    publish(hub, repo_id, "bert")
    hub.commit(repo_id, {"extra.safetensors": big_file(1024 * 1024)})
    manager = HuggingFaceManager(project=tmp_path, store=Store(tmp_path / "store"))
    seen = []
    pinned = manager.resolve_streaming(repo_id, None, lambda *args: seen.append((*args, gets(hub, repo_id))))
    files = hub.files(repo_id)
    [(commit, paths, listed, fetched_so_far)] = seen
    assert commit == pinned.commit == hub.head(repo_id)
    assert paths == sorted(files)
    assert listed == sorted(FileEntry(p, b.sha256, b.size) for p, b in files.items() if b.sha256)
    assert {f.path for f in listed} >= {"model.safetensors", "extra.safetensors"}
    assert fetched_so_far == {}
    assert pinned.files == manager.resolve(repo_id, None).files


def test_the_export_worker_starts_before_a_new_model_resolves_and_stops_when_nothing_exports(tmp_path):
    """A model never pulled before gets its export worker at once, before resolution (whose 0.4-0.8 s the worker's
    imports would otherwise wait for); it is killed as soon as the pull shows a model that ships ONNX. A model whose
    pull record says it is built starts none, nor does a project with a remote cache (which may supply it)."""
    from gpuxbuild.build.convert import ExportPool
    from gpuxbuild.build.pipeline import prestart_export
    from gpuxbuild.models.pull import parse_ref
    from gpuxbuild.store.refs import PulledRecord, Records

    store = Store(tmp_path / "home")
    ref = parse_ref("org/model")

    def record(*paths: str) -> PulledRecord:
        files = [{"path": p, "sha256": hashlib.sha256(p.encode()).hexdigest(), "size": 1} for p in paths]
        return PulledRecord(
            "huggingface", "org/model", "c" * 40, "feature-extraction", "transformers", None, None, files, 3
        )

    def running(pool: ExportPool) -> list[bool]:
        return [worker.proc.poll() is None for worker in pool._all]

    with ExportPool(1) as pool:
        on_resolved = prestart_export(pool, ref, False, store, None)
        assert running(pool) == [True]  # before anything resolved
        on_resolved(record("config.json", "onnx/model.onnx", "tokenizer.json"))
        assert running(pool) == []
    with ExportPool(1) as pool:
        on_resolved = prestart_export(pool, ref, False, store, None)
        on_resolved(record("config.json", "model.safetensors", "tokenizer.json"))
        assert running(pool) == [True]  # the same worker, kept for the export
    with ExportPool(1) as pool:
        prestart_export(pool, ref, False, store, remotes=["s3://cache"])(record("config.json", "model.safetensors"))
        assert running(pool) == []

    shipped = record("config.json", "onnx/model.onnx")
    Records(store).save(shipped, "main")
    with ExportPool(1) as pool:
        prestart_export(pool, ref, False, store, None)
        assert running(pool) == []  # its record says nothing exports


def test_early_files_follow_the_lock_selection():
    from gpuxbuild.models.pull import early_files as early
    from gpuxbuild.project.manifest import adhoc_spec
    from gpuxbuild.project.resolver import wanted_paths
    from gpuxbuild.store.files import FileEntry

    def entry(path):
        return FileEntry(path, "0" * 64, 1)

    def early_files(spec, paths, listed):
        return early(spec, wanted_paths(spec, paths), listed)

    spec = adhoc_spec("org/m", "huggingface", "org/m")
    paths = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "onnx/model.onnx"]
    listed = [entry(p) for p in paths if p != "config.json"]
    # The repo ships ONNX: the lock keeps it and drops the PyTorch and TF weights; so does the early fetch.
    assert [f.path for f in early_files(spec, paths, listed)] == ["onnx/model.onnx"]
    export = adhoc_spec("org/m", "huggingface", "org/m")
    export.convert["from"] = "export"
    assert [f.path for f in early_files(export, paths, listed)] == ["model.safetensors"]
    pickles_only = ["config.json", "pytorch_model.bin"]
    assert early_files(spec, pickles_only, [entry("pytorch_model.bin")]) == []  # refused later, not fetched
    allowed = adhoc_spec("org/m", "huggingface", "org/m", allow_pickle=True)
    assert [f.path for f in early_files(allowed, pickles_only, [entry("pytorch_model.bin")])] == ["pytorch_model.bin"]
    onnx_only = adhoc_spec("org/m", "huggingface", "org/m")
    onnx_only.convert["from"] = "onnx"
    assert early_files(onnx_only, ["config.json", "model.safetensors"], [entry("model.safetensors")]) == []
    assert wanted_paths(onnx_only, ["config.json", "model.safetensors"]) is None  # resolving reports why


@pytest.mark.parametrize("listed", ["../../../../escape", "A" * 64, "abc"], ids=["traversal", "uppercase", "short"])
def test_a_hostile_listed_hash_is_refused(hub, repo_id, gpux_home, listed):
    publish(hub, repo_id, "bert")
    hub.misreport(repo_id, "model.safetensors", listed)
    hub.reset_log()
    r = gpux("pull", repo_id, "--no-build", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "invalid sha256" in r.stderr and "model.safetensors" in r.stderr and repr(listed) in r.stderr
    assert gets(hub, repo_id) == {} and objects(gpux_home) == set()  # refused before any download
    assert not list(gpux_home.parent.glob("escape*"))


def test_xet_backed_files_honour_hf_hub_disable_xet(hub, repo_id, gpux_home, hf_env):
    """A file the Hub says is Xet-backed goes through huggingface_hub's xet_get, unless the user turned
    Xet off: then, as in hf_hub_download, it is fetched over plain HTTP."""
    publish(hub, repo_id, "bert")
    hub.advertise_xet(repo_id, "model.safetensors")
    r = gpux("pull", repo_id, "--no-build", check=False)  # the test Hub speaks no Xet: the attempt fails
    assert r.returncode == 1 and "Traceback" not in r.stderr
    err = " ".join(r.stderr.split())
    assert (
        f"{repo_id}@" in err and "model.safetensors: the Xet download failed" in err and "HF_HUB_DISABLE_XET=1" in err
    )
    assert hub.count("GET", path="model.safetensors") == 0
    assert hub.files(repo_id)["model.safetensors"].sha256 not in objects(gpux_home)
    hf_env(HF_HUB_DISABLE_XET="1")
    assert pull_json(repo_id)["objects_downloaded"] >= 1
    assert hub.files(repo_id)["model.safetensors"].sha256 in objects(gpux_home)


def test_hf_transfer_setting_does_not_bypass_hashing(hub, repo_id, gpux_home, hf_env):
    """HF_HUB_ENABLE_HF_TRANSFER=1 (set globally in many ML images) would make http_get hand the file to
    hf_transfer, which writes it by name, unhashed (or fail when the package is missing): downloads
    stream through the store's hashing writer regardless, without a warning."""
    publish(hub, repo_id, "bert")
    hf_env(HF_HUB_ENABLE_HF_TRANSFER="1")
    r = gpux("pull", repo_id, "--no-build")
    assert r.stderr == ""
    for path, blob in hub.files(repo_id).items():
        if path != ".gitattributes":
            assert hashlib.sha256(blob.data).hexdigest() in objects(gpux_home)
