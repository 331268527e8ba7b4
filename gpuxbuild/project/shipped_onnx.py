"""Repos that already ship ONNX graphs (optimum exports, transformers.js / onnx-community layouts), by
path names alone: the graph variants a repo offers (plain, quantized, fp16, q4, ...) and the files one
variant needs (with its external data). Decided at lock time; build/onnx_files.py places them.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

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
_EXPORT_PART = re.compile(r"^(model|decoder|encoder|vision|text|audio|embed\w*)_|_model($|_)")


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
    A repo with no graph of those names but exactly one ``*.onnx`` (at the root or in onnx/) has that
    graph as its default model.
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
    if not variants:
        # One graph under another name (the ONNX Model Zoo's `resnet50_Opset17.onnx`) is the model.
        # Graphs named as parts of a transformers export (decoder_model, vision_model, ...) are never alone whole.
        lone = [
            p
            for p in paths
            if p.endswith(".onnx")
            and str(PurePosixPath(p).parent).strip(".") in _DIRS
            and not _EXPORT_PART.match(PurePosixPath(p).stem)
        ]
        if len(lone) == 1:
            variants[DEFAULT_VARIANT] = {"model": lone[0]}
    return {name: variants[name] for name in sorted(variants)}


def external_data_candidates(graph_path: str, paths: list[str]) -> list[str]:
    """Files that by name hold a graph's external data: X.onnx_data, X.onnx_data_N, X.onnx.data."""
    pattern = re.compile(re.escape(graph_path) + r"(_data(_\d+)?|\.data)$")
    return [p for p in paths if pattern.match(p)]


def choose_graphs(paths: list[str], variant: str | None, repo: str | None) -> dict[str, str]:
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
    graphs = choose_graphs(paths, variant, repo)
    needed = set(graphs.values())
    for graph in graphs.values():
        needed.update(external_data_candidates(graph, paths))
    return sorted(needed)
