"""The graphs torch exports during an optimum export, kept in memory for the post-processing that reads them next.

torch's TorchScript exporter serializes a graph, parses those bytes back (``_add_onnxscript_fn``, looking for
onnxscript functions to add) and writes the bytes to the file optimum names. optimum then parses the file again to
see whether its weights are external, and gpuxbuild parses it a third time to post-process it. For a 440 MB
bert-base graph that is a write, two reads and two parses (2-3 s of a 13 s export) of bytes already in memory.

While ``ExportedGraphs.capturing()`` is active, a graph torch exports into the folder with its weights inline is
kept as the ModelProto torch parsed and the bytes it parsed it from, and not written. optimum's check gets that
ModelProto (``onnx.load`` of the path); gpuxbuild's post-processing takes both (``load``): it strips the graph and
serializes it again copying the weights' encoded bytes from those bytes (`onnx_wire.with_initializers`).
Anything that must read the file itself (onnxruntime, the optimizer, optimum's dynamic-axes fix) calls
``materialize`` first, which writes the bytes torch would have written. The graph is the same message either way,
so the artifact's bytes are unchanged.

Kept: graphs under 1 GB, up to 2 GB in all counting the parsed graph and its bytes (seq2seq's three graphs wait
for their merge), which bounds the memory this adds to an export. A single graph adds none to its peak: torch held
both while it exported, and post-processing held a graph and its new serialization anyway. Larger graphs, graphs
with external data and graphs written anywhere else are written as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from gpuxbuild.build.patching import patched

if TYPE_CHECKING:
    from onnx import ModelProto

TWO_GB = 2**31
_KEPT_GRAPH_LIMIT = TWO_GB // 2
_KEPT_TOTAL_LIMIT = TWO_GB


def disk_size(path: Path) -> int:
    """Bytes of a graph file and its external data files (``<name>_data`` etc. beside it)."""
    return sum(p.stat().st_size for p in path.parent.glob(f"{path.name}*"))


class ExportedGraphs:
    """Graphs exported into ``folder``: kept in memory (see the module doc) or in their files."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._kept: dict[Path, tuple[ModelProto, bytes]] = {}  # path -> (ModelProto, the bytes it was parsed from)

    def exists(self, path: Path) -> bool:
        return path in self._kept or path.is_file()

    def size(self, path: Path) -> int:
        """The graph's serialized size: in memory, or of its files."""
        kept = self._kept.get(path)
        return len(kept[1]) if kept else disk_size(path)

    def outputs(self, path: Path) -> list:
        """The graph's outputs (ValueInfoProtos): of the graph in memory, or read from its file without parsing
        the weights (`onnx_wire.graph_outputs`; OSError, ValueError)."""
        kept = self._kept.get(path)
        if kept is not None:
            return list(kept[0].graph.output)
        from gpuxbuild.build.onnx_wire import graph_outputs

        return graph_outputs(path)

    def load(self, path: Path) -> tuple[ModelProto, bytes | None]:
        """The graph at ``path`` as a ModelProto, now the caller's (it is no longer kept), and the bytes it was
        parsed from: the one in memory, or parsed from its file (bytes None)."""
        kept = self._kept.pop(path, None)
        if kept is not None:
            return kept
        import onnx

        return onnx.load(str(path)), None

    def materialize(self, path: Path) -> None:
        """Write a kept graph to its file, for readers of files; from then on the file is the graph."""
        kept = self._kept.pop(path, None)
        if kept is not None:
            path.write_bytes(kept[1])

    @contextmanager
    def capturing(self) -> Iterator[ExportedGraphs]:
        """Keep what torch exports into ``folder`` (see the module doc) while the block runs.

        Three hooks, each undone on the way out: while torch's ``_add_onnxscript_fn`` runs,
        ``onnx.load_model_from_string`` remembers the graph it parses from the bytes torch is about to write;
        torch's ``_export_file`` keeps that parsed graph instead of writing the bytes when they are the ones parsed
        (no onnxscript function was added); ``onnx.load`` of a kept path returns the kept graph (optimum only
        reads it).
        """
        import onnx
        from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

        parsed: list[tuple[bytes, ModelProto]] = []
        original_parse, original_load = onnx.load_model_from_string, onnx.load
        original_add_functions, original_export_file = (
            onnx_proto_utils._add_onnxscript_fn,
            onnx_proto_utils._export_file,
        )

        def parse(data, *args, **kwargs):
            model = original_parse(data, *args, **kwargs)
            parsed[:] = [(data, model)]
            return model

        def add_functions(model_bytes, custom_opsets):
            with patched(onnx, load_model_from_string=parse):
                return original_add_functions(model_bytes, custom_opsets)

        def export_file(model_bytes, f, export_map):
            candidate = parsed.pop() if parsed else None
            if candidate is not None and candidate[0] is model_bytes and self._keeps(f, model_bytes, candidate[1]):
                self._kept[Path(f)] = (candidate[1], model_bytes)
                return
            original_export_file(model_bytes, f, export_map)

        def load(f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)) and Path(f) in self._kept:
                return self._kept[Path(f)][0]
            return original_load(f, *args, **kwargs)

        with (
            patched(onnx, load=load),
            patched(onnx_proto_utils, _add_onnxscript_fn=add_functions, _export_file=export_file),
        ):
            yield self

    def _keeps(self, f, model_bytes: bytes, model: ModelProto) -> bool:
        from onnx.external_data_helper import uses_external_data

        if not isinstance(f, str) or Path(f).parent != self.folder or len(model_bytes) >= _KEPT_GRAPH_LIMIT:
            return False
        if 2 * (sum(len(data) for _, data in self._kept.values()) + len(model_bytes)) > _KEPT_TOTAL_LIMIT:
            return False
        # optimum re-saves a graph with external weights (or all, with FORCE_ONNX_EXTERNAL_DATA) from its file
        if os.getenv("FORCE_ONNX_EXTERNAL_DATA", "0") == "1":
            return False
        return not any(uses_external_data(t) for t in model.graph.initializer)
