"""`MlflowManager`: registered model versions of an MLflow Model Registry, over the tracking server's REST API.

`mlflow:NAME/VERSION` pins that version; `mlflow:NAME@ALIAS` resolves the alias to a version at lock time, as
a branch to a commit. The "commit" is a digest of the model's name, version, run id and logged model, so a
version deleted and registered again under the same number is a different pin; `PinnedModel.origin` records
the version and run id themselves. The server lists artifacts without hashes: each file the model keeps is
downloaded once at lock time and hashed as it streams into the store.

A version's artifacts are mapped into a folder the build understands: the transformers flavour's weights and
config (`model/`) and its components (`components/tokenizer/`) at the top, as in a Hub repo; an ONNX model's
files as they are, without MLflow's own (MLmodel, conda.yaml, requirements.txt, ...).

The server is MLFLOW_TRACKING_URI; MLFLOW_TRACKING_TOKEN (a bearer token) or MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD (basic auth), MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH are
read as MLflow's client reads them. No mlflow package is needed.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, BinaryIO
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit

from gpuxbuild.errors import RegistryError, quote
from gpuxbuild.hashing import digest
from gpuxbuild.network import (
    GaveUp,
    RetryPolicy,
    http_timeout,
    redact_url,
    requests_failure_name,
    requests_transient,
    url_host,
)
from gpuxbuild.registries.base import (
    Listed,
    ModelInfo,
    ModelManager,
    Origin,
    PinnedModel,
    Progress,
    check_repo_path,
)
from gpuxbuild.store.files import FileEntry

# Files MLflow writes beside every model, which no build uses.
MLFLOW_FILES = frozenset(
    {
        "MLmodel",
        "conda.yaml",
        "python_env.yaml",
        "requirements.txt",
        "LICENSE.txt",
        "input_example.json",
        "serving_input_example.json",
        "registered_model_meta",
    }
)
MAX_MLMODEL_BYTES = 1 << 20
MAX_LISTED_FILES = 10_000
SEARCH_PAGE = 100


@dataclass(frozen=True)
class Version:
    """A registered model version as the server describes it."""

    name: str
    version: str
    run_id: str
    source: str
    status: str

    @property
    def pin(self) -> str:
        """The lock's commit for this version: 64 hex digits over what identifies it."""
        return digest(
            {
                "registry": "mlflow",
                "name": self.name,
                "version": self.version,
                "run_id": self.run_id,
                "source": self.source,
            }
        ).removeprefix("sha256:")

    @property
    def origin(self) -> Origin:
        return Origin(version=self.version, run_id=self.run_id or None)


@dataclass(frozen=True)
class Layout:
    """A version's model folder: model path -> artifact path (relative to the artifact root), and its metadata."""

    root: str  # the artifact root's path on the server's mlflow-artifacts API
    paths: dict[str, str]
    sizes: dict[str, int]
    flavor: str
    task: str | None


@dataclass(frozen=True)
class SearchHit:
    """A registered model found by `gpux search`: its latest version."""

    name: str
    version: str
    updated: int | None  # milliseconds since the epoch, as MLflow reports
    aliases: tuple[str, ...]  # "ALIAS -> VERSION"


def split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`NAME/VERSION` -> (NAME, VERSION, None); `NAME@ALIAS` -> (NAME, None, ALIAS)."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, None, alias
    name, version = ref.rsplit("/", 1)
    return name, version, None


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, which must be an http(s) server."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip().rstrip("/")
    if not uri:
        raise RegistryError(
            "MLFLOW_TRACKING_URI is not set: no MLflow tracking server to ask",
            "set MLFLOW_TRACKING_URI=https://your-mlflow-server (and MLFLOW_TRACKING_TOKEN or _USERNAME/_PASSWORD)",
        )
    if urlsplit(uri).scheme not in ("http", "https"):
        raise RegistryError(
            f"MLFLOW_TRACKING_URI={quote(redact_url(uri))} is not an http(s) tracking server",
            "gpuxbuild talks to the MLflow server's REST API: run `mlflow server` and point MLFLOW_TRACKING_URI at it",
        )
    return uri


