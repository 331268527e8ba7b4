"""What every OCI registry client of gpuxbuild shares (the `oci://` remote cache, the `oci://` model source): the
registry HTTP API over `requests`, with the docker credential store (`DOCKER_CONFIG`/config.json: `auths`,
`credHelpers`, `credsStore`) for basic auth and bearer tokens (never shown), gpuxbuild's retries and timeouts,
and failures as one line. Loopback registries are spoken to over plain HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gpuxbuild.errors import GpuxError
from gpuxbuild.network import RetryPolicy, http_timeout, redact_text, requests_transient

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
EMPTY: dict[str, Any] = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:" + "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
}
TITLE = "org.opencontainers.image.title"
CHUNK = 1 << 20
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOGIN_HINT = "log in with `docker login` (or set DOCKER_CONFIG) with a user that may read/push this repository"


def docker_credentials(host: str) -> tuple[str, str] | None:
    """(user, secret) for `host` from the docker credential store, or None."""
    path = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        conf = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    helper = (conf.get("credHelpers") or {}).get(host) or conf.get("credsStore")
    if helper:
        try:
            out = subprocess.run(
                [f"docker-credential-{helper}", "get"], input=host, capture_output=True, text=True, timeout=30
            )
            if out.returncode == 0:
                got = json.loads(out.stdout)
                return got["Username"], got["Secret"]
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
            pass
    for name, entry in (conf.get("auths") or {}).items():
        if urlsplit(name if "://" in name else f"//{name}").netloc == host and entry.get("auth"):
            user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, secret
    return None


class OciClient:
    """One repository of a registry: `request()` answers 401s with the stored credentials, retries transient
    failures, and raises `error` (a GpuxError class) with `label` for the others; a 404 is returned."""

    def __init__(self, host: str, repo: str, *, label: str, error: type[GpuxError] = GpuxError):
        import requests

        self.host, self.repo, self.label, self.error = host, repo, label, error
        hostname = urlsplit(f"//{host}").hostname or ""
        scheme = "http" if hostname in LOOPBACK else "https"
        self.base = f"{scheme}://{host}/v2/{repo}"
        self.session = requests.Session()
        self.creds = docker_credentials(host)
        self.policy = RetryPolicy.from_env()
        self.timeout = (http_timeout("metadata"), http_timeout("download"))

    def authorize(self, challenge: str) -> bool:
        """Answer a 401's WWW-Authenticate: basic auth, or a bearer token from the realm; False if no credentials
        can help."""
        import requests

        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.creds:
                return False
            self.session.auth = self.creds
            return True
        fields = dict(
            (k.strip(), v.strip().strip('"')) for k, _, v in (p.partition("=") for p in params.split(",")) if k.strip()
        )
        query = {k: fields[k] for k in ("service", "scope") if k in fields}
        resp = requests.get(fields.get("realm", ""), params=query, auth=self.creds, timeout=self.timeout)
        if resp.status_code != 200:
            return False
        token = resp.json().get("token") or resp.json().get("access_token")
        self.session.headers["Authorization"] = f"Bearer {token}"
        return True

    def request(self, method: str, url: str, key: str, ok=(200,), **kw):
        import requests

        def once():
            resp = self.session.request(method, url, timeout=self.timeout, **kw)
            if resp.status_code == 401 and self.authorize(resp.headers.get("WWW-Authenticate", "")):
                resp = self.session.request(method, url, timeout=self.timeout, **kw)
            if resp.status_code == 429 or resp.status_code >= 500:
                resp.raise_for_status()
            return resp

        try:
            resp = self.policy.run(once, requests_transient)
        except Exception as exc:
            cause = exc.error if hasattr(exc, "error") else exc
            text = redact_text(str(cause).splitlines()[0] if str(cause) else type(cause).__name__)
            if isinstance(cause, requests.HTTPError) and cause.response is not None:
                text = f"{cause.response.status_code} {cause.response.reason}"
            elif isinstance(cause, requests.ConnectionError):
                text = "connection refused or unreachable"
            raise self.error(f"{self.label}: {key}: {text}", "check the registry address and the network") from exc
        if resp.status_code not in ok and resp.status_code != 404:
            hint = LOGIN_HINT if resp.status_code in (401, 403) else "check the registry and the repository name"
            raise self.error(f"{self.label}: {key}: {resp.status_code} {resp.reason}", hint)
        return resp

    def tags(self) -> list[str]:
        """The repository's tags, sorted; none when it does not exist."""
        resp = self.request("GET", f"{self.base}/tags/list", "tags")
        return sorted((resp.json().get("tags") or []) if resp.status_code == 200 else [])

    def upload(self, digest: str, data, key: str) -> None:
        """Upload a blob (bytes or an open file) of a known digest: a monolithic POST + PUT."""
        resp = self.request("POST", f"{self.base}/blobs/uploads/", key, ok=(202,))
        location = resp.headers["Location"]
        if location.startswith("/"):
            location = self.base.split("/v2/")[0] + location
        sep = "&" if "?" in location else "?"
        self.request(
            "PUT",
            f"{location}{sep}digest={digest}",
            key,
            ok=(201,),
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )


def list_repositories(host: str, *, label: str, error: type[GpuxError] = GpuxError, max_pages: int = 10) -> list[str]:
    """The repositories of the registry at `host` (`/v2/_catalog`, followed over its pages), sorted. A registry
    that does not list its repositories (most public ones) raises `error`."""
    client = OciClient(host, "_catalog", label=label, error=error)
    root = client.base.removesuffix("/v2/_catalog")
    url: str | None = f"{root}/v2/_catalog?n=1000"
    repos: list[str] = []
    for _ in range(max_pages):
        if url is None:
            break
        resp = client.request("GET", url, "_catalog")
        if resp.status_code == 404:
            raise error(f"{label}: _catalog: 404 Not Found", "this registry does not list its repositories")
        repos += [r for r in resp.json().get("repositories") or [] if isinstance(r, str)]
        link = resp.links.get("next", {}).get("url")
        url = urlsplit(root)._replace(path=urlsplit(link).path, query=urlsplit(link).query).geturl() if link else None
    return sorted(set(repos))
