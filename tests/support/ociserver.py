"""The CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1 as the tests' OCI registry."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

import requests
from processes import free_port, start_retrying, stop, wait_until

if TYPE_CHECKING:
    from pathlib import Path


def registry_binary() -> str | None:
    return shutil.which("docker-registry")


class OciServer:
    def __init__(self, root: Path, auth: tuple[str, str] | None = None):
        self.root = root
        self.auth = auth  # (user, password) the registry requires (htpasswd, basic auth), or None
        self.proc: subprocess.Popen | None = None
        self.host = ""

    def start(self) -> None:
        start_retrying(self._start)

    def _start(self) -> None:
        self.host = f"127.0.0.1:{free_port()}"
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '{self.host}'}}\n" + self._auth_config()
        )
        self.log = open(self.root / "registry.log", "wb")  # noqa: SIM115 (open while the server runs)
        self.proc = subprocess.Popen(
            [registry_binary() or "docker-registry", "serve", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            log = self.root / "registry.log"
            wait_until(self._answers, self.proc, timeout=30, what=f"the registry (log: {log})", log=log)
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        try:
            return requests.get(f"http://{self.host}/v2/", timeout=1).status_code in (200, 401)
        except requests.ConnectionError:
            return False

    def _auth_config(self) -> str:
        if self.auth is None:
            return ""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # the registry takes bcrypt hashes only; libxcrypt makes them

        user, password = self.auth
        (self.root / "htpasswd").write_text(
            f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n"
        )
        return f"auth: {{htpasswd: {{realm: gpux-test, path: {self.root / 'htpasswd'}}}}}\n"

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
            self.log.close()
