"""The local Hub server against the real huggingface_hub client (no mocks)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from hubserver import DEFAULT_TOKEN, GITATTRIBUTES, HubServer
from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

CONFIG = b'{"architectures": ["BertForSequenceClassification"], "model_type": "bert"}'
WEIGHTS = bytes(range(256)) * 200  # 51200 bytes: LFS by extension and by size
BIG_TEXT = b"x" * (10 * 1024 + 1)  # LFS by size alone
CARD = {"pipeline_tag": "text-classification", "library_name": "transformers", "license": "apache-2.0"}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def model(hub: HubServer, repo_id: str) -> str:
    """A repo with a config, LFS weights, a large text file and a nested folder."""
    hub.create_repo(repo_id, card=CARD)
    hub.commit(
        repo_id,
        {"config.json": CONFIG, "model.safetensors": WEIGHTS, "big.txt": BIG_TEXT, "onnx/tok/vocab.txt": b"a\nb\n"},
        message="add model",
    )
    return repo_id


def test_model_info_with_files_metadata(hub, model):
    info = HfApi().model_info(model, files_metadata=True)
    assert info.id == model and info.sha == hub.head(model)
    assert (info.pipeline_tag, info.library_name, info.private, info.gated) == (
        "text-classification",
        "transformers",
        False,
        False,
    )
    assert info.config == {"architectures": ["BertForSequenceClassification"], "model_type": "bert"}
    assert info.card_data.license == "apache-2.0"
    assert {"transformers", "bert", "safetensors", "license:apache-2.0"} <= set(info.tags)
    assert info.last_modified is not None
    siblings = {s.rfilename: s for s in info.siblings}
    assert sorted(siblings) == [".gitattributes", "big.txt", "config.json", "model.safetensors", "onnx/tok/vocab.txt"]
    config = siblings["config.json"]
    assert (config.size, config.blob_id, config.lfs) == (len(CONFIG), git_blob_sha1(CONFIG), None)
    for name, data in (("model.safetensors", WEIGHTS), ("big.txt", BIG_TEXT)):
        lfs = siblings[name].lfs
        assert (lfs.sha256, lfs.size, siblings[name].size) == (hashlib.sha256(data).hexdigest(), len(data), len(data))
        assert lfs.pointer_size > 100
    assert siblings[".gitattributes"].size == len(GITATTRIBUTES)
    # without blobs=true the Hub sends file names only
    assert all(s.size is None for s in HfApi().model_info(model).siblings)


def test_ids_are_git_compatible_and_stable(hub, repo_id):
    hub.create_repo(repo_id, gitattributes=False)
    sha = hub.commit(repo_id, {"a.txt": b"hello"}, message="m")
    assert hub.files(repo_id)["a.txt"].oid == "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"  # `git hash-object`
    tree = HfApi().get_paths_info(repo_id, ["a.txt"])[0]
    assert tree.blob_id == "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"
    # same parent + tree + message -> same id, in any repo, in any run
    hub.create_repo(repo_id + "-twin", gitattributes=False)
    assert hub.commit(repo_id + "-twin", {"a.txt": b"hello"}, message="m") == sha
    # `git commit-tree` gives this id too, with the server's fixed author and dates
    assert sha == "875eef531a48dbd147c9821e929fefd5730d079e"


def test_list_repo_tree_paginates(hub, model, monkeypatch):
    monkeypatch.setattr(hub, "page_size", 2)
    api = HfApi()
    everything = list(api.list_repo_tree(model, recursive=True))
    assert [e.path for e in everything] == [
        ".gitattributes",
        "big.txt",
        "config.json",
        "model.safetensors",
        "onnx",
        "onnx/tok",
        "onnx/tok/vocab.txt",
    ]
    assert hub.count(kind="api", repo=model, path="") == 4  # 7 entries, 2 per page
    top = {e.path: e for e in api.list_repo_tree(model)}
    assert sorted(top) == [".gitattributes", "big.txt", "config.json", "model.safetensors", "onnx"]
    assert top["model.safetensors"].lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert type(top["onnx"]).__name__ == "RepoFolder" and len(top["onnx"].tree_id) == 40
    nested = list(api.list_repo_tree(model, path_in_repo="onnx/tok", expand=True))
    assert [e.path for e in nested] == ["onnx/tok/vocab.txt"]
    assert nested[0].last_commit.oid == hub.head(model) and nested[0].last_commit.title == "add model"
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(model, path_in_repo="missing"))


def test_get_paths_info(hub, model):
    first = hub.head(model)
    hub.commit(model, {"config.json": b"{}"}, message="touch config")
    infos = HfApi().get_paths_info(model, ["config.json", "onnx", "model.safetensors", "missing"], expand=True)
    by_path = {i.path: i for i in infos}
    assert sorted(by_path) == ["config.json", "model.safetensors", "onnx"]  # missing paths are left out
    assert by_path["config.json"].blob_id == git_blob_sha1(b"{}")
    assert by_path["config.json"].last_commit.oid == hub.head(model)
    assert by_path["model.safetensors"].last_commit.oid == first  # unchanged since
    assert by_path["model.safetensors"].lfs.size == len(WEIGHTS)
    old = HfApi().get_paths_info(model, ["config.json"], revision=first)
    assert old[0].blob_id == git_blob_sha1(CONFIG)


def test_refs_and_commits(hub, model):
    v1 = hub.tag(model, "v1.0")
    dev = hub.commit(model, {"dev.txt": b"dev"}, branch="feature/x", message="dev work\n\nlong description")
    pr = hub.commit(model, {"pr.txt": b"pr"}, branch="refs/pr/1")
    refs = HfApi().list_repo_refs(model, include_pull_requests=True)
    assert {(b.name, b.ref, b.target_commit) for b in refs.branches} == {
        ("main", "refs/heads/main", v1),
        ("feature/x", "refs/heads/feature/x", dev),
    }
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1.0", "refs/tags/v1.0", v1)]
    assert [(p.ref, p.target_commit) for p in refs.pull_requests] == [("refs/pr/1", pr)]
    assert refs.converts == []
    commits = HfApi().list_repo_commits(model, revision="feature/x")
    assert [c.title for c in commits] == ["dev work", "add model", "initial commit"]
    assert commits[0].commit_id == dev and commits[0].message == "long description"
    # url-encoded revisions with slashes
    assert HfApi().model_info(model, revision="refs/pr/1").sha == pr
    assert HfApi().model_info(model, revision="feature/x").sha == dev
    assert HfApi().model_info(model, revision="refs/tags/v1.0").sha == v1


def test_hf_hub_download_regular_and_lfs(hub, model, hf_home):
    commit = hub.head(model)
    small = Path(hf_hub_download(model, "config.json"))
    assert small.read_bytes() == CONFIG
    assert small.parent.name == commit and Path(hf_home) in small.parents
    assert small.resolve().name == git_blob_sha1(CONFIG)  # the cache names blobs by ETag
    for name, data in (("model.safetensors", WEIGHTS), ("big.txt", BIG_TEXT)):
        path = Path(hf_hub_download(model, name))
        assert path.read_bytes() == data and path.resolve().name == hashlib.sha256(data).hexdigest()
    assert hub.count("GET", repo=model, path="model.safetensors", kind="lfs") == 1
    assert hub.count("GET", repo=model, path="model.safetensors", kind="resolve") == 0
    assert hub.count("HEAD", repo=model, path="model.safetensors", kind="resolve") == 1
    nested = hf_hub_download(model, "vocab.txt", subfolder="onnx/tok")
    assert Path(nested).read_bytes() == b"a\nb\n"


def test_download_by_branch_tag_and_sha_after_branch_moves(hub, model, tmp_path):
    old = hub.head(model)
    hub.tag(model, "v1")
    new = hub.commit(model, {"config.json": b'{"model_type": "gpt2"}'})
    assert Path(hf_hub_download(model, "config.json")).read_bytes() == b'{"model_type": "gpt2"}'
    assert Path(hf_hub_download(model, "config.json", revision="v1")).read_bytes() == CONFIG
    assert Path(hf_hub_download(model, "config.json", revision=old)).read_bytes() == CONFIG
    assert HfApi().model_info(model).sha == new
    hub.move_branch(model, "main", old)  # a force-push back
    meta = get_hf_file_metadata(hf_hub_url(model, "config.json"))
    assert meta.commit_hash == old and meta.etag == git_blob_sha1(CONFIG)
    got = hf_hub_download(model, "config.json", revision=new, local_dir=tmp_path / "pinned")
    assert Path(got).read_bytes() == b'{"model_type": "gpt2"}'


def test_get_hf_file_metadata(hub, model):
    commit = hub.head(model)
    small = get_hf_file_metadata(hf_hub_url(model, "config.json"))
    assert (small.commit_hash, small.etag, small.size) == (commit, git_blob_sha1(CONFIG), len(CONFIG))
    assert small.location == hf_hub_url(model, "config.json")
    big = get_hf_file_metadata(hf_hub_url(model, "model.safetensors"))
    assert (big.commit_hash, big.etag, big.size) == (commit, hashlib.sha256(WEIGHTS).hexdigest(), len(WEIGHTS))
    assert big.location.startswith(hub.cdn_endpoint + "/lfs/")  # absolute redirect: not followed by HEAD


def test_snapshot_download(hub, model, tmp_path):
    folder = Path(snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "onnx/*"]))
    assert folder.name == hub.head(model)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["config.json", "model.safetensors", "onnx/tok/vocab.txt"]
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    local = Path(snapshot_download(model, local_dir=tmp_path / "m"))
    assert (local / "big.txt").read_bytes() == BIG_TEXT


def test_range_requests(hub, model):
    location = get_hf_file_metadata(hf_hub_url(model, "model.safetensors")).location
    part = requests.get(location, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == WEIGHTS[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(WEIGHTS)}"
    assert part.headers["ETag"] == f'"{hashlib.sha256(WEIGHTS).hexdigest()}"'
    assert requests.get(location, headers={"Range": "bytes=-10"}).content == WEIGHTS[-10:]
    assert requests.get(location, headers={"Range": f"bytes={len(WEIGHTS)}-"}).status_code == 416
    small = requests.get(hf_hub_url(model, "config.json"), headers={"Range": "bytes=5-"})
    assert small.status_code == 206 and small.content == CONFIG[5:]


def test_interrupted_download_resumes_with_range(hub, repo_id, hf_home):
    # The client writes whole DOWNLOAD_CHUNK_SIZE (10 MiB) chunks, so only a cut past one chunk leaves
    # bytes in the .incomplete file for the next attempt to resume from.
    chunk = constants.DOWNLOAD_CHUNK_SIZE
    data = bytes(range(256)) * (chunk // 256 + 4096)
    hub.create_repo(repo_id)
    hub.commit(repo_id, {"weights.bin": data})
    hub.cut_after(repo_id, "weights.bin", chunk + 1000)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        hf_hub_download(repo_id, "weights.bin")
    assert [p.stat().st_size for p in Path(hf_home).rglob("*.incomplete")] == [chunk]
    assert Path(hf_hub_download(repo_id, "weights.bin")).read_bytes() == data
    gets = hub.requests("GET", repo=repo_id, path="weights.bin", kind="lfs")
    assert [(r.range, r.status) for r in gets] == [(None, 200), (f"bytes={chunk}-", 206)]


def test_throttle_and_tamper(hub, model):
    hub.throttle(model, "big.txt", 50_000)
    started = time.monotonic()
    assert Path(hf_hub_download(model, "big.txt")).read_bytes() == BIG_TEXT
    assert time.monotonic() - started >= 0.15
    evil = b"X" * len(CONFIG)
    hub.tamper(model, "config.json", evil)
    meta = get_hf_file_metadata(hf_hub_url(model, "config.json"))
    assert meta.etag == git_blob_sha1(CONFIG)  # metadata still advertises the real file
    assert Path(hf_hub_download(model, "config.json")).read_bytes() == evil
    hub.tamper(model, "model.safetensors", b"\0" * len(WEIGHTS))
    assert Path(hf_hub_download(model, "model.safetensors")).read_bytes() == b"\0" * len(WEIGHTS)
    hub.clear_faults(model)
    assert requests.get(hf_hub_url(model, "config.json")).content == CONFIG


def test_error_classes(hub, model):
    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("test-org/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("test-org/does-not-exist", "config.json")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(model, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(model, "config.json", revision="0" * 40)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(model, "missing.json")
    with pytest.raises(EntryNotFoundError):
        get_hf_file_metadata(hf_hub_url(model, "missing.json"))


def test_private_repo_needs_token(hub, repo_id):
    hub.create_repo(repo_id, private=True, token="hf_secret")
    hub.commit(repo_id, {"config.json": CONFIG})
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "config.json", token="hf_wrong")
    assert HfApi(token="hf_secret").model_info(repo_id).private is True
    assert Path(hf_hub_download(repo_id, "config.json", token="hf_secret")).read_bytes() == CONFIG
    assert {r.status for r in hub.requests(repo=repo_id) if r.token is None} == {401}
    assert {r.status for r in hub.requests(repo=repo_id) if r.token == "hf_wrong"} == {404}
    assert hub.count(repo=repo_id, kind="resolve", method="GET") == 1


def test_gated_repo(hub, repo_id, hf_env):
    hub.create_repo(repo_id, gated="manual")
    hub.commit(repo_id, {"config.json": CONFIG, "model.onnx": b"onnx"})
    assert HfApi().model_info(repo_id).gated == "manual"  # metadata stays public, as on the Hub
    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download(repo_id, "config.json")
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as unlisted:
        hf_hub_download(repo_id, "model.onnx", token="hf_someone_else")
    assert unlisted.value.response.status_code == 403
    hf_env(HF_TOKEN=DEFAULT_TOKEN)  # the client picks the token up from the environment
    assert Path(hf_hub_download(repo_id, "model.onnx")).read_bytes() == b"onnx"
    lfs = hub.requests("GET", repo=repo_id, kind="lfs")
    assert [r.token for r in lfs] == [None]  # the client drops the token on the CDN's origin
    assert hub.requests("HEAD", repo=repo_id, path="model.onnx")[-1].token == DEFAULT_TOKEN


def test_deletes_card_and_access_changes(hub, model):
    hub.commit(model, {}, delete=["big.txt", "onnx/"], message="prune")
    assert sorted(hub.files(model)) == [".gitattributes", "config.json", "model.safetensors"]
    assert [e.path for e in HfApi().list_repo_tree(model)] == [".gitattributes", "config.json", "model.safetensors"]
    hub.set_card(
        model,
        {"pipeline_tag": "feature-extraction", "tags": ["custom"], "transformersInfo": {"auto_model": "AutoModel"}},
    )
    info = HfApi().model_info(model)
    assert info.pipeline_tag == "feature-extraction" and info.tags[0] == "custom"
    assert info.transformers_info.auto_model == "AutoModel" and info.library_name is None
    hub.set_access(model, private=True)
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info(model)
    hub.delete_repo(model)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=DEFAULT_TOKEN).model_info(model)


def test_hostile_paths_are_listed_verbatim(hub, repo_id):
    hub.create_repo(repo_id)
    hub.commit(repo_id, {"../evil.txt": b"1", "/abs.txt": b"2", "a/../../x": b"3"})
    names = {s.rfilename for s in HfApi().model_info(repo_id).siblings}
    assert {"../evil.txt", "/abs.txt", "a/../../x"} <= names
    tree = {e.path for e in HfApi().list_repo_tree(repo_id, recursive=True)}
    assert {"../evil.txt", "/abs.txt", "a/../../x"} <= tree


def test_cached_download_and_offline_mode(hub, model, hf_env):
    hf_hub_download(model, "config.json")
    hub.reset_log()
    hf_hub_download(model, "config.json")  # cached: one HEAD to check the ETag, no body
    assert (hub.count("HEAD", repo=model), hub.count("GET", repo=model)) == (1, 0)
    hf_env(HF_HUB_OFFLINE="1")
    assert Path(hf_hub_download(model, "config.json")).read_bytes() == CONFIG
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(model, "big.txt")
    assert hub.count(repo=model) == 1


def test_stop_and_start_on_the_same_port(hub, model):
    endpoint, url = hub.endpoint, hf_hub_url(model, "config.json")
    hub.stop()
    with pytest.raises(requests.ConnectionError):
        requests.head(url, timeout=2)
    hub.start()
    assert hub.endpoint == endpoint
    assert requests.get(url, timeout=2).content == CONFIG


def test_subprocesses_see_the_same_hub(hub, model, hf_home, gpux_home):
    code = (
        "import os; from huggingface_hub import hf_hub_download; "
        f"print(hf_hub_download({model!r}, 'config.json')); print(os.environ['GPUX_HOME'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    path, home = out.stdout.split()
    assert Path(path).read_bytes() == CONFIG and Path(hf_home) in Path(path).parents
    assert home == str(gpux_home) and os.environ["HF_ENDPOINT"] == hub.endpoint
    assert hub.count("GET", repo=model, path="config.json") == 1
