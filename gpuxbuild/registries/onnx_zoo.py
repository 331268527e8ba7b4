"""`OnnxZooManager`: `onnx-zoo:NAME`, a model of the ONNX Model Zoo, which now publishes each model as a repo of
the Hugging Face Hub organisation `onnxmodelzoo` (e.g. `onnx-zoo:resnet50_Opset17` is `onnxmodelzoo/resnet50_Opset17`).

Everything else is the Hub's (HF_ENDPOINT, HF_TOKEN, offline mode, the checks of names and hashes). Zoo repos
ship ONNX graphs (one `NAME.onnx`, which gpux places as `model.onnx`), so their models are never exported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from gpuxbuild.registries.huggingface import HuggingFaceManager

if TYPE_CHECKING:
    from gpuxbuild.registries.base import Listed, PinnedModel, Progress
    from gpuxbuild.store.files import FileEntry

ZOO_ORG = "onnxmodelzoo"


def zoo_repo(name: str) -> str:
    """The Hub repo id of the zoo model `name`."""
    return f"{ZOO_ORG}/{name}"


class OnnxZooManager(HuggingFaceManager):
    """ONNX Model Zoo models, on the Hub."""

    name = "onnx-zoo"

    def display(self, repo: str) -> str:
        return f"onnx-zoo:{repo}"

    def resolve(self, repo: str, revision: str | None, *, pin: str | None = None) -> PinnedModel:
        return self._zoo(super().resolve(zoo_repo(repo), revision, pin=pin), repo)

    def resolve_streaming(
        self, repo: str, revision: str | None, on_listed: Listed, *, pin: str | None = None
    ) -> PinnedModel:
        return self._zoo(super().resolve_streaming(zoo_repo(repo), revision, on_listed, pin=pin), repo)

    def _zoo(self, pinned: PinnedModel, name: str) -> PinnedModel:
        pinned.registry, pinned.repo = self.name, name
        return pinned

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
        super().download(zoo_repo(repo), commit, file, dest, resume_from=resume_from, progress=progress)
