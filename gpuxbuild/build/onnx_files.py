"""Places the ONNX graphs a repo ships (one variant, chosen by gpuxbuild.project.shipped_onnx) in an
artifact under the canonical names of an optimum export, with their external data. Pure Python + onnx:
no torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from gpuxbuild.errors import GpuxError
from gpuxbuild.project.shipped_onnx import CANONICAL_NAMES, choose_graphs


def place_onnx(source_dir: Path, out_dir: Path, variant: str | None, *, repo: str | None = None) -> dict[str, str]:
    """Copy one ONNX variant from a downloaded repo folder into ``out_dir`` under canonical names.

    Graphs become model.onnx, or encoder_model.onnx + decoder_model_merged.onnx; their external
    data files become ``<graph>_data`` (``<graph>_data_<i>`` for further files, in sorted order
    of the original names), and the references inside the graphs are rewritten to match.
    Returns {graph role: file name in out_dir}.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    paths = sorted(p.relative_to(source_dir).as_posix() for p in source_dir.rglob("*") if p.is_file())
    graphs = choose_graphs(paths, variant, repo)
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
