"""`LocalManager`: a folder laid out like a model repo, for air-gapped teams and the offline quickstart.

Its "commit" is a content digest of the folder: the sorted list of (path, sha256, size).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import BinaryIO

import yaml

from gpuxbuild.errors import GpuxError, RegistryError, quote
from gpuxbuild.hashing import digest, sha256_file
from gpuxbuild.registries.base import ModelInfo, ModelManager, PinnedModel, Progress, license_of
from gpuxbuild.store.files import FileEntry
from gpuxbuild.yaml_io import DuplicateKey, load_yaml

# Folders a model repo never ships but a working copy may contain.
_SKIP_DIRS = {".git", ".cache", "__pycache__", ".ipynb_checkpoints"}


def read_card(text: str) -> dict:
    """The YAML front matter of a model card (README.md), or {}."""
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        data, _ = (
            load_yaml(text[3:end].encode("utf-8"), "README.md", max_bytes=1 << 20, hint="") if end > 0 else (None, None)
        )
    except (yaml.YAMLError, GpuxError, DuplicateKey):
        return {}  # a card is optional metadata: a bad one is ignored, as the Hub does
    return data if isinstance(data, dict) else {}


class LocalManager(ModelManager):
    """Models from folders on disk, referenced relative to the project."""

    name = "local"

    def _root(self, repo: str) -> Path:
        root = (self.project / repo).resolve()
        if not root.is_dir():
            raise RegistryError(
                f"local model folder {quote(repo)} does not exist (looked in {self.project})",
                "check the model's source path; it is relative to the project folder",
            )
        return root

    def _files(self, root: Path) -> list[FileEntry]:
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for fn in filenames:
                p = Path(dirpath, fn)
                real = p.resolve()
                if not real.is_relative_to(root):
                    raise RegistryError(f"{p} links outside the model folder {root}", "replace the link by the file")
                st = real.stat()
                if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read forever, a device never end
                    raise RegistryError(
                        f"{p} is not a regular file (a FIFO, socket or device)",
                        "remove it from the model folder: a model is made of regular files",
                    )
                files.append(FileEntry(p.relative_to(root).as_posix(), sha256_file(real), st.st_size))
        return sorted(files)

    def resolve(self, repo: str, revision: str | None, *, pin: str | None = None) -> PinnedModel:
        root = self._root(repo)
        files = self._files(root)
        commit = digest([f.as_dict() for f in files]).removeprefix("sha256:")
        if pin is not None and pin != commit:
            raise RegistryError(
                f"local model folder {repo!r} changed since it was locked (pinned {pin[:12]}, now {commit[:12]})",
                "re-lock it with `gpux lock --upgrade NAME`",
            )
        return PinnedModel(self.name, repo, revision, commit, files, self._info(root))

    def _info(self, root: Path) -> ModelInfo:
        config, card = {}, {}
        if (root / "config.json").is_file():
            try:
                config = json.loads((root / "config.json").read_text(encoding="utf-8"))
            except ValueError as exc:
                raise RegistryError(
                    f"{root.name}/config.json is not valid JSON: {exc}", "fix or remove the file"
                ) from exc
        if (root / "README.md").is_file():
            card = read_card((root / "README.md").read_text(encoding="utf-8", errors="replace"))
        library = card.get("library_name")
        if library is None and (root / "modules.json").is_file():
            library = "sentence-transformers"
        return ModelInfo(
            pipeline_tag=card.get("pipeline_tag"),
            library=library,
            architectures=list(config.get("architectures") or []),
            model_type=config.get("model_type"),
            license=license_of(card, config),
            card_data=card,
            config=config,
        )

    def fetch(self, repo: str, commit: str, files: list[FileEntry], **kw):
        """Copy the folder's files into the store: counted as copied, not as downloaded."""
        result = super().fetch(repo, commit, files, **kw)
        n, size = len(result.downloaded), result.bytes_downloaded
        self.store.record_stats(downloaded=-n, bytes_downloaded=-size, copied=n, bytes_copied=size)
        return result

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
        path = self._root(repo) / file.path
        if not path.is_file():
            raise RegistryError(f"{repo}/{file.path} is gone from the local folder", "restore it or re-lock the model")
        with open(path, "rb") as src:
            src.seek(resume_from)
            while chunk := src.read(1 << 20):
                dest.write(chunk)
                if progress:
                    progress(len(chunk))

    def display(self, repo: str) -> str:
        return f"path:{repo}"
