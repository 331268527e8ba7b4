"""The registry strategy: a third registry is one class and one registration line, and works with lock and fetch."""

from __future__ import annotations

import hashlib
import threading

import pytest

from gpuxbuild.errors import ManifestError
from gpuxbuild.models.pull import parse_ref, pull
from gpuxbuild.project.manifest import parse_manifest
from gpuxbuild.project.resolver import plan_lock
from gpuxbuild.registries import _TABLE, known_registries, parse_source, register
from gpuxbuild.registries.base import ModelInfo, ModelManager, PinnedModel
from gpuxbuild.store.files import FileEntry
from gpuxbuild.store.objects import Store

CONFIG = b'{"architectures": ["BertForSequenceClassification"], "model_type": "bert"}'
FILES = {"config.json": CONFIG, "model.safetensors": b"weights" * 100}


class MemoryManager(ModelManager):
    """A registry holding one model in memory: what a third registry looks like."""

    name = "memory"

    def resolve(self, repo, revision, *, pin=None):
        files = [FileEntry(p, hashlib.sha256(d).hexdigest(), len(d)) for p, d in sorted(FILES.items())]
        return PinnedModel(
            self.name,
            repo,
            revision,
            "ab" * 20,
            files,
            ModelInfo(config={"architectures": ["BertForSequenceClassification"]}),
        )

    def download(self, repo, commit, file, dest, *, resume_from=0, progress=None):
        dest.write(FILES[file.path][resume_from:])


class StreamingMemoryManager(MemoryManager):
    """Lists its weights before it finishes resolving; with `expect_prefetch` (a pull), waits until the
    caller has fetched them."""

    name = "memory"
    fetched = threading.Event()
    expect_prefetch = False

    def resolve_streaming(self, repo, revision, on_listed, *, pin=None):
        pinned = self.resolve(repo, revision, pin=pin)
        on_listed(
            pinned.commit, [f.path for f in pinned.files], [f for f in pinned.files if f.path == "model.safetensors"]
        )
        if self.expect_prefetch:
            assert self.fetched.wait(10), "the listed file was not fetched while the model was still resolving"
        return pinned

    def download(self, repo, commit, file, dest, *, resume_from=0, progress=None):
        super().download(repo, commit, file, dest, resume_from=resume_from, progress=progress)
        if file.path == "model.safetensors":
            self.fetched.set()


@pytest.fixture(params=["MemoryManager", "StreamingMemoryManager"])
def memory_registry(request):
    register("memory", ("mem",), f"{__name__}:{request.param}")
    StreamingMemoryManager.fetched.clear()
    yield request.param
    del _TABLE["memory"]
    StreamingMemoryManager.expect_prefetch = False


def test_a_third_registry_is_one_class_and_one_line(memory_registry, tmp_path):
    assert "memory" in known_registries()
    assert parse_source("mem:org/model") == ("memory", "org/model")
    path = tmp_path / "gpux.models.yml"
    manifest = parse_manifest("version: 1\nmodels:\n  m:\n    source: mem:org/model\n", path)
    plan = plan_lock(manifest, None, store=Store(tmp_path / "store"))
    entry = plan.lock.models["m"]
    assert (entry.registry, entry.commit, entry.task) == ("memory", "ab" * 20, "text-classification")
    manager = MemoryManager(project=tmp_path, store=Store(tmp_path / "store"))
    result = manager.fetch("org/model", entry.commit, entry.files)
    assert result.downloaded == ["config.json", "model.safetensors"]
    assert manager.store.object_path(entry.files[0].sha256).read_bytes() == CONFIG


def test_unknown_registry_lists_the_known_ones():
    with pytest.raises(ManifestError) as exc:
        parse_source("s3:bucket/x")
    assert (
        "unknown registry 's3'" in exc.value.message and "huggingface" in exc.value.hint and "local" in exc.value.hint
    )
    with pytest.raises(ManifestError):
        parse_source("org/x", "nope")


def test_a_third_registry_pulls(memory_registry, tmp_path):
    """`gpux pull` works with a registry that only implements resolve() and download(), and with one that
    lists files early (its resolve_streaming waits until pull has fetched them)."""
    StreamingMemoryManager.expect_prefetch = True
    store = Store(tmp_path / "store")
    res = pull(parse_ref("mem:org/model"), store=store, project=tmp_path)
    assert res.record.registry == "memory" and res.record.commit == "ab" * 20
    assert res.downloaded == ["config.json", "model.safetensors"] and res.cached == [] and res.objects_downloaded == 2
    for f in res.record.files:
        assert store.object_path(f["sha256"]).read_bytes() == FILES[f["path"]]
