"""Reading a graph's outputs from an ONNX file without parsing its weights, and what decides optimum's dynamic-axes
fix (build/onnx_wire.py, build/convert.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpuxbuild.build.convert import _outputs_declared
from gpuxbuild.build.exported_graphs import ExportedGraphs
from gpuxbuild.build.onnx_wire import graph_outputs, with_initializers


def _graph(output_dims: list, *, weights: int = 1000, name: str = "logits") -> onnx.ModelProto:
    """x @ W + 1: a weight before the outputs in the file, as in an exported model."""
    w = numpy_helper.from_array(np.arange(weights * 4, dtype=np.float32).reshape(4, weights), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Add", ["y", "one"], [name])]
    one = numpy_helper.from_array(np.ones((1,), dtype=np.float32), "one")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch_size", 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, output_dims)],
        initializer=[w, one],
    )
    return helper.make_model(graph)


def test_graph_outputs_are_onnx_loads(tmp_path):
    path = tmp_path / "model.onnx"
    model = _graph(["batch_size", 1000], weights=1000)
    model.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, None))  # no shape
    onnx.save(model, str(path))
    assert graph_outputs(path) == list(onnx.load(str(path)).graph.output)
    assert [o.name for o in graph_outputs(path)] == ["logits", "y"]


def test_a_graph_field_given_twice_is_merged_as_onnx_load_does(tmp_path):
    """Two serialized messages back to back are one message, their repeated fields concatenated."""
    path = tmp_path / "model.onnx"
    path.write_bytes(_graph([1, 1000]).SerializeToString() + _graph([2, 1000], name="other").SerializeToString())
    assert [o.name for o in graph_outputs(path)] == [o.name for o in onnx.load(str(path)).graph.output]
    assert len(graph_outputs(path)) == 2


def _stripped(model: onnx.ModelProto) -> onnx.ModelProto:
    from gpuxbuild.build.convert import _strip

    stripped = onnx.ModelProto.FromString(model.SerializeToString())
    _strip(stripped)
    return stripped


def _rich_graph() -> onnx.ModelProto:
    """Fields before and after the initializers in the graph and the model, doc strings and metadata to strip, and
    a large weight (a multi-byte length prefix) among small ones."""
    model = _graph(["batch_size", 300_000], weights=300_000)
    model.graph.initializer.append(numpy_helper.from_array(np.arange(3, dtype=np.int64), "shape"))
    model.graph.value_info.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch_size", 300_000]))
    model.graph.doc_string = "graph doc"
    model.doc_string = "/home/someone/model.py"
    model.graph.node[0].doc_string = "node doc"
    helper.set_model_props(model, {"source": "/tmp/x"})
    return model


@pytest.mark.parametrize("build", [_rich_graph, lambda: _graph([1, 1000])])
def test_a_graph_completed_with_the_original_initializers_is_its_serialization_to_the_byte(build):
    original = build().SerializeToString()
    model = _stripped(onnx.ModelProto.FromString(original))
    expected = model.SerializeToString()
    names = [t.name for t in model.graph.initializer]
    del model.graph.initializer[:]
    assert with_initializers(model.SerializeToString(), original, names) == expected


def test_a_graph_that_dropped_initializers_gets_back_only_the_ones_it_kept():
    original = _rich_graph().SerializeToString()
    model = _stripped(onnx.ModelProto.FromString(original))
    model.graph.initializer.pop(1)  # "one", between W and shape: as optimum drops a tied weight
    expected = model.SerializeToString()
    names = [t.name for t in model.graph.initializer]
    del model.graph.initializer[:]
    assert names == ["W", "shape"]
    assert with_initializers(model.SerializeToString(), original, names) == expected


def test_completing_a_graph_refuses_what_is_not_a_graph_without_initializers():
    original = _rich_graph().SerializeToString()
    head = _stripped(onnx.ModelProto.FromString(original))
    names = [t.name for t in head.graph.initializer]
    with pytest.raises(ValueError, match="has initializers"):
        with_initializers(head.SerializeToString(), original, names)
    del head.graph.initializer[:]
    with pytest.raises(ValueError, match="'other' is not in the original graph"):
        with_initializers(head.SerializeToString(), original, ["W", "other"])
    with pytest.raises(ValueError, match="not in its order"):
        with_initializers(head.SerializeToString(), original, ["one", "W"])
    with pytest.raises(ValueError, match="2 graph fields"):
        with_initializers(head.SerializeToString(), original + original, names)
    with pytest.raises(ValueError):
        with_initializers(head.SerializeToString()[:-3], original, names)


@pytest.mark.parametrize("data", [b"", b"\x3a\xff\xff\xff\x0f", b"\x08"])
def test_empty_or_truncated_files_are_value_errors(tmp_path, data):
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    with pytest.raises(ValueError):
        graph_outputs(path)


@pytest.mark.parametrize(
    "dims, declared",
    [
        (["batch_size", "sequence_length", 1000], True),  # numbers and the config's dynamic axes: nothing to fix
        ([1, 1000], True),
        (["batch_size", "Addlogits_dim_1"], False),  # a name the config does not know: optimum's fix decides
        (["batch_size", None], False),  # an unknown dimension: onnxruntime may name it
        (None, False),  # no shape at all
    ],
)
def test_optimums_dynamic_axes_fix_runs_unless_every_output_dimension_is_declared(tmp_path, dims, declared):
    path = tmp_path / "model.onnx"
    onnx.save(_graph(dims), str(path))
    assert _outputs_declared(ExportedGraphs(tmp_path), path, {"batch_size", "sequence_length"}) is declared


def test_an_unreadable_graph_goes_to_optimums_fix(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08")
    exported = ExportedGraphs(tmp_path)
    assert _outputs_declared(exported, tmp_path / "model.onnx", {"batch_size"}) is False
    assert _outputs_declared(exported, tmp_path / "missing.onnx", {"batch_size"}) is False
