"""`S3Manager`: a model folder in an S3 bucket (`s3://bucket/prefix/`), on AWS or any S3-compatible store.

The bucket offers no sha256, so `gpux lock` downloads every file the model keeps (and config.json, for its
metadata) into the store, hashing it as it streams; the lock pins those sha256 and sync verifies them, as for
any registry. The pin ("commit") is the digest of the folder's listing (every object's path, size, ETag and
version id), which tells whether the folder changed without downloading it; each kept file's ETag and version
id are recorded in the lock as `origin`, for the record: the sha256 is what is trusted. Client and
credentials are the s3:// remote cache's (gpuxbuild/s3client.py: AWS_* variables or the shared credentials file).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from gpuxbuild.errors import MissingExtraError, RegistryError
from gpuxbuild.hashing import digest
from gpuxbuild.registries.base import (
    FileOrigin,
    Listed,
    ModelManager,
    Origin,
    PinnedModel,
    Progress,
    check_repo_path,
    offline_miss,
)
from gpuxbuild.registries.files import model_info
from gpuxbuild.s3client import CREDENTIALS_HINT, s3_failure, s3_store
from gpuxbuild.store.files import FileEntry

SMALL_FILE_JOBS = 8


def split_s3(repo: str) -> tuple[str, str]:
    """(bucket, key prefix without slashes) of `s3://bucket/prefix/`."""
    bucket, _, prefix = repo.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


class S3Manager(ModelManager):
    """Model folders in S3 buckets."""

    name = "s3"

    def __init__(self, *, project, offline: bool = False, store=None):
        super().__init__(project=project, offline=offline, store=store)
        self._stores: dict[str, Any] = {}

    def display(self, repo: str) -> str:
        return repo

    def _client(self, bucket: str):
        if bucket not in self._stores:
            try:
                import obstore  # noqa: F401 (s3_store needs it)
            except ImportError as exc:
                raise MissingExtraError("remote", "an s3:// model source") from exc
            self._stores[bucket] = s3_store(bucket)
        return self._stores[bucket]

    def _error(self, where: str, exc: BaseException) -> RegistryError:
        cause, denied = s3_failure(exc)
        if denied:
            return RegistryError(f"{where}: not authorized ({cause})", CREDENTIALS_HINT)
        if "NoSuchBucket" in cause:
            return RegistryError(f"{where}: no such bucket", "check the bucket name in the model's source")
        return RegistryError(f"{where}: {cause}", "check the URL, AWS_ENDPOINT_URL and the network")

    def resolve(self, repo: str, revision: str | None, *, pin: str | None = None) -> PinnedModel:
        return self.resolve_streaming(repo, revision, lambda *_: None, pin=pin)

    def resolve_streaming(
        self, repo: str, revision: str | None, on_listed: Listed, *, pin: str | None = None
    ) -> PinnedModel:
        import obstore

        if self.offline:
            raise RegistryError(
                f"{repo}: listing the folder needs the network, but offline mode is on",
                "run `gpux lock` online once; a locked model syncs offline from the store",
            )
        bucket, prefix = split_s3(repo)
        store = self._client(bucket)
        listed: dict[str, Any] = {}  # path -> obstore ObjectMeta
        try:
            for batch in obstore.list(store, prefix=prefix or None):
                for meta in batch:
                    path = meta["path"][len(prefix) + 1 :] if prefix else meta["path"]
                    if not (path.endswith("/") and meta["size"] == 0):  # a folder marker, not a file
                        listed[path] = meta
        except Exception as exc:
            raise self._error(repo, exc) from None
        if not listed:
            raise RegistryError(f"{repo}: no objects under this prefix", "check the bucket and prefix of the source")
        for path in listed:
            check_repo_path(repo, path)
        ids = {  # the keys of the pin's digest input: unchanged, so that existing pins stay
            p: {k: str(v) for k, v in (("etag", m.get("e_tag")), ("version", m.get("version"))) if v}
            for p, m in sorted(listed.items())
        }
        commit = digest([[p, listed[p]["size"], ids[p]] for p in sorted(listed)]).removeprefix("sha256:")
        if pin is not None and pin != commit:
            raise RegistryError(
                f"{repo}: the folder changed since it was locked (pinned {pin[:12]}, now {commit[:12]})",
                "re-lock it with `gpux lock --upgrade NAME`",
            )
        paths = sorted(listed)
        wanted = on_listed(commit, paths, [])
        todo = [p for p in paths if wanted is None or p in wanted or p in ("config.json", "README.md")]

        def fetch(path: str) -> FileEntry:
            def writer(dest, _resume):
                self._get(repo, path, dest, 0, None)

            sha, size = self._store().ingest(writer, size=listed[path]["size"], label=f"{repo}: {path}")
            return FileEntry(path, sha, size)

        with ThreadPoolExecutor(max_workers=min(SMALL_FILE_JOBS, len(todo) or 1)) as pool:
            files = sorted(pool.map(fetch, todo))
        info = model_info(self._store(), files, where=repo)
        origin = Origin(files={p: FileOrigin(i.get("etag"), i.get("version")) for p, i in ids.items() if i})
        return PinnedModel(self.name, repo, revision, commit, files, info, paths, origin=origin)

    def _store(self):
        if self.store is None:
            from gpuxbuild.store.objects import Store

            self.store = Store()
        return self.store

    def _get(self, repo: str, path: str, dest: BinaryIO, start: int, progress: Progress | None) -> None:
        import obstore

        bucket, prefix = split_s3(repo)
        key = f"{prefix}/{path}" if prefix else path
        opts: Any = {"range": {"offset": start}} if start else {}
        try:
            chunks = iter(obstore.get(self._client(bucket), key, options=opts))
        except FileNotFoundError:
            raise self._gone(repo, path) from None
        except Exception as exc:
            raise self._error(f"{repo}: {path}", exc) from None
        while True:  # only the client's failures are translated: the store's (a stop, too many bytes) pass
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except FileNotFoundError:
                raise self._gone(repo, path) from None
            except Exception as exc:
                raise self._error(f"{repo}: {path}", exc) from None
            dest.write(bytes(chunk))
            if progress:
                progress(len(chunk))

    @staticmethod
    def _gone(repo: str, path: str) -> RegistryError:
        return RegistryError(
            f"{repo}: {path} is gone from the bucket", "restore it, or re-lock: `gpux lock --upgrade NAME`"
        )

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
        if self.offline:
            raise offline_miss(f"{repo}: {file.path}")
        self._get(repo, file.path, dest, resume_from, progress)
