"""The content-addressed store: verified objects, resumable partials, locks, leftovers, verify/prune/info."""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gpuxbuild.errors import IntegrityError
from gpuxbuild.store import gc
from gpuxbuild.store.artifacts import rehash_artifact
from gpuxbuild.store.home import gpux_home
from gpuxbuild.store.objects import Store
from gpuxbuild.store.refs import live_roots


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def feeder(data: bytes, calls: list | None = None, chunk: int = 1000):
    """A writer that serves `data` from the offset it is asked for, in chunks, like a ranged download."""

    def write(dest, resume_from):
        if calls is not None:
            calls.append(resume_from)
        for i in range(resume_from, len(data), chunk):
            dest.write(data[i : i + chunk])

    return write


def objects(store: Store) -> list[str]:
    return [s for s, _ in store.iter_objects()]


def tmp_files(store: Store) -> list[str]:
    return sorted(p.name for p in (store.root / "tmp").iterdir()) if (store.root / "tmp").is_dir() else []


def test_gpux_home_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("GPUX_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gpux_home() == tmp_path / "xdg" / "gpux"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert gpux_home() == tmp_path / "home" / ".cache" / "gpux"
    monkeypatch.setenv("GPUX_HOME", str(tmp_path / "g"))
    assert gpux_home() == tmp_path / "g"


def test_object_is_stored_once_read_only_and_counted():
    store, data = Store(), os.urandom(5000)
    calls: list = []
    assert store.ensure_object(sha(data), len(data), feeder(data, calls), label="m: f") is False
    assert store.ensure_object(sha(data), len(data), feeder(data, calls), label="m: f") is True
    path = store.object_path(sha(data))
    assert path.read_bytes() == data and calls == [0]
    assert path.stat().st_mode & 0o222 == 0
    assert (store.stats.hits, store.stats.downloaded, store.stats.bytes_downloaded) == (1, 1, 5000)
    store.save_counters()
    assert store.load_counters() == {"object_hits": 1, "object_downloads": 1, "bytes_downloaded": 5000}
    assert tmp_files(store) == []


def test_mismatch_names_file_and_hashes_and_keeps_nothing():
    store, good, bad = Store(), b"a" * 3000, b"b" * 3000
    with pytest.raises(IntegrityError) as err:
        store.ensure_object(sha(good), len(good), feeder(bad), label="org/m: model.safetensors")
    msg = err.value.message
    assert "org/m: model.safetensors" in msg and sha(good) in msg and sha(bad) in msg
    assert objects(store) == [] and tmp_files(store) == []


def test_longer_body_is_cut_off_and_refused():
    store, good = Store(), b"a" * 3000
    with pytest.raises(IntegrityError, match="more than 3000 bytes"):
        store.ensure_object(sha(good), len(good), feeder(good + b"x" * 10_000), label="m: f")
    assert objects(store) == [] and tmp_files(store) == []


def test_interrupted_write_resumes_from_its_partial():
    store, data = Store(), os.urandom(10_000)
    calls: list = []

    def dies(dest, resume_from):
        calls.append(resume_from)
        dest.write(data[:4000])
        raise ConnectionError("cut")

    with pytest.raises(ConnectionError):
        store.ensure_object(sha(data), len(data), dies, label="m: f")
    assert objects(store) == [] and tmp_files(store) == [f"{sha(data)}.partial"]
    assert store.ensure_object(sha(data), len(data), feeder(data, calls), label="m: f") is False
    assert calls == [0, 4000]
    assert store.object_path(sha(data)).read_bytes() == data and tmp_files(store) == []


def test_bad_partial_prefix_is_discarded_and_downloaded_again():
    store, data = Store(), os.urandom(10_000)
    store.tmp_dir().joinpath(f"{sha(data)}.partial").write_bytes(b"\0" * 4000)
    calls: list = []
    store.ensure_object(sha(data), len(data), feeder(data, calls), label="m: f")
    assert calls == [4000, 0]
    assert store.object_path(sha(data)).read_bytes() == data


def test_writer_that_rewinds_restarts_the_hash():
    store, data = Store(), os.urandom(3000)
    store.tmp_dir().joinpath(f"{sha(data)}.partial").write_bytes(b"junk")

    def ignores_range(dest, resume_from):  # as http_get does when a server answers 200 to a Range request
        dest.seek(0)
        dest.truncate()
        dest.write(data)

    store.ensure_object(sha(data), len(data), ignores_range, label="m: f")
    assert store.object_path(sha(data)).read_bytes() == data


def test_large_downloads_are_written_behind_in_contiguous_ranges(monkeypatch):
    """Writeback of each large chunk starts as it is written, resumed or not, with no gap or overlap."""
    from gpuxbuild.store import objects as store_mod

    ranges: list[tuple[int, int]] = []
    real = store_mod.start_writeback
    monkeypatch.setattr(store_mod, "start_writeback", lambda fd, off, n: (ranges.append((off, n)), real(fd, off, n)))
    store, data = Store(), os.urandom(45 << 20)
    part = 5 << 20
    store.tmp_dir().joinpath(f"{sha(data)}.partial").write_bytes(data[:part])  # a resumed download
    assert store.ensure_object(sha(data), len(data), feeder(data, chunk=4 << 20), label="m: f") is False
    assert store.object_path(sha(data)).read_bytes() == data
    assert ranges and ranges[0][0] == part and all(a + n == b for (a, n), (b, _) in itertools.pairwise(ranges))
    assert ranges[-1][0] + ranges[-1][1] == len(data)  # the last chunk too: the fsync only waits for it


def test_blob_checked_by_git_sha1_in_the_same_pass():
    store, data = Store(), b'{"a": 1}'
    calls: list = []
    assert store.ensure_blob(git_sha1(data), len(data), feeder(data, calls), label="m: config.json") == sha(data)
    assert store.ensure_blob(git_sha1(data), len(data), feeder(data, calls), label="m: config.json") == sha(data)
    assert calls == [0]  # the second time, the git-blob index answers
    with pytest.raises(IntegrityError) as err:
        store.ensure_blob(git_sha1(b"other!!!"), 8, feeder(b"evil!!!!"), label="m: tokenizer.json")
    assert "m: tokenizer.json" in err.value.message and git_sha1(b"other!!!") in err.value.message
    assert objects(store) == [sha(data)] and tmp_files(store) == []


def _slow_ensure(root: str, data: bytes, log: str) -> None:
    def write(dest, resume_from):
        with open(log, "a") as f:
            f.write("w\n")
        for i in range(0, len(data), 1000):
            dest.write(data[i : i + 1000])
            time.sleep(0.01)

    store = Store(Path(root))
    store.ensure_object(sha(data), len(data), write, label="m: f")


def test_concurrent_processes_write_an_object_once(tmp_path):
    data, log = os.urandom(20_000), tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_slow_ensure, args=(str(tmp_path / "s"), data, str(log))) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * 4
    assert log.read_text() == "w\n"
    assert Store(tmp_path / "s").object_path(sha(data)).read_bytes() == data


