"""Which of a repo's files a model needs: user include/exclude, other frameworks' weights left out,
pickles left out where safetensors exist, and either the shipped ONNX files or the PyTorch weights.

Decided at lock time, so the lock lists exactly the files that will be fetched.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from posixpath import dirname
from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError

if TYPE_CHECKING:
    from gpuxbuild.store.files import FileEntry

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Weights for other runtimes and frameworks: never needed to export or run ONNX.
OTHER_FRAMEWORKS = (
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.tflite",
    "*.gguf",
    "*.mlmodel",
    "*.mlpackage/*",
    "coreml/*",
    "openvino/*",
    "tf_model*",
    "flax_model*",
    "rust_model*",
    ".gitattributes",
)
ONNX_SUFFIXES = (".onnx", ".onnx_data", ".onnx.data")


def _matches(path: str, patterns) -> bool:
    return any(fnmatchcase(path, p) or fnmatchcase(path.rsplit("/", 1)[-1], p) for p in patterns)


def is_pickle(path: str) -> bool:
    """Weights in a pickle format, which can run code when loaded."""
    return path.endswith(PICKLE_SUFFIXES) and not path.endswith(ONNX_SUFFIXES)


def is_onnx(path: str) -> bool:
    return path.endswith(ONNX_SUFFIXES)


def conversion_path(paths: list[str], convert: dict) -> str:
    """ "onnx" when the model will use ONNX files the repo ships, "export" when it will be exported."""
    has_onnx = any(p.endswith(".onnx") for p in paths)
    mode = convert.get("from", "auto")
    if mode == "onnx" and not has_onnx:
        raise GpuxError("convert.from is 'onnx' but the repo ships no .onnx file", "use convert.from: auto or export")
    return "onnx" if has_onnx and mode in ("auto", "onnx") else "export"


def select_paths(paths: list[str], *, include=(), exclude=(), convert: dict) -> list[str]:
    """The paths of a repo's files that a model with these options needs, sorted (names alone decide)."""
    chosen = [p for p in paths if (not include or _matches(p, include)) and not _matches(p, exclude)]
    chosen = [p for p in chosen if not _matches(p, OTHER_FRAMEWORKS) or (include and _matches(p, include))]
    if conversion_path(chosen, convert) == "onnx":
        from gpuxbuild.project.shipped_onnx import select_onnx_files

        keep = set(select_onnx_files([p for p in chosen if is_onnx(p)], convert.get("variant")))
        chosen = [p for p in chosen if (p in keep) or not (is_onnx(p) or _is_torch_weight(p))]
    else:
        chosen = [p for p in chosen if not is_onnx(p)]
        safetensor_dirs = {dirname(p) for p in chosen if p.endswith(".safetensors")}
        chosen = [p for p in chosen if not (is_pickle(p) and dirname(p) in safetensor_dirs)]
    return sorted(chosen)


def _is_torch_weight(path: str) -> bool:
    return path.endswith((".safetensors", ".safetensors.index.json", ".bin.index.json")) or is_pickle(path)


def check_pickles(name: str, files: list[FileEntry], allow_pickle: bool) -> None:
    """Refuse pickle weights (they can run code when loaded) unless the model allows them."""
    pickles = [f.path for f in files if is_pickle(f.path)]
    if pickles and not allow_pickle:
        raise GpuxError(
            f"model {name!r} ships its weights only as pickle files ({', '.join(pickles[:3])}), which can run code when loaded",
            "if you trust the repo, set `allow_pickle: true` for it in gpux.models.yml (or pass --allow-pickle)",
        )
