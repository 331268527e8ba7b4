"""Graphs torch exports kept in memory instead of written and read back (build/exported_graphs.py)."""

from __future__ import annotations

import onnx
import pytest

torch = pytest.importorskip("torch")

from torch.onnx._internal.torchscript_exporter import onnx_proto_utils  # noqa: E402

from gpuxbuild.build import exported_graphs  # noqa: E402
from gpuxbuild.build.exported_graphs import ExportedGraphs  # noqa: E402


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(8, 4)

    def forward(self, x):
        return torch.relu(self.linear(x))


def _export(path) -> None:
    torch.onnx.export(
        _Net(),
        (torch.ones(2, 8),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )


def test_a_graph_exported_into_the_folder_is_kept_and_is_the_file_it_would_have_written(tmp_path):
    written = tmp_path / "plain" / "model.onnx"
    written.parent.mkdir()
    _export(written)
    folder = tmp_path / "export"
    folder.mkdir()
    path = folder / "model.onnx"
    exported = ExportedGraphs(folder)
    with exported.capturing():
        _export(path)
        assert not path.exists()
        assert exported.exists(path) and exported.size(path) == written.stat().st_size
        kept = onnx.load(str(path))  # what optimum's external-data check reads
        assert onnx.load(str(path)) is kept
        assert [o.name for o in exported.outputs(path)] == ["y"]
    model, data = exported.load(path)
    assert data == written.read_bytes() and model.SerializeToString() == data
    assert not exported.exists(path)  # taken: now the caller's


def test_materialize_writes_the_bytes_and_the_file_takes_over(tmp_path):
    exported = ExportedGraphs(tmp_path)
    path = tmp_path / "model.onnx"
    with exported.capturing():
        _export(path)
    size = exported.size(path)
    exported.materialize(path)
    assert path.stat().st_size == size and exported.size(path) == size
    loaded, data = exported.load(path)  # parsed from the file
    assert data is None and loaded.SerializeToString() == path.read_bytes()
    exported.materialize(path)  # nothing kept: nothing written
    assert path.read_bytes() == loaded.SerializeToString()


def test_graphs_elsewhere_too_large_or_forced_external_are_written(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    folder.mkdir()
    exported = ExportedGraphs(folder)
    with exported.capturing():
        _export(tmp_path / "elsewhere.onnx")
        assert (tmp_path / "elsewhere.onnx").is_file()
        monkeypatch.setenv("FORCE_ONNX_EXTERNAL_DATA", "1")
        _export(folder / "forced.onnx")
        assert (folder / "forced.onnx").is_file()
        monkeypatch.delenv("FORCE_ONNX_EXTERNAL_DATA")
        _export(folder / "first.onnx")  # kept: the total limit is reached
        monkeypatch.setattr(exported_graphs, "_KEPT_TOTAL_LIMIT", exported.size(folder / "first.onnx") + 1)
        _export(folder / "second.onnx")
        assert (folder / "second.onnx").is_file() and not (folder / "first.onnx").is_file()
        monkeypatch.setattr(exported_graphs, "_KEPT_GRAPH_LIMIT", 100)
        exported.load(folder / "first.onnx")
        _export(folder / "third.onnx")
        assert (folder / "third.onnx").is_file()


def test_the_hooks_are_undone_even_when_the_export_fails(tmp_path):
    hooks = (onnx.load, onnx.load_model_from_string, onnx_proto_utils._export_file, onnx_proto_utils._add_onnxscript_fn)
    exported = ExportedGraphs(tmp_path)
    with pytest.raises(RuntimeError), exported.capturing():
        raise RuntimeError("export failed")
    assert (
        onnx.load,
        onnx.load_model_from_string,
        onnx_proto_utils._export_file,
        onnx_proto_utils._add_onnxscript_fn,
    ) == hooks
    _export(tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").is_file()