def test_store_lock_between_threads_and_processes(tmp_path):
    from filelock import Timeout

    store = Store(tmp_path)
    events: list[str] = []
    with store.lock("x"):

        def other():
            try:
                with store.lock("x", timeout=0):
                    events.append("got it while held")
            except Timeout:
                events.append("timed out")
            with Store(tmp_path).lock("x"):  # another Store object on the same root: the same lock
                events.append("got it after release")

        t = threading.Thread(target=other)
        t.start()
        while not events:
            time.sleep(0.01)
        events.append("released")
    t.join(10)
    assert events == ["timed out", "released", "got it after release"]
    code = "import sys\nfrom filelock import FileLock\nFileLock(sys.argv[1], timeout=0).acquire()\n"
    with store.lock("x"):  # a process sees the file lock
        r = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "locks" / "x.lock")], capture_output=True, text=True
        )
    assert r.returncode != 0 and "Timeout" in r.stderr


def test_clean_tmp_removes_leftovers_but_not_what_is_in_use():
    store = Store()
    tmp = store.tmp_dir()
    old = time.time() - 2 * 24 * 3600
    fresh_partial = tmp / f"{'a' * 64}.partial"
    stale_partial = tmp / f"{'b' * 64}.partial"
    dead_blob = tmp / f"blob-{'c' * 40}.partial"
    busy_blob = tmp / f"blob-{'d' * 40}.partial"
    old_dir, new_dir = tmp / "build-old", tmp / "build-new"
    for p in (fresh_partial, stale_partial, dead_blob, busy_blob):
        p.write_bytes(b"x")
    old_dir.mkdir()
    new_dir.mkdir()
    (old_dir / "f").write_bytes(b"x")
    os.chmod(old_dir, 0o555)
    for p in (stale_partial, old_dir):
        os.utime(p, (old, old))
    with store.lock(f"blob-{'d' * 40}"):
        assert store.clean_tmp() == 3
    assert tmp_files(store) == sorted([fresh_partial.name, busy_blob.name, new_dir.name])


