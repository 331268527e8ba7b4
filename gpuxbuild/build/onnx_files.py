"""Repos that already ship ONNX graphs (optimum exports, transformers.js / onnx-community layouts).

Finds the graph variants a repo offers (plain, quantized, fp16, q4, ...), picks the files one
variant needs (with its external data), and places them in an artifact under the canonical
names of an optimum export. Pure Python + onnx: no torch.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from gpuxbuild.errors import GpuxError

DEFAULT_VARIANT = "default"

# File stem -> graph role; longest stems first so "decoder_model_merged_fp16" is not read as
# stem "model" with some variant.
_STEMS = (("decoder_model_merged", "decoder"), ("encoder_model", "encoder"), ("model", "model"))
CANONICAL_NAMES = {"model": "model.onnx", "encoder": "encoder_model.onnx", "decoder": "decoder_model_merged.onnx"}
# Where repos keep their graphs, in order of precedence: the repo root (optimum-cli output
# pushed as is), then onnx/ (transformers.js).
_DIRS = ("", "onnx")
_VARIANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")


def _parse_graph_path(path: str) -> tuple[str, str, str] | None:
    """(folder, variant, role) of a repo path that is an ONNX graph we know, else None."""
    pure = PurePosixPath(path)
    folder = str(pure.parent) if str(pure.parent) != "." else ""
    if folder not in _DIRS or pure.suffix != ".onnx":
        return None
    stem = pure.name[: -len(".onnx")]
    for prefix, role in _STEMS:
        if stem == prefix:
            return folder, DEFAULT_VARIANT, role
        if stem.startswith(prefix + "_"):
            variant = stem[len(prefix) + 1 :]
            return (folder, variant, role) if _VARIANT.match(variant) else None
    # decoder_model (no past), decoder_with_past_model, vision_model, ...: not graphs we place.
    return None


def _graph_set(found: dict[str, str]) -> dict[str, str] | None:
    """The graphs one variant consists of, or None when it is incomplete."""
    if "encoder" in found and "decoder" in found:
        return {"encoder": found["encoder"], "decoder": found["decoder"]}
    if "model" in found:
        return {"model": found["model"]}
    if "decoder" in found:
        # transformers.js decoder-only LMs ship their with-past graph as decoder_model_merged;
        # it is the whole model.
        return {"model": found["decoder"]}
    return None


def find_onnx_variants(paths: list[str]) -> dict[str, dict[str, str]]:
    """Map each complete ONNX variant in a repo's file list to {graph role: repo path}.

    Roles are "model" (single graph, also decoder-only LMs with past) or "encoder" + "decoder"
    (seq2seq, merged decoder). The plain files are variant "default"; ``model_fp16.onnx`` is
    variant "fp16", and so on. A variant found both at the root and in onnx/ is taken from the root.
    """
    by_folder: dict[str, dict[str, dict[str, str]]] = {}
    for path in sorted(paths):
        parsed = _parse_graph_path(path)
        if parsed:
            folder, variant, role = parsed
            by_folder.setdefault(folder, {}).setdefault(variant, {})[role] = path
    variants: dict[str, dict[str, str]] = {}
    for folder in reversed(_DIRS):
        for variant, found in by_folder.get(folder, {}).items():
            graphs = _graph_set(found)
            if graphs:
                variants[variant] = graphs
    return {name: variants[name] for name in sorted(variants)}


def _external_data_candidates(graph_path: str, paths: list[str]) -> list[str]:
    """Files that by name hold a graph's external data: X.onnx_data, X.onnx_data_N, X.onnx.data."""
    pattern = re.compile(re.escape(graph_path) + r"(_data(_\d+)?|\.data)$")
    return [p for p in paths if pattern.match(p)]


