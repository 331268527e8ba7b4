"""A Hugging Face Hub compatible HTTP server for the test suite (standard library only).

The real ``huggingface_hub`` client (0.36) talks to it through ``HF_ENDPOINT``. It serves model repos
with git-like history: commits are immutable path -> bytes mappings with deterministic 40-hex ids,
branches move, tags pin. Small files are git blobs served by ``/resolve``; LFS files redirect to a
second server on another port, which plays the Hub's CDN (another origin, so the client drops its
token there, as it does on the real Hub).

Test controls are methods of :class:`HubServer`; see their docstrings.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

LFS_THRESHOLD = 10 * 1024
LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data", ".pt", ".ckpt", ".h5", ".msgpack", ".model")
DEFAULT_TOKEN = "hf_test_token"
DEFAULT_PAGE_SIZE = 1000
# Commit dates are derived from history depth, so they are stable run to run.
_EPOCH = 1704067200  # 2024-01-01T00:00:00Z
_AUTHOR = b"gpuxbuild-tests <tests@localhost>"
_API_PREFIXES = ("revision", "tree", "paths-info", "refs", "commits")
GITATTRIBUTES = b"".join(b"*%s filter=lfs diff=lfs merge=lfs -text\n" % suffix.encode() for suffix in LFS_SUFFIXES)


def _git_oid(kind: bytes, payload: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind, len(payload)) + payload).hexdigest()


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def is_lfs(path: str, size: int) -> bool:
    """Whether the Hub stores ``path`` of ``size`` bytes with git LFS (in this server's rules)."""
    return size > LFS_THRESHOLD or path.endswith(LFS_SUFFIXES)


@dataclass(frozen=True)
class Blob:
    """One file's content and the metadata the Hub advertises for it."""

    data: bytes = field(repr=False)
    size: int
    oid: str  # git blob sha1 of what git stores: the content, or the LFS pointer
    sha256: str | None  # LFS files only, as on the Hub
    pointer_size: int | None

    @classmethod
    def of(cls, path: str, data: bytes) -> Blob:
        if not is_lfs(path, len(data)):
            return cls(data, len(data), _git_oid(b"blob", data), None, None)
        sha256 = hashlib.sha256(data).hexdigest()
        pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
            sha256.encode(),
            len(data),
        )
        return cls(data, len(data), _git_oid(b"blob", pointer), sha256, len(pointer))


