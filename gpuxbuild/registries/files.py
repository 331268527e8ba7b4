"""What the registries of plain files share (S3 folders, files at URLs, OCI artifacts): a model's metadata
read from its config.json and model card once they are in the store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gpuxbuild.errors import RegistryError
from gpuxbuild.registries.base import ModelInfo, license_of
from gpuxbuild.registries.local import read_card

if TYPE_CHECKING:
    from gpuxbuild.store.files import FileEntry
    from gpuxbuild.store.objects import Store


def model_info(store: Store, files: list[FileEntry], *, where: str = "") -> ModelInfo:
    """The task, library, architectures and license of a model whose `files` are in `store`."""
    by_path = {f.path: f for f in files}
    config: dict = {}
    if "config.json" in by_path:
        try:
            data = json.loads(store.object_path(by_path["config.json"].sha256).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RegistryError(f"{where}: config.json is not valid JSON ({exc})", "fix the file") from None
        config = data if isinstance(data, dict) else {}
    card: dict = {}
    if "README.md" in by_path:
        card = read_card(store.object_path(by_path["README.md"].sha256).read_text(encoding="utf-8", errors="replace"))
    library = card.get("library_name") or ("sentence-transformers" if "modules.json" in by_path else None)
    return ModelInfo(
        pipeline_tag=card.get("pipeline_tag"),
        library=library,
        architectures=list(config.get("architectures") or []),
        model_type=config.get("model_type"),
        license=license_of(card, config),
        card_data=card,
        config=config,
    )