def test_verify_prune_info(tmp_path):
    store = Store()
    live, orphan = os.urandom(2000), os.urandom(3000)
    for data in (live, orphan):
        store.ensure_object(sha(data), len(data), feeder(data), label="m: f")
    rec = store.root / "refs" / "projects" / "p.json"
    rec.parent.mkdir(parents=True)
    rec.write_text(json.dumps({"project": "/p", "models": {"m": {"files": [sha(live)]}}}))
    assert not gc.verify(store, rehash_artifact)
    path = store.object_path(sha(live))
    os.chmod(path, 0o644)
    path.write_bytes(b"rot" + live[3:])
    report = gc.verify(store, rehash_artifact)
    assert [b["object"] for b in report.bad_objects] == [sha(live)]
    gc.verify(store, rehash_artifact, fix=True)
    assert objects(store) == [sha(orphan)]
    store.ensure_object(sha(live), len(live), feeder(live), label="m: f")
    dry = gc.prune(store, live_roots, dry_run=True)
    assert dry.objects == [sha(orphan)] and store.has_object(sha(orphan))
    # and the rotten copy `--fix` quarantined
    assert [q.split("-")[0] for q in dry.quarantined] == [sha(live)] and dry.bytes_freed == 3000 + 2000
    blob = b"small"
    store.ensure_blob(git_sha1(blob), len(blob), feeder(blob), label="m: small")
    assert sorted(gc.prune(store, live_roots).objects) == sorted([sha(orphan), sha(blob)])
    assert objects(store) == [sha(live)]
    assert store.sha256_of_blob(git_sha1(blob)) is None
    # Only the live object's verified stat is left in the index.
    assert [
        (*p.relative_to(store.root / "index").parts[:2], p.name)
        for p in (store.root / "index").rglob("*")
        if p.is_file()
    ] == [("verified", "objects", sha(live))]
    data = gc.info(store, live_roots(store))
    assert (data["objects"], data["objects_bytes"], data["synced_projects"]) == (1, 2000, 1)


def test_verify_reports_the_same_whatever_the_parallelism(tmp_path):
    from gpuxbuild.store.gc import verify

    store = Store(tmp_path / "store")
    good = {}
    for i in range(5):
        data = bytes([i]) * (100_000 + i)
        sha = hashlib.sha256(data).hexdigest()
        store.object_path(sha).parent.mkdir(parents=True, exist_ok=True)
        store.object_path(sha).write_bytes(data)
        good[sha] = data
    bad = sorted(good)[1]
    store.object_path(bad).write_bytes(b"rotten")
    odd = store.root / "objects" / "sha256" / "zz" / "not-a-hash"
    odd.parent.mkdir(parents=True)
    odd.write_bytes(b"x")
    reports = [verify(store, rehash_artifact, jobs=jobs) for jobs in (1, 4)]
    assert reports[0] == reports[1]
    assert reports[0].checked == 6
    assert [(b["object"], b["actual"]) for b in reports[0].bad_objects] == [
        (bad, hashlib.sha256(b"rotten").hexdigest()),
        ("not-a-hash", None),
    ]
    fixed = verify(store, rehash_artifact, fix=True, jobs=2)
    assert len(fixed.bad_objects) == 2 and not store.object_path(bad).exists() and not odd.exists()
    assert verify(store, rehash_artifact).bad_objects == []
