"""What every S3 client of gpuxbuild shares (the `s3://` remote cache, the `s3://` model source): an `obstore`
S3Store configured from the standard AWS_* variables, and its failures cut to one line without secrets.

Credentials and the endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_ENDPOINT_URL(_S3), AWS_REGION, else the shared credentials file and AWS_PROFILE. Retries follow
GPUX_HTTP_RETRIES and GPUX_HTTP_TIMEOUT.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from gpuxbuild.network import DEFAULT_TIMEOUT, MAX_WAIT, RetryPolicy, _env_number, redact_text

_STATUS = re.compile(r"(\d{3} [A-Z][A-Za-z ]+?)(?::|$)")
_CODE = re.compile(r"<Code>([^<]+)</Code>")
CREDENTIALS_HINT = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile) and the bucket's permissions"


def profile_credentials() -> dict[str, str]:
    """Keys from the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else ~/.aws/credentials), profile
    `AWS_PROFILE` (else default), when the AWS_* variables give none: where the AWS CLI and boto3 look too."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return {}
    import configparser

    path = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    ini = configparser.ConfigParser()
    try:
        ini.read(path)
    except (OSError, configparser.Error):
        return {}
    section = os.environ.get("AWS_PROFILE") or "default"
    if not ini.has_section(section):
        return {}
    keys = {
        "aws_access_key_id": "access_key_id",
        "aws_secret_access_key": "secret_access_key",
        "aws_session_token": "token",
    }
    return {ours: ini.get(section, theirs) for theirs, ours in keys.items() if ini.has_option(section, theirs)}


def s3_endpoint() -> str | None:
    """The S3 endpoint the AWS_* variables name (None: AWS itself)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def s3_store(bucket: str) -> Any:
    """An obstore S3Store on `bucket` (ImportError when obstore is not installed)."""
    from obstore.store import S3Store

    endpoint = s3_endpoint()
    policy = RetryPolicy.from_env()
    timeout = _env_number("GPUX_HTTP_TIMEOUT", DEFAULT_TIMEOUT, minimum=0.001)
    options: Any = {"timeout": f"{timeout}s", "connect_timeout": f"{timeout}s"}  # obstore's ClientConfig
    if endpoint and endpoint.startswith("http://"):
        options["allow_http"] = True
    config: Any = {  # obstore's S3Config; the rest (AWS_*) it reads from the environment itself
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        **profile_credentials(),
        **({"endpoint": endpoint} if endpoint else {}),
    }
    return S3Store(
        bucket,
        config=config,
        client_options=options,
        retry_config={
            "max_retries": policy.retries,
            "backoff": {
                "init_backoff": timedelta(seconds=policy.backoff),
                "max_backoff": timedelta(seconds=MAX_WAIT),
                "base": 2.0,
            },
            "retry_timeout": timedelta(seconds=max(timeout * (policy.retries + 1), 1.0)),
        },
    )


def s3_failure(exc: BaseException) -> tuple[str, bool]:
    """(the cause of an obstore failure in one line: a status and the store's error code, no secrets;
    whether it is a refusal of the credentials)."""
    text = str(exc)
    status, code = _STATUS.search(text), _CODE.search(text)
    if status or code:
        cause = " ".join(x for x in (status.group(1).strip() if status else "", code.group(1) if code else "") if x)
    else:
        cause = redact_text(text.splitlines()[0])[:200] if text else type(exc).__name__
    denied = "403" in cause or "401" in cause or "Denied" in type(exc).__name__ or "Unauth" in type(exc).__name__
    return cause, denied