def _choose(paths: list[str], variant: str | None, repo: str | None) -> dict[str, str]:
    variants = find_onnx_variants(paths)
    where = f"repo {repo}" if repo else "the repo"
    if not variants:
        raise GpuxError(
            f"{where} has no usable ONNX graphs (model.onnx, or encoder_model.onnx + decoder_model_merged.onnx)",
            "drop the ONNX source option so the model is exported from its weights",
        )
    name = variant or DEFAULT_VARIANT
    if name not in variants:
        raise GpuxError(
            f"{where} has no ONNX variant {name!r}; available: {', '.join(variants)}",
            "choose one of the available ONNX variants for this model in gpux.models.yml",
        )
    return variants[name]


def select_onnx_files(paths: list[str], variant: str | None, *, repo: str | None = None) -> list[str]:
    """The repo paths one ONNX variant needs (graphs and their external data), sorted.

    ``variant`` None means "default". Raises GpuxError listing the variants when it is absent.
    """
    graphs = _choose(paths, variant, repo)
    needed = set(graphs.values())
    for graph in graphs.values():
        needed.update(_external_data_candidates(graph, paths))
    return sorted(needed)


def place_onnx(source_dir: Path, out_dir: Path, variant: str | None, *, repo: str | None = None) -> dict[str, str]:
    """Copy one ONNX variant from a downloaded repo folder into ``out_dir`` under canonical names.

    Graphs become model.onnx, or encoder_model.onnx + decoder_model_merged.onnx; their external
    data files become ``<graph>_data`` (``<graph>_data_<i>`` for further files, in sorted order
    of the original names), and the references inside the graphs are rewritten to match.
    Returns {graph role: file name in out_dir}.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    paths = sorted(p.relative_to(source_dir).as_posix() for p in source_dir.rglob("*") if p.is_file())
    graphs = _choose(paths, variant, repo)
    out_dir.mkdir(parents=True, exist_ok=True)
    placed: dict[str, str] = {}
    for role in sorted(graphs):
        target = CANONICAL_NAMES[role]
        _place_graph(source_dir, graphs[role], out_dir, target)
        placed[role] = target
    return placed


def _place_graph(source_dir: Path, repo_path: str, out_dir: Path, target: str) -> None:
    import onnx

    src = source_dir / repo_path
    try:
        model = onnx.load(str(src), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise GpuxError(f"{repo_path} is not a readable ONNX graph: {exc}", "choose another ONNX variant") from exc
    tensors = [t for t in _all_tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    locations = sorted({_location(t) for t in tensors})
    renames = {old: target + "_data" + (f"_{i}" if i else "") for i, old in enumerate(locations)}
    for old, new in renames.items():
        data = _safe_data_path(src, old, repo_path)
        shutil.copyfile(data, out_dir / new)
    if all(old == new for old, new in renames.items()):
        shutil.copyfile(src, out_dir / target)
        return
    for tensor in tensors:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = renames[entry.value]
    (out_dir / target).write_bytes(model.SerializeToString())


def _location(tensor: Any) -> str:
    return next(e.value for e in tensor.external_data if e.key == "location")


def _safe_data_path(graph: Path, location: str, repo_path: str) -> Path:
    """The external data file a graph names, refusing names that leave the repo folder."""
    pure = PurePosixPath(location)
    # Checked by name, not by resolving: Hub snapshots are symlinks into a blob store.
    if pure.is_absolute() or ".." in pure.parts or "\\" in location:
        raise GpuxError(
            f"{repo_path} points its external data outside the repo: {location}",
            "this repo's ONNX files are unsafe to use; export the model from its weights instead",
        )
    data = graph.parent / location
    if not data.is_file():
        raise GpuxError(
            f"{repo_path} needs external data file {location}, which the repo does not have",
            "choose another ONNX variant or export the model from its weights",
        )
    return data


def _all_tensors(graph: Any) -> list[Any]:
    """Initializers and constant tensors of a graph and all its subgraphs (If/Loop bodies)."""
    tensors = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            tensors.extend(attr.tensors)
            if attr.HasField("g"):
                tensors.extend(_all_tensors(attr.g))
            for sub in attr.graphs:
                tensors.extend(_all_tensors(sub))
    return tensors
