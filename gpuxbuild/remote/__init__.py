"""The shared remote cache (docs/remote-cache.md): where remotes are configured and how a URL opens one.

A remote is a URL: `file:///path` (a shared folder), `s3://bucket/prefix` (any S3-compatible store). Several
may be configured: artifacts and sources are read from each in order and pushed to the first. `--remote` wins
over `GPUX_REMOTE`, which wins over the manifest's `cache: {remote: ...}`. An optional remote that fails is
skipped with a warning; any other remote failure is an error naming the remote and the cause.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlsplit

from gpuxbuild.errors import GpuxError
from gpuxbuild.network import redact_url
from gpuxbuild.remote.base import RemoteError, RemoteSpec

__all__ = ["ENV_REMOTE", "RemoteError", "RemoteSpec", "Warn", "check_url", "configured", "open_backend"]

SCHEMES = ("file", "s3", "oci")
ENV_REMOTE = "GPUX_REMOTE"  # one URL, or several separated by spaces or commas


def check_url(url: str, where: str) -> str:
    """`url` if it is a remote URL this version can use; a one-line error naming `where` it came from else."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in SCHEMES or not urlsplit(url).netloc + urlsplit(url).path.strip("/"):
        raise GpuxError(
            f"{where}: {redact_url(url)!r} is not a remote URL",
            "use file:///shared/folder, s3://bucket/prefix or oci://registry/repository (`gpux help remote-cache`)",
            exit_code=2,
        )
    return url


def configured(
    flags: tuple[str, ...] = (),
    *,
    optional: bool = False,
    manifest: tuple[str, ...] = (),
    manifest_optional: bool = False,
) -> list[RemoteSpec]:
    """The remotes in effect: `--remote` flags, else `GPUX_REMOTE`, else the manifest's; `--remote-optional`
    (or the manifest's `optional: true` for its own remotes) makes their failures warnings."""
    if flags:
        urls, where = flags, "--remote"
    elif os.environ.get(ENV_REMOTE, "").strip():
        urls, where = tuple(os.environ[ENV_REMOTE].replace(",", " ").split()), ENV_REMOTE
    else:
        urls, where, optional = manifest, "gpux.models.yml: cache.remote", optional or manifest_optional
    return [RemoteSpec(check_url(u, where), optional) for u in urls]


def open_backend(spec: RemoteSpec):
    """The backend (gpuxbuild.remote.base.Backend) that talks to `spec`'s URL; clients are imported here only."""
    scheme = urlsplit(spec.url).scheme
    if scheme == "file":
        from gpuxbuild.remote.file import FileBackend

        return FileBackend(spec)
    if scheme == "oci":
        from gpuxbuild.remote.oci import OciBackend

        return OciBackend(spec)
    from gpuxbuild.remote.s3 import S3Backend

    return S3Backend(spec)


Warn = Callable[[str], None]