class MlflowManager(ModelManager):
    """An MLflow Model Registry (MLFLOW_TRACKING_URI)."""

    name = "mlflow"

    def __init__(self, *, project, offline: bool = False, store=None):
        super().__init__(project=project, offline=offline, store=store)
        self._layouts: dict[tuple[str, str], Layout] = {}
        self._pins: dict[tuple[str, str], Version] = {}
        self._lock = threading.Lock()

    def display(self, repo: str) -> str:
        return f"mlflow:{repo}"

    @cached_property
    def retry(self) -> RetryPolicy:
        return RetryPolicy.from_env()

    @cached_property
    def uri(self) -> str:
        return tracking_uri()

    @cached_property
    def session(self):
        import requests

        session = requests.Session()
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        elif user and password:
            session.auth = (user, password)
        if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            session.verify = False
        elif os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            session.verify = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        return session

    def _need_network(self, what: str) -> None:
        if self.offline:
            raise RegistryError(
                f"{what}: needs the MLflow server, but offline mode is on (--offline)",
                "run once online, or sync the model while online so it is in the store",
            )

    # ------------------------------------------------------------------ HTTP

    @contextmanager
    def _errors(self, where: str) -> Iterator[None]:
        """Network failures and refusals as one line naming the server (never its credentials)."""
        import requests

        try:
            yield
        except (requests.RequestException, GaveUp) as exc:
            attempts = f", {exc.attempts} attempts" if isinstance(exc, GaveUp) else ""
            error = exc.error if isinstance(exc, GaveUp) else exc
            host = url_host(self.uri)
            response = getattr(error, "response", None)
            if isinstance(error, requests.HTTPError) and response is not None:
                if response.status_code in (401, 403):
                    raise RegistryError(
                        f"{where}: not authorized by {host} (HTTP {response.status_code})",
                        "set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
                    ) from None
                raise RegistryError(
                    f"{where}: {host} answered HTTP {response.status_code}{attempts}",
                    "check MLFLOW_TRACKING_URI; retry later, or allow more with GPUX_HTTP_RETRIES / GPUX_HTTP_TIMEOUT",
                ) from None
            if isinstance(error, (requests.ConnectionError, requests.Timeout)):
                raise RegistryError(
                    f"{where}: cannot reach the MLflow server {host} ({requests_failure_name(error)}{attempts})",
                    "check MLFLOW_TRACKING_URI and that the server runs; models already in the store work with --offline",
                ) from None
            raise RegistryError(
                f"{where}: transfer from {host} failed ({type(error).__name__}{attempts})",
                "run the command again: large downloads resume where they stopped",
            ) from None

    def _api(self, where: str, endpoint: str, params: dict[str, Any], *, lookup: bool = False) -> dict:
        """GET a JSON answer of the REST API. A `lookup` the server answers "does not exist" (or, for an alias,
        "invalid parameter") raises `_Missing`; any other refusal is a RegistryError naming the server's reason."""
        timeout = http_timeout("metadata")

        def call() -> dict:
            r = self.session.get(f"{self.uri}/api/2.0/mlflow/{endpoint}", params=params, timeout=(timeout, timeout))
            code = _error_code(r) if r.status_code in (400, 404) else None
            if lookup and code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise _Missing(_error_message(r))
            if code:
                raise RegistryError(
                    f"{where}: {url_host(self.uri)} refused the request ({code}: {_error_message(r)[:200]})",
                    "check the model name; report it if the server's answer seems wrong",
                )
            r.raise_for_status()
            try:
                data = r.json()
            except ValueError:
                raise RegistryError(
                    f"{where}: {url_host(self.uri)} did not answer JSON", "check MLFLOW_TRACKING_URI points to MLflow"
                ) from None
            return data if isinstance(data, dict) else {}

        with self._errors(where):
            return self.retry.run(call, requests_transient)

    def _version(self, where: str, data: dict) -> Version:
        mv = data.get("model_version") or {}
        fields = {k: mv.get(k) for k in ("name", "version", "run_id", "source", "status")}
        if not all(isinstance(v, str) for k, v in fields.items() if k != "run_id"):
            raise RegistryError(f"{where}: the server's answer has no model version", "check MLFLOW_TRACKING_URI")
        version = Version(**{k: v or "" for k, v in fields.items()})
        if version.status != "READY":
            raise RegistryError(
                f"{where}: version {version.version} is {version.status}, not READY",
                "wait until MLflow has finished registering it, or use another version",
            )
        return version

    # ------------------------------------------------------------------ versions

    def _get_version(self, name: str, version: str, alias: str | None = None) -> Version:
        where = f"mlflow:{name}" + (f"@{alias}" if alias else f"/{version}")
        try:
            if alias:
                data = self._api(where, "registered-models/alias", {"name": name, "alias": alias}, lookup=True)
            else:
                data = self._api(where, "model-versions/get", {"name": name, "version": version}, lookup=True)
        except _Missing:
            what = f"alias {alias!r}" if alias else f"version {version}"
            raise RegistryError(
                f"{where}: no registered model {name!r} with {what} on {url_host(self.uri)}",
                "check the name and version (`gpux search --registry mlflow NAME` lists them) and MLFLOW_TRACKING_URI",
            ) from None
        return self._version(where, data)

    def _pinned_version(self, name: str, version: str | None, alias: str | None, pin: str) -> Version:
        """The version whose pin is `pin`: the one asked for, else (an alias moved since) any version of the model.
        Remembered, so that downloading a model's files asks once."""
        with self._lock:
            known = self._pins.get((name, pin))
        if known is None:
            known = self._find_pinned(name, version, alias, pin)
            with self._lock:
                self._pins[(name, pin)] = known
        return known

    def _find_pinned(self, name: str, version: str | None, alias: str | None, pin: str) -> Version:
        current = self._get_version(name, version or "", alias)
        if current.pin == pin:
            return current
        if alias:
            for candidate in self._all_versions(name):
                if candidate.pin == pin:
                    return self._get_version(name, candidate.version)
        raise RegistryError(
            f"mlflow:{name}: the version pinned in gpux.lock ({pin[:12]}) is no longer in the registry",
            f"re-pin it with `gpux lock --upgrade` (it now resolves to version {current.version})",
        )

    def _all_versions(self, name: str) -> Iterator[Version]:
        token = None
        while True:
            params: dict[str, Any] = {"filter": f"name='{_quote_filter(name)}'", "max_results": SEARCH_PAGE}
            if token:
                params["page_token"] = token
            data = self._api(f"mlflow:{name}", "model-versions/search", params)
            for mv in data.get("model_versions") or []:
                if isinstance(mv, dict) and mv.get("status") == "READY":
                    yield Version(
                        str(mv.get("name")),
                        str(mv.get("version")),
                        str(mv.get("run_id") or ""),
                        str(mv.get("source")),
                        "READY",
                    )
            token = data.get("next_page_token")
            if not token:
                return

    # ------------------------------------------------------------------ artifacts

    def _artifact_root(self, where: str, v: Version) -> str:
        try:
            data = self._api(
                where, "model-versions/get-download-uri", {"name": v.name, "version": v.version}, lookup=True
            )
        except _Missing as exc:
            raise RegistryError(f"{where}: {exc}", "check the version in the MLflow UI") from None
        uri = str(data.get("artifact_uri") or "")
        if not uri.startswith("mlflow-artifacts:"):
            raise RegistryError(
                f"{where}: its artifacts are at {quote(redact_url(uri))}, which the server does not serve",
                "run the server with artifact serving (`mlflow server --artifacts-destination ...`, the default)",
            )
        root = urlsplit(uri).path.strip("/")
        check_repo_path(where, root)
        return root

    def _list(self, where: str, root: str) -> dict[str, int]:
        """Every file under `root` on the server, by path relative to it, with its size."""
        files: dict[str, int] = {}
        todo = [""]
        while todo:
            sub = todo.pop()
            path = f"{root}/{sub}" if sub else root
            data = self._get_json(where, "api/2.0/mlflow-artifacts/artifacts", {"path": path})
            for item in data.get("files") or []:
                name = str(item.get("path") or "")
                rel = f"{sub}/{name}" if sub else name
                check_repo_path(where, rel)
                if item.get("is_dir"):
                    todo.append(rel)
                else:
                    size = item.get("file_size")
                    if not isinstance(size, int) or size < 0:
                        raise RegistryError(
                            f"{where}: the server lists no size for {quote(rel)}", "check MLFLOW_TRACKING_URI"
                        )
                    files[rel] = size
                if len(files) + len(todo) > MAX_LISTED_FILES:
                    raise RegistryError(
                        f"{where}: more than {MAX_LISTED_FILES} artifact files", "a model version has far fewer"
                    )
        return files

    def _get_json(self, where: str, path: str, params: dict) -> dict:
        timeout = http_timeout("metadata")

        def call() -> dict:
            r = self.session.get(f"{self.uri}/{path}", params=params, timeout=(timeout, timeout))
            r.raise_for_status()
            data = r.json()
            return data if isinstance(data, dict) else {}

        with self._errors(where):
            return self.retry.run(call, requests_transient)

    def _layout(self, where: str, v: Version) -> Layout:
        """The version's model folder, from its artifact listing and its MLmodel (cached per version)."""
        key = (v.name, v.pin)
        with self._lock:
            if key in self._layouts:
                return self._layouts[key]
        root = self._artifact_root(where, v)
        listed = self._list(where, root)
        if "MLmodel" not in listed:
            raise RegistryError(
                f"{where}: version {v.version} has no MLmodel file", "log the model with mlflow.<flavor>.log_model"
            )
        flavors = self._mlmodel(where, root, listed["MLmodel"])
        layout = _map_layout(where, root, listed, flavors)
        with self._lock:
            self._layouts[key] = layout
        return layout

    def _mlmodel(self, where: str, root: str, size: int) -> dict:
        import io

        import yaml

        from gpuxbuild.errors import GpuxError
        from gpuxbuild.yaml_io import DuplicateKey, load_yaml

        if size > MAX_MLMODEL_BYTES:
            raise RegistryError(f"{where}: its MLmodel file is over {MAX_MLMODEL_BYTES} bytes", "check the model")
        buf = io.BytesIO()
        self._stream(where, f"{root}/MLmodel", buf, None)
        try:
            data, _ = load_yaml(buf.getvalue(), "MLmodel", max_bytes=MAX_MLMODEL_BYTES, hint="")
        except (yaml.YAMLError, GpuxError, DuplicateKey):
            data = None
        flavors = data.get("flavors") if isinstance(data, dict) else None
        if not isinstance(flavors, dict):
            raise RegistryError(
                f"{where}: its MLmodel file lists no flavors", "log the model with mlflow.<flavor>.log_model"
            )
        return flavors

    def _stream(self, where: str, path: str, dest: BinaryIO, progress: Progress | None) -> None:
        """Download artifact `path` into `dest` from `dest.tell()` on, retried and resumed."""
        import requests

        url = f"{self.uri}/api/2.0/mlflow-artifacts/artifacts/{url_quote(path)}"
        timeout = http_timeout("download")

        def call() -> None:
            offset = dest.tell()
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            with self.session.get(url, headers=headers, stream=True, timeout=(timeout, timeout)) as r:
                r.raise_for_status()
                if offset and r.status_code == 200:  # the server ignored the Range: start over
                    dest.seek(0)
                    dest.truncate()
                for chunk in r.iter_content(chunk_size=1 << 20):
                    if progress:
                        progress(len(chunk))
                    dest.write(chunk)

        mark = dest.tell()

        def progressed() -> bool:
            nonlocal mark
            moved, mark = dest.tell() != mark, dest.tell()
            return moved

        check = (lambda: progress(0)) if progress else (lambda: None)
        with self._errors(f"{where}: {path.rsplit('/', 1)[-1]}"):
            try:
                self.retry.run(call, requests_transient, progressed=progressed, check=check)
            except requests.HTTPError as exc:
                if exc.response is not None and exc.response.status_code == 404:
                    raise RegistryError(
                        f"{where}: artifact {quote(path)} is gone from the server",
                        "re-lock: `gpux lock --upgrade NAME`",
                    ) from None
                raise

    # ------------------------------------------------------------------ the ModelManager interface

    def resolve(self, repo: str, revision: str | None, *, pin: str | None = None) -> PinnedModel:
        return self.resolve_streaming(repo, revision, lambda *_: None, pin=pin)

    def resolve_streaming(
        self, repo: str, revision: str | None, on_listed: Listed, *, pin: str | None = None
    ) -> PinnedModel:
        where = f"mlflow:{repo}"
        if revision is not None:
            raise RegistryError(
                f"{where}: an MLflow source takes no `revision:`",
                "name the version in the source (mlflow:NAME/VERSION) or an alias (mlflow:NAME@ALIAS)",
            )
        self._need_network(f"resolving {where}")
        name, version, alias = split_ref(repo)
        v = self._pinned_version(name, version, alias, pin) if pin else self._get_version(name, version or "", alias)
        layout = self._layout(where, v)
        paths = sorted(layout.paths)
        wanted = on_listed(v.pin, paths, [])
        keep = [p for p in paths if wanted is None or p in wanted or p == "config.json"]
        files = sorted(self._hash(where, layout, p) for p in keep)
        config: dict = {}
        if "config.json" in layout.paths:
            config = self._read_json(where, next(f for f in files if f.path == "config.json"))
        info = ModelInfo(
            pipeline_tag=layout.task,
            library="transformers" if layout.flavor == "transformers" else None,
            architectures=list(config.get("architectures") or []),
            model_type=config.get("model_type"),
            config=config,
        )
        return PinnedModel(self.name, repo, revision, v.pin, files, info, paths, origin=v.origin)

    def _hash(self, where: str, layout: Layout, path: str) -> FileEntry:
        """Download one file into the store, learning its sha256 as it streams (the server lists none)."""
        import tempfile

        store = self._store()
        size = layout.sizes[path]
        with tempfile.NamedTemporaryFile(dir=store.tmp_dir(), prefix="mlflow-", suffix=".partial") as tmp:
            hasher = _HashingFile(tmp)
            self._stream(where, f"{layout.root}/{layout.paths[path]}", hasher, None)  # type: ignore[arg-type]
            tmp.flush()
            if hasher.size != size:
                raise RegistryError(
                    f"{where}: {path}: the server sent {hasher.size} bytes, but lists {size}",
                    "retry; if it persists, the artifact store is inconsistent",
                )
            sha = hasher.sha256.hexdigest()

            def copy(dest: BinaryIO, resume_from: int) -> None:
                with open(tmp.name, "rb") as src:
                    src.seek(resume_from)
                    while chunk := src.read(1 << 20):
                        dest.write(chunk)

            store.ensure_object(sha, size, copy, label=f"{where}: {path}")
        return FileEntry(path, sha, size)

    def _read_json(self, where: str, entry: FileEntry) -> dict:
        import json

        try:
            data = json.loads(self._store().object_path(entry.sha256).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RegistryError(f"{where}: {entry.path} is not valid JSON ({exc})", "fix the logged model") from None
        return data if isinstance(data, dict) else {}

    def _store(self):
        if self.store is None:
            from gpuxbuild.store.objects import Store

            self.store = Store()
        return self.store

    def download(
        self,
        repo: str,
        commit: str,
        file: FileEntry,
        dest: BinaryIO,
        *,
        resume_from: int = 0,
        progress: Progress | None = None,
    ) -> None:
        where = f"mlflow:{repo}"
        self._need_network(f"downloading {where}: {file.path}")
        name, version, alias = split_ref(repo)
        v = self._pinned_version(name, version, alias, commit)
        layout = self._layout(where, v)
        if file.path not in layout.paths:
            raise RegistryError(
                f"{where}: {file.path} is not in version {v.version}", "re-lock: `gpux lock --upgrade NAME`"
            )
        self._stream(where, f"{layout.root}/{layout.paths[file.path]}", dest, progress)

    def search(self, query: str, limit: int) -> list[SearchHit]:
        """Registered models whose name contains `query` (case-insensitive), with their latest version."""
        self._need_network("searching MLflow")
        params = {"filter": f"name ILIKE '%{_quote_filter(query)}%'", "max_results": min(limit, 1000)}
        data = self._api("mlflow search", "registered-models/search", params)
        hits = []
        for rm in data.get("registered_models") or []:
            versions = [mv for mv in rm.get("latest_versions") or [] if str(mv.get("version", "")).isdigit()]
            if not versions:
                continue
            latest = max(versions, key=lambda mv: int(mv["version"]))
            aliases = tuple(
                sorted(f"{a['alias']} -> {a.get('version')}" for a in rm.get("aliases") or [] if a.get("alias"))
            )
            updated = rm.get("last_updated_timestamp")
            hits.append(
                SearchHit(
                    str(rm.get("name")), str(latest["version"]), updated if isinstance(updated, int) else None, aliases
                )
            )
        return hits


class _Missing(Exception):
    """The REST API said the resource does not exist."""


class _HashingFile:
    """A file that hashes what is written to it (a download's destination)."""

    def __init__(self, f):
        self.f, self.sha256, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size

    def seek(self, pos: int, whence: int = 0) -> int:
        if (pos, whence) != (0, 0):
            raise OSError("a hashing download can only start over")
        self.sha256, self.size = hashlib.sha256(), 0
        return self.f.seek(0)

    def truncate(self, size: int | None = None) -> int:
        return self.f.truncate(size)


def _error_code(r) -> str | None:
    try:
        data = r.json()
    except ValueError:
        return None
    return data.get("error_code") if isinstance(data, dict) else None


def _error_message(r) -> str:
    try:
        return str(r.json().get("message") or "")
    except (ValueError, AttributeError):
        return ""


def _quote_filter(value: str) -> str:
    """A value inside MLflow's single-quoted filter strings."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _map_layout(where: str, root: str, listed: dict[str, int], flavors: dict) -> Layout:
    """Which artifact file becomes which file of the model folder."""
    if isinstance(flavors.get("transformers"), dict):
        tf = flavors["transformers"]
        binary = tf.get("model_binary")
        if not isinstance(binary, str) or not any(p.startswith(binary + "/") for p in listed):
            raise RegistryError(
                f"{where}: the transformers model was logged without its weights (save_pretrained=False)",
                "log it with mlflow.transformers.log_model(..., save_pretrained=True), or use its hf: source",
            )
        prefixes = [binary + "/"] + [f"components/{c}/" for c in tf.get("components") or [] if isinstance(c, str)]
        paths: dict[str, str] = {}
        for prefix in prefixes:
            for artifact in sorted(p for p in listed if p.startswith(prefix)):
                # The model's own file wins over a component's of the same name, an earlier component over a later.
                paths.setdefault(artifact[len(prefix) :], artifact)
        task = tf.get("task") if isinstance(tf.get("task"), str) else None
        return Layout(root, paths, {m: listed[a] for m, a in paths.items()}, "transformers", task)
    if isinstance(flavors.get("onnx"), dict):
        paths = {p: p for p in listed if p not in MLFLOW_FILES}
        return Layout(root, paths, {p: listed[p] for p in paths}, "onnx", None)
    names = ", ".join(sorted(str(f) for f in flavors if f != "python_function")) or "python_function only"
    raise RegistryError(
        f"{where}: flavor {names} cannot be built; gpuxbuild builds models logged with the transformers or onnx flavor",
        "log it with mlflow.transformers.log_model or mlflow.onnx.log_model",
    )