def _parent_dir(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _tree_oids(files: dict[str, Blob]) -> dict[str, str]:
    """Git tree ids of every folder ("" is the root), computed bottom-up like git does."""
    dirs = {""}
    for path in files:
        parts = path.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    entries: dict[str, list[tuple[bytes, bytes, str]]] = {d: [] for d in dirs}
    for path, blob in files.items():
        entries.setdefault(_parent_dir(path), []).append((b"100644", path.rsplit("/", 1)[-1].encode(), blob.oid))
    oids: dict[str, str] = {}
    for d in [*sorted(dirs - {""}, key=lambda d: -d.count("/")), ""]:
        # git orders tree entries by name, comparing folders as "name/"
        rows = sorted(entries[d], key=lambda e: e[1] + (b"/" if e[0] == b"40000" else b""))
        oids[d] = _git_oid(b"tree", b"".join(m + b" " + n + b"\0" + bytes.fromhex(o) for m, n, o in rows))
        if d:
            entries[_parent_dir(d)].append((b"40000", d.rsplit("/", 1)[-1].encode(), oids[d]))
    return oids


@dataclass(frozen=True)
class Commit:
    """An immutable snapshot of a repo."""

    sha: str
    parent: str | None
    files: dict[str, Blob] = field(repr=False)
    trees: dict[str, str] = field(repr=False)
    message: str
    timestamp: int

    @classmethod
    def create(cls, parent: Commit | None, files: dict[str, Blob], message: str) -> Commit:
        trees = _tree_oids(files)
        timestamp = parent.timestamp + 1 if parent else _EPOCH
        signature = _AUTHOR + b" %d +0000" % timestamp
        obj = b"tree %s\n" % trees[""].encode()
        if parent:
            obj += b"parent %s\n" % parent.sha.encode()
        obj += b"author %s\ncommitter %s\n\n%s\n" % (signature, signature, message.encode())
        return cls(_git_oid(b"commit", obj), parent.sha if parent else None, files, trees, message, timestamp)

    @property
    def title(self) -> str:
        return self.message.split("\n", 1)[0]


@dataclass
class _Repo:
    id: str
    private: bool
    gated: bool | str
    token: str
    card: dict[str, Any]
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        for refs, prefix in ((self.branches, "refs/heads/"), (self.tags, "refs/tags/")):
            sha = refs.get(rev) or refs.get(rev.removeprefix(prefix))
            if sha:
                return self.commits[sha]
        return self.commits.get(rev)

    def history(self, commit: Commit) -> Iterable[Commit]:
        current: Commit | None = commit
        while current is not None:
            yield current
            current = self.commits[current.parent] if current.parent else None


@dataclass
class _Fault:
    tamper: bytes | None = None
    cut_after: int | None = None
    cuts_left: int = 0
    bytes_per_s: int | None = None
    listed_sha256: str | None = None
    xet: bool = False


@dataclass
class _ServerFault:
    """A fault of every request of one ``kind`` ("api", "resolve", "lfs"), for the next ``times`` requests."""

    times: int
    status: int | None = None  # answer this status instead
    retry_after: str | None = None
    stall: float = 0.0  # seconds to wait, before the headers or (``after_headers``) before the body
    after_headers: bool = False


@dataclass
class LoggedRequest:
    """One request as the servers saw it. ``kind`` is "api", "resolve" or "lfs" (the CDN)."""

    method: str
    kind: str
    url: str
    token: str | None
    range: str | None
    repo: str | None = None
    revision: str | None = None
    path: str | None = None
    status: int | None = None


class _HTTPError(Exception):
    def __init__(self, status: int, code: str | None = None, message: str = "", headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: HubServer, role: str, port: int):
        self.hub, self.role = hub, role
        self.open_sockets: set = set()
        super().__init__((hub.host, port), _Handler)

    def process_request(self, request, client_address):
        self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_open_sockets(self) -> None:
        """Cut connections still in flight (a throttled download), as a dead server would."""
        for sock in list(self.open_sockets):
            try:
                sock.shutdown(2)
            except OSError:
                pass


class HubServer:
    """Hub API server plus its CDN. ``start()`` binds both to free ports on ``host``."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.page_size = DEFAULT_PAGE_SIZE
        self._ports = (0, 0)
        self._servers: list[_Server] = []
        self._lock = threading.RLock()
        self._repos: dict[str, _Repo] = {}
        self._lfs: dict[str, bytes] = {}
        self._faults: dict[tuple[str, str], _Fault] = {}
        self._log: list[LoggedRequest] = []
        self._server_faults: dict[str, _ServerFault] = {}
        self.latency = 0.0  # seconds every request waits before it is answered, like a distant Hub

    # ----------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        """What HF_ENDPOINT must be set to."""
        return f"http://{self.host}:{self._ports[0]}"

    @property
    def cdn_endpoint(self) -> str:
        return f"http://{self.host}:{self._ports[1]}"

    @property
    def running(self) -> bool:
        return bool(self._servers)

    def start(self) -> HubServer:
        """Serve (again), on the same ports as before if it ran already."""
        if self._servers:
            return self
        servers = [_Server(self, "api", self._ports[0]), _Server(self, "cdn", self._ports[1])]
        self._ports = (servers[0].server_address[1], servers[1].server_address[1])
        for server in servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._servers = servers
        return self

    def stop(self) -> None:
        """Stop both servers: new connections are refused and transfers in flight are cut. Data is kept."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
            server.close_open_sockets()
            server.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ test controls
    def create_repo(
        self,
        repo_id: str,
        *,
        card: dict | None = None,
        private: bool = False,
        gated: bool | str = False,
        token: str | None = None,
        gitattributes: bool = True,
    ) -> str:
        """Create a model repo whose ``main`` holds an "initial commit" (with .gitattributes, as the Hub does).

        ``card`` keys: pipeline_tag, library_name, license, tags, cardData; any other key (transformersInfo,
        config, ...) is returned verbatim by model_info. A private or gated repo only serves requests that send
        ``Authorization: Bearer <token>`` (default ``DEFAULT_TOKEN``). ``gated=True`` means "auto".
        Returns the initial commit sha.
        """
        with self._lock:
            if repo_id in self._repos:
                raise ValueError(f"repo {repo_id} exists")
            self._repos[repo_id] = _Repo(
                repo_id, private, "auto" if gated is True else gated, token or DEFAULT_TOKEN, dict(card or {})
            )
            initial = {".gitattributes": GITATTRIBUTES} if gitattributes else {}
            return self.commit(repo_id, initial, message="initial commit")

    def delete_repo(self, repo_id: str) -> None:
        """Remove the repo (its LFS bytes stay on the CDN, as old signed URLs would)."""
        with self._lock:
            del self._repos[repo_id]
            for key in [k for k in self._faults if k[0] == repo_id]:
                del self._faults[key]

    def set_card(self, repo_id: str, card: dict) -> None:
        """Replace the repo's card metadata (see ``create_repo``)."""
        with self._lock:
            self._repo(repo_id).card = dict(card)

    def set_access(self, repo_id: str, *, private: bool | None = None, gated: bool | str | None = None) -> None:
        """Make an existing repo private/public or gated/open."""
        with self._lock:
            repo = self._repo(repo_id)
            if private is not None:
                repo.private = private
            if gated is not None:
                repo.gated = "auto" if gated is True else gated

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        delete: Iterable[str] = (),
        message: str = "",
    ) -> str:
        """Commit on top of ``branch`` (a new branch starts from ``main``; ``refs/pr/N`` makes a PR ref).

        ``files`` adds or replaces paths, verbatim (no sanitizing: ``../x`` and ``/abs`` are kept);
        ``delete`` removes paths, or whole folders when given as ``"folder/"``. Returns the commit sha.
        """
        delete = tuple(delete)
        with self._lock:
            repo = self._repo(repo_id)
            head = repo.branches.get(branch) or repo.branches.get("main")
            parent = repo.commits[head] if head else None
            tree = dict(parent.files) if parent else {}
            for gone in delete:
                doomed = [p for p in tree if p == gone or (gone.endswith("/") and p.startswith(gone))]
                if not doomed:
                    raise KeyError(f"{gone} is not in {repo_id}@{branch}")
                for path in doomed:
                    del tree[path]
            for path, data in files.items():
                tree[path] = Blob.of(path, bytes(data))
                if tree[path].sha256:
                    self._lfs[tree[path].sha256] = tree[path].data
            commit = Commit.create(parent, tree, message or f"Update {len(files)} file(s), delete {len(delete)}")
            repo.commits.setdefault(commit.sha, commit)
            repo.branches[branch] = commit.sha
            return commit.sha

    def tag(self, repo_id: str, name: str, rev: str = "main") -> str:
        """Create tag ``name`` at ``rev`` (branch, tag or sha); returns the commit sha."""
        with self._lock:
            repo = self._repo(repo_id)
            if name in repo.tags:
                raise ValueError(f"tag {name} exists in {repo_id}")
            repo.tags[name] = self._commit_of(repo, rev).sha
            return repo.tags[name]

    def move_branch(self, repo_id: str, branch: str, rev: str) -> str:
        """Point ``branch`` (created if missing) at ``rev``; returns the commit sha."""
        with self._lock:
            repo = self._repo(repo_id)
            repo.branches[branch] = self._commit_of(repo, rev).sha
            return repo.branches[branch]

    def delete_ref(self, repo_id: str, name: str) -> None:
        """Delete a branch or tag; its commits stay reachable by sha."""
        with self._lock:
            repo = self._repo(repo_id)
            if repo.branches.pop(name, None) is None and repo.tags.pop(name, None) is None:
                raise KeyError(f"no ref {name} in {repo_id}")

    def head(self, repo_id: str, rev: str = "main") -> str:
        """The commit sha that ``rev`` resolves to."""
        with self._lock:
            return self._commit_of(self._repo(repo_id), rev).sha

    def files(self, repo_id: str, rev: str = "main") -> dict[str, Blob]:
        """The files of ``rev``: path -> :class:`Blob` (data, size, oid, sha256)."""
        with self._lock:
            return dict(self._commit_of(self._repo(repo_id), rev).files)

    def tamper(self, repo_id: str, path: str, data: bytes | None) -> None:
        """Serve ``data`` for ``path`` (any revision) while metadata still advertises the real file; None undoes."""
        with self._lock:
            self._fault(repo_id, path).tamper = data

    def cut_after(self, repo_id: str, path: str, nbytes: int, *, times: int = 1) -> None:
        """The next ``times`` downloads (GET with a body) of ``path`` send ``nbytes`` of body, then close.

        Headers still announce the full length, so the client sees a broken transfer and keeps its
        ``.incomplete`` file; a later download resumes it with a Range request.
        """
        with self._lock:
            fault = self._fault(repo_id, path)
            fault.cut_after, fault.cuts_left = nbytes, times

    def throttle(self, repo_id: str, path: str, bytes_per_s: int | None) -> None:
        """Send ``path``'s bytes at about ``bytes_per_s`` (None: full speed)."""
        with self._lock:
            self._fault(repo_id, path).bytes_per_s = bytes_per_s

    def misreport(self, repo_id: str, path: str, sha256: str | None) -> None:
        """List ``sha256`` (any string, hostile ones included) as the LFS file ``path``'s hash; None undoes."""
        with self._lock:
            self._fault(repo_id, path).listed_sha256 = sha256

    def advertise_xet(self, repo_id: str, path: str, on: bool = True) -> None:
        """Say in the LFS file ``path``'s metadata that it is Xet-backed (X-Xet-Hash and a token route).

        This server speaks no Xet: a client that follows the hint fails (the token route answers 404),
        one that honours HF_HUB_DISABLE_XET=1 downloads the bytes over plain HTTP as before.
        """
        with self._lock:
            self._fault(repo_id, path).xet = on

    def fail(self, kind: str, status: int = 503, *, times: int = 1, retry_after: str | None = None) -> None:
        """The next ``times`` requests of ``kind`` ("api", "resolve" or "lfs") answer ``status`` (with a
        ``Retry-After`` header if given), as an overloaded Hub or CDN does."""
        with self._lock:
            self._server_faults[kind] = _ServerFault(times, status=status, retry_after=retry_after)

    def stall(self, kind: str, seconds: float, *, times: int = 1, after_headers: bool = False) -> None:
        """The next ``times`` requests of ``kind`` wait ``seconds`` before they are answered, or with
        ``after_headers`` send their headers and then wait before the body: a server that hangs."""
        with self._lock:
            self._server_faults[kind] = _ServerFault(times, stall=seconds, after_headers=after_headers)

    def clear_faults(self, repo_id: str | None = None) -> None:
        """Undo tamper/cut_after/throttle/misreport/advertise_xet for one repo, or all (and fail/stall too)."""
        with self._lock:
            for key in [k for k in self._faults if repo_id in (None, k[0])]:
                del self._faults[key]
        if repo_id is None:
            self.clear_server_faults()

    def clear_server_faults(self) -> None:
        """Undo fail/stall (conftest does this before every test)."""
        with self._lock:
            self._server_faults.clear()

    # -------------------------------------------------------------- request log
    def requests(
        self,
        method: str | None = None,
        repo: str | None = None,
        path: str | None = None,
        kind: str | None = None,
        revision: str | None = None,
    ) -> list[LoggedRequest]:
        """Logged requests matching every given filter (None matches anything)."""
        wanted = {"method": method, "repo": repo, "path": path, "kind": kind, "revision": revision}
        with self._lock:
            return [r for r in self._log if all(v is None or getattr(r, k) == v for k, v in wanted.items())]

    def count(self, *args, **filters) -> int:
        """How many logged requests match (the filters of ``requests``)."""
        return len(self.requests(*args, **filters))

    def reset_log(self) -> None:
        """Forget logged requests (conftest does this before every test)."""
        with self._lock:
            self._log.clear()

    # ------------------------------------------------------------------ helpers
    def _repo(self, repo_id: str) -> _Repo:
        if repo_id not in self._repos:
            raise KeyError(f"no repo {repo_id}")
        return self._repos[repo_id]

    def _commit_of(self, repo: _Repo, rev: str) -> Commit:
        commit = repo.resolve(rev)
        if commit is None:
            raise KeyError(f"no revision {rev} in {repo.id}")
        return commit

    def _fault(self, repo_id: str, path: str) -> _Fault:
        self._repo(repo_id)
        return self._faults.setdefault((repo_id, path), _Fault())

    def _fault_of(self, repo_id: str, path: str) -> _Fault | None:
        """The faults set on ``path`` (for metadata: the listed hash, Xet), without creating any."""
        with self._lock:
            return self._faults.get((repo_id, path))

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _server_fault(self, kind: str) -> _ServerFault | None:
        """The fault this request of ``kind`` gets, consuming one of its ``times``."""
        with self._lock:
            fault = self._server_faults.get(kind)
            if fault is None or fault.times <= 0:
                return None
            fault.times -= 1
            return fault

    def _content_fault(self, repo_id: str | None, path: str | None, consume: bool) -> tuple:
        """(tampered bytes, cut after n bytes, bytes per second) for one response; consumes a cut if asked."""
        with self._lock:
            fault = self._faults.get((repo_id or "", path or ""))
            if fault is None:
                return None, None, None
            cut = None
            if consume and fault.cuts_left > 0:
                fault.cuts_left -= 1
                cut = fault.cut_after
            return fault.tamper, cut, fault.bytes_per_s


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # ------------------------------------------------------------------ plumbing
    def _dispatch(self, method: str) -> None:
        self.close_connection = True
        hub = self.server.hub
        split = urlsplit(self.path)
        self.query = parse_qs(split.query, keep_blank_values=True)
        auth = self.headers.get("Authorization", "")
        self.token = auth[7:] if auth.lower().startswith("bearer ") else None
        kind = "lfs" if self.server.role == "cdn" else "api" if split.path.startswith("/api/") else "resolve"
        self.entry = LoggedRequest(method, kind, self.path, self.token, self.headers.get("Range"))
        hub._record(self.entry)
        if hub.latency:
            time.sleep(hub.latency)
        self.stall_body = 0.0
        fault = hub._server_fault(kind)
        if fault is not None and fault.stall and not fault.after_headers:
            time.sleep(fault.stall)
        elif fault is not None and fault.stall:
            self.stall_body = fault.stall
        try:
            if fault is not None and fault.status:
                raise _HTTPError(
                    fault.status,
                    message="injected fault",
                    headers={"Retry-After": fault.retry_after} if fault.retry_after else {},
                )
            if kind == "lfs":
                self._cdn(method, split.path)
            elif kind == "api":
                self._api(method, split.path.split("/")[2:])
            else:
                self._resolve(method, split.path.split("/")[1:])
        except _HTTPError as err:
            headers = dict(err.headers)
            if err.code:
                headers["X-Error-Code"] = err.code
            if err.message:
                headers["X-Error-Message"] = err.message
            body = json.dumps({"error": err.message or "error"}).encode()
            self._send(err.status, body, headers, "application/json")
        except ValueError as err:  # a malformed body or query
            self._send(
                400, json.dumps({"error": str(err)}).encode(), {"X-Error-Message": "Bad request"}, "application/json"
            )
        except OSError:  # the client went away, or stop() cut the connection
            pass

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict | None = None,
        content_type: str | None = None,
        length: int | None = None,
    ) -> None:
        self.entry.status = status
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.stall_body:
            self.wfile.flush()
            time.sleep(self.stall_body)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, headers: dict | None = None) -> None:
        body = json.dumps(obj, sort_keys=True).encode()
        self._send(200, body, headers, "application/json; charset=utf-8")

    def _find_repo(self, names: list[str]) -> _Repo:
        """The repo named by the (url-encoded) segments ``names``, if the caller may see it."""
        repo_id = "/".join(unquote(n) for n in names)
        self.entry.repo = repo_id
        with self.server.hub._lock:
            repo = self.server.hub._repos.get(repo_id)
        if repo is None or (repo.private and self.token != repo.token):
            # The Hub answers 401 to anonymous callers and 404 to authenticated ones.
            raise _HTTPError(404 if self.token else 401, "RepoNotFound", "Repository not found")
        return repo

    def _check_gate(self, repo: _Repo) -> None:
        if repo.gated and self.token != repo.token:
            if self.token is None:
                message = (
                    f"Access to model {repo.id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in."
                )
                raise _HTTPError(401, "GatedRepo", message)
            message = f"Access to model {repo.id} is restricted and you are not in the authorized list."
            raise _HTTPError(403, "GatedRepo", message)

    def _commit(self, repo: _Repo, rev: str) -> Commit:
        self.entry.revision = rev
        with self.server.hub._lock:
            commit = repo.resolve(rev)
        if commit is None:
            raise _HTTPError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return commit

    def _flag(self, name: str) -> bool:
        return self.query.get(name, [""])[-1].lower() in ("1", "true")

    # ----------------------------------------------------------------------- API
    def _api(self, method: str, segments: list[str]) -> None:
        if method == "GET" and segments == ["models"]:
            return self._json(self._search())
        if len(segments) < 2 or segments[0] != "models":
            raise _HTTPError(404, message="Not found")
        # Repo ids are "org/name" or a bare "name"; a bare name is followed by a route or nothing.
        width = 1 if len(segments) == 2 or segments[2] in _API_PREFIXES else 2
        repo, rest = self._find_repo(segments[1 : 1 + width]), segments[1 + width :]
        route = rest[0] if rest else ""
        if method == "GET" and route in ("", "revision"):
            commit = self._commit(repo, unquote("/".join(rest[1:])) if rest else "main")
            return self._json(self._model_info(repo, commit))
        if method == "GET" and route == "tree" and len(rest) >= 2:
            commit = self._commit(repo, unquote(rest[1]))
            return self._tree(repo, commit, unquote("/".join(rest[2:])))
        if method == "POST" and route == "paths-info" and len(rest) >= 2:
            commit = self._commit(repo, unquote("/".join(rest[1:])))
            return self._paths_info(repo, commit)
        if method == "GET" and route == "refs" and len(rest) == 1:
            return self._refs(repo)
        if method == "GET" and route == "commits" and len(rest) >= 2:
            commit = self._commit(repo, unquote("/".join(rest[1:])))
            return self._commits(repo, commit)
        raise _HTTPError(404, message="Not found")

    def _model_info(self, repo: _Repo, commit: Commit) -> dict:
        blobs = self._flag("blobs")
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(blobId=blob.oid, size=blob.size)
                if blob.sha256:
                    fault = self.server.hub._fault_of(repo.id, path)
                    listed = fault.listed_sha256 if fault and fault.listed_sha256 is not None else blob.sha256
                    sibling["lfs"] = {"sha256": listed, "size": blob.size, "pointerSize": blob.pointer_size}
            siblings.append(sibling)
        card = dict(repo.card)
        pipeline_tag, library_name = card.pop("pipeline_tag", None), card.pop("library_name", None)
        license_, explicit_tags = card.pop("license", None), card.pop("tags", None) or []
        card_data = card.pop("cardData", None)
        if card_data is None:  # the README's YAML header, as the Hub parses it
            header = {
                "license": license_,
                "tags": explicit_tags,
                "pipeline_tag": pipeline_tag,
                "library_name": library_name,
            }
            card_data = {k: v for k, v in header.items() if v}
        config = self._config(commit)
        # The Hub adds tags of its own after the card's: library, weight formats, model type, task, license.
        formats = [s.lstrip(".") for s in (".safetensors", ".onnx") if any(p.endswith(s) for p in commit.files)]
        derived = [
            library_name,
            *formats,
            config.get("model_type"),
            pipeline_tag,
            f"license:{license_}" if license_ else None,
            "region:us",
        ]
        tags = list(explicit_tags) + [t for t in dict.fromkeys(derived) if t and t not in explicit_tags]
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
            "id": repo.id,
            "modelId": repo.id,
            "author": repo.id.split("/")[0] if "/" in repo.id else None,
            "sha": commit.sha,
            "lastModified": _iso(commit.timestamp),
            "createdAt": _iso(_EPOCH),
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "library_name": library_name,
            "pipeline_tag": pipeline_tag,
            "tags": tags,
            "config": config or None,
            "cardData": card_data or None,
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(b.size for b in commit.files.values()),
        }
        info.update(card)
        return {k: v for k, v in info.items() if v is not None}

    # The fields of a search hit: the Hub's default set, or `id` plus those `expand` names.
    _SEARCH_FIELDS = (
        "_id",
        "id",
        "modelId",
        "likes",
        "downloads",
        "private",
        "tags",
        "pipeline_tag",
        "library_name",
        "createdAt",
    )

    def _search(self) -> list[dict]:
        """`GET /api/models` as the Hub answers it: `search` (a substring of the id, any case), every `filter`
        among the tags, `pipeline_tag`, `author`, `sort` (descending with `direction=-1`), `limit`, `expand`."""
        words = [w.lower() for w in self.query.get("search", [])]
        filters = self.query.get("filter", [])
        task = self.query.get("pipeline_tag", [None])[-1]
        author = self.query.get("author", [None])[-1]
        with self.server.hub._lock:
            repos = [r for r in self.server.hub._repos.values() if not r.private or self.token == r.token]
            infos = [self._model_info(r, r.commits[r.branches["main"]]) for r in repos if "main" in r.branches]
        hits = [
            i
            for i in infos
            if all(w in i["id"].lower() for w in words)
            and all(f in i.get("tags", []) for f in filters)
            and (task is None or i.get("pipeline_tag") == task)
            and (author is None or i.get("author") == author)
        ]
        sort = self.query.get("sort", [None])[-1]
        if sort:
            hits.sort(key=lambda i: (i.get(sort) is not None, i.get(sort) or 0, i["id"]), reverse=True)
            if self.query.get("direction", ["-1"])[-1] != "-1":
                hits.reverse()
        limit = int(self.query.get("limit", ["1000"])[-1])
        expand = self.query.get("expand")
        fields = ("_id", "id", *expand) if expand else self._SEARCH_FIELDS
        if self._flag("full"):
            fields = tuple(k for k in (hits[0] if hits else {}) if k not in ("siblings", "config", "cardData"))
        return [{k: i[k] for k in fields if k in i} for i in hits[:limit]]

    @staticmethod
    def _config(commit: Commit) -> dict:
        blob = commit.files.get("config.json")
        try:
            config = json.loads(blob.data) if blob else {}
        except ValueError:
            return {}
        if not isinstance(config, dict):
            return {}
        return {k: config[k] for k in ("architectures", "model_type") if k in config}

    def _entry(self, repo: _Repo, commit: Commit, path: str, expand: bool) -> dict:
        blob = commit.files.get(path)
        if blob is not None:
            entry: dict[str, Any] = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
            if blob.sha256:
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        else:
            entry = {"type": "directory", "oid": commit.trees[path], "size": 0, "path": path}
        if expand:

            def version(c: Commit) -> tuple:
                return (c.files[path].oid if path in c.files else None, c.trees.get(path))

            last = commit
            for older in repo.history(commit):
                if version(older) != version(commit):
                    break
                last = older
            entry["lastCommit"] = {"id": last.sha, "title": last.title, "date": _iso(last.timestamp)}
            if blob is not None:
                entry["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False},
                    "pickleImportScan": None,
                }
        return entry

    def _paginate(self, items: list, make) -> None:
        """Answer one page of ``items`` with a GitHub-style ``Link: <...>; rel="next"`` header."""
        page_size = self.server.hub.page_size
        start = int(self.query.get("cursor", ["0"])[-1] or 0)
        headers = {}
        if start + page_size < len(items):
            query = {k: v[-1] for k, v in self.query.items()}
            query["cursor"] = str(start + page_size)
            headers["Link"] = f'<{self.server.hub.endpoint}{urlsplit(self.path).path}?{urlencode(query)}>; rel="next"'
        self._json([make(item) for item in items[start : start + page_size]], headers)

    def _tree(self, repo: _Repo, commit: Commit, folder: str) -> None:
        self.entry.path = folder
        if folder and folder not in commit.trees:
            raise _HTTPError(
                404, "EntryNotFound", f"{folder} does not exist on {commit.sha}", {"X-Repo-Commit": commit.sha}
            )
        recursive, expand = self._flag("recursive"), self._flag("expand")
        paths = [p for p in (*commit.files, *commit.trees) if p]
        if recursive:
            paths = [p for p in paths if not folder or p.startswith(folder + "/")]
        else:
            paths = [p for p in paths if _parent_dir(p) == folder]
        self._paginate(sorted(paths), lambda p: self._entry(repo, commit, p, expand))

    def _paths_info(self, repo: _Repo, commit: Commit) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "json" in self.headers.get("Content-Type", ""):
            body = json.loads(raw or b"{}")
            paths, expand = body.get("paths", []), str(body.get("expand", False)).lower() == "true"
        else:
            form = parse_qs(raw.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), form.get("expand", [""])[-1].lower() == "true"
        found = [p for p in dict.fromkeys(paths) if p in commit.files or (p and p in commit.trees)]
        self._json([self._entry(repo, commit, p, expand) for p in found])

    def _refs(self, repo: _Repo) -> None:
        with self.server.hub._lock:
            branches, tags = sorted(repo.branches.items()), sorted(repo.tags.items())
        data: dict[str, list] = {"branches": [], "converts": [], "tags": [], "pullRequests": []}
        for name, sha in branches:
            if name.startswith("refs/pr/"):
                data["pullRequests"].append({"name": name, "ref": name, "targetCommit": sha})
            else:
                data["branches"].append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha})
        data["tags"] = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in tags]
        if not self._flag("include_prs"):
            del data["pullRequests"]
        self._json(data)

    def _commits(self, repo: _Repo, commit: Commit) -> None:
        def item(c: Commit) -> dict:
            body = c.message.split("\n", 1)[1].strip() if "\n" in c.message else ""
            return {
                "id": c.sha,
                "title": c.title,
                "message": body,
                "date": _iso(c.timestamp),
                "authors": [{"user": "gpuxbuild-tests", "avatar": None}],
            }

        self._paginate(list(repo.history(commit)), item)

    # ------------------------------------------------------------------- resolve
    def _resolve(self, method: str, segments: list[str]) -> None:
        if method == "POST":
            raise _HTTPError(405, message="Method not allowed")
        at = 2 if len(segments) > 2 and segments[2] == "resolve" else 1
        if len(segments) < at + 3 or segments[at] != "resolve":
            raise _HTTPError(404, message="Not found")
        repo = self._find_repo(segments[:at])
        self._check_gate(repo)
        commit = self._commit(repo, unquote(segments[at + 1]))
        path = unquote("/".join(segments[at + 2 :]))
        self.entry.path = path
        blob = commit.files.get(path)
        if blob is None:
            raise _HTTPError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit.sha})
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{blob.oid}"', "Accept-Ranges": "bytes"}
        if blob.sha256 is None:
            return self._content(blob.data, headers, repo.id, path)
        location = f"{self.server.hub.cdn_endpoint}/lfs/{blob.sha256}?" + urlencode({"repo": repo.id, "path": path})
        headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": blob.size, "Location": location})
        fault = self.server.hub._fault_of(repo.id, path)
        if fault is not None and fault.xet:
            headers.update(
                {
                    "X-Xet-Hash": blob.sha256,
                    "X-Xet-Refresh-Route": f"{self.server.hub.endpoint}/api/models/{repo.id}/xet-read-token/{commit.sha}",
                }
            )
        self._send(302, f"Found. Redirecting to {location}".encode(), headers, "text/plain; charset=utf-8")

    def _cdn(self, method: str, path: str) -> None:
        sha256 = path.removeprefix("/lfs/")
        repo_id, file_path = self.query.get("repo", [None])[-1], self.query.get("path", [None])[-1]
        self.entry.repo, self.entry.path = repo_id, file_path
        with self.server.hub._lock:
            data = self.server.hub._lfs.get(sha256)
        if method == "POST" or not path.startswith("/lfs/") or data is None:
            raise _HTTPError(404, message="Not found")
        self._content(data, {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"}, repo_id, file_path)

    def _content(self, data: bytes, headers: dict, repo_id: str | None, path: str | None) -> None:
        """Send file bytes, honouring Range and this file's faults (tamper, cut, throttle)."""
        hub = self.server.hub
        tamper, cut, rate = hub._content_fault(repo_id, path, consume=self.command == "GET")
        if tamper is not None and self.command == "GET":
            data = tamper
        total = len(data)
        start, end, status = 0, total - 1, 200
        span = _parse_range(self.headers.get("Range"), total)
        if span == "unsatisfiable":
            raise _HTTPError(416, message="Range not satisfiable", headers={"Content-Range": f"bytes */{total}"})
        if span is not None:
            (start, end), status = span, 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{total}"}
        body = memoryview(data)[start : end + 1]  # slices of a view copy nothing: the server stays cheap on CPU
        self._send(status, b"", headers, "application/octet-stream", length=len(body))
        if self.command == "HEAD":
            return
        if cut is not None:
            body = body[:cut]
        step = max(1, rate // 20) if rate else 1 << 20
        for offset in range(0, len(body), step):
            self.wfile.write(body[offset : offset + step])
            if rate:
                self.wfile.flush()
                time.sleep(step / rate)


def _parse_range(value: str | None, total: int):
    """(start, end) for a single ``bytes=`` range, "unsatisfiable", or None to send the whole file."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].strip().partition("-")
    try:
        if first == "":
            start, end = max(0, total - int(last)), total - 1
        else:
            start, end = int(first), min(int(last), total - 1) if last else total - 1
    except ValueError:
        return None
    if start >= total or start > end:
        return "unsatisfiable"
    return start, end
