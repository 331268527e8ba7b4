"""The preprocessor config of a vision or audio model (`preprocessor_config.json`): `gpux build` keeps it in the
artifact and fills gpux.yml's `preprocessing` from it; `gpux run` prepares images and sound by it."""

from __future__ import annotations

import json
from pathlib import Path

from gpuxbuild.errors import GpuxError

PREPROCESSOR_CONFIG = "preprocessor_config.json"


def read_preprocessor_config(folder: Path, models: str) -> tuple[Path, dict]:
    """The path of `folder`'s preprocessor config and its JSON object ({} when it holds another value); a missing
    or unreadable file is a one-line error whose hint names `models` ("vision models", "audio models")."""
    path = Path(folder) / PREPROCESSOR_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GpuxError(
            f"{path} does not exist", f"rebuild the artifact: {models} carry their preprocessor config"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise GpuxError(f"{path} is not valid JSON: {exc}", "rebuild the artifact") from None
    return path, data if isinstance(data, dict) else {}
