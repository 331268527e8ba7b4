"""Pre-exported ONNX repos: variant discovery, file selection, placement under canonical names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpuxbuild.build.onnx_files import place_onnx
from gpuxbuild.errors import GpuxError
from gpuxbuild.project.shipped_onnx import find_onnx_variants, select_onnx_files

TRANSFORMERS_JS = [
    "config.json",
    "tokenizer.json",
    "onnx/model.onnx",
    "onnx/model.onnx_data",
    "onnx/model_quantized.onnx",
    "onnx/model_fp16.onnx",
    "onnx/model_fp16.onnx_data",
    "onnx/model_int8.onnx",
    "onnx/model_uint8.onnx",
    "onnx/model_q4.onnx",
    "onnx/model_q4f16.onnx",
    "onnx/model_bnb4.onnx",
]

SEQ2SEQ = [
    "onnx/encoder_model.onnx",
    "onnx/decoder_model.onnx",
    "onnx/decoder_with_past_model.onnx",
    "onnx/decoder_model_merged.onnx",
    "onnx/encoder_model_quantized.onnx",
    "onnx/decoder_model_merged_quantized.onnx",
    "onnx/decoder_model_merged_quantized.onnx.data",
    # an fp16 encoder without its merged decoder is not a usable variant
    "onnx/encoder_model_fp16.onnx",
    "onnx/decoder_model_fp16.onnx",
]


def test_transformers_js_variants():
    variants = find_onnx_variants(TRANSFORMERS_JS)
    assert list(variants) == ["bnb4", "default", "fp16", "int8", "q4", "q4f16", "quantized", "uint8"]
    assert variants["default"] == {"model": "onnx/model.onnx"}
    assert variants["q4f16"] == {"model": "onnx/model_q4f16.onnx"}


def test_seq2seq_variants_need_encoder_and_merged_decoder():
    variants = find_onnx_variants(SEQ2SEQ)
    assert variants == {
        "default": {"encoder": "onnx/encoder_model.onnx", "decoder": "onnx/decoder_model_merged.onnx"},
        "quantized": {
            "encoder": "onnx/encoder_model_quantized.onnx",
            "decoder": "onnx/decoder_model_merged_quantized.onnx",
        },
    }


def test_decoder_only_merged_graph_is_the_model():
    paths = ["onnx/decoder_model.onnx", "onnx/decoder_model_merged.onnx", "onnx/decoder_with_past_model.onnx"]
    assert find_onnx_variants(paths) == {"default": {"model": "onnx/decoder_model_merged.onnx"}}


def test_root_wins_over_onnx_folder_and_other_folders_are_ignored():
    paths = ["model.onnx", "onnx/model.onnx", "onnx/model_quantized.onnx", "openvino/model.onnx", "x/onnx/model.onnx"]
    assert find_onnx_variants(paths) == {
        "default": {"model": "model.onnx"},
        "quantized": {"model": "onnx/model_quantized.onnx"},
    }


def test_select_includes_external_data_of_that_variant_only():
    paths = [*TRANSFORMERS_JS, "onnx/model.onnx_data_1", "onnx/model.onnx.data"]
    assert select_onnx_files(paths, None) == [
        "onnx/model.onnx",
        "onnx/model.onnx.data",
        "onnx/model.onnx_data",
        "onnx/model.onnx_data_1",
    ]
    assert select_onnx_files(paths, "fp16") == ["onnx/model_fp16.onnx", "onnx/model_fp16.onnx_data"]
    assert select_onnx_files(SEQ2SEQ, "quantized") == [
        "onnx/decoder_model_merged_quantized.onnx",
        "onnx/decoder_model_merged_quantized.onnx.data",
        "onnx/encoder_model_quantized.onnx",
    ]


def test_select_missing_variant_lists_available():
    with pytest.raises(GpuxError) as err:
        select_onnx_files(SEQ2SEQ, "fp16", repo="Xenova/t5-small")
    assert "Xenova/t5-small" in str(err.value)
    assert "available: default, quantized" in str(err.value)
    assert err.value.hint


def test_select_without_onnx_files():
    with pytest.raises(GpuxError, match="no usable ONNX graphs"):
        select_onnx_files(["config.json", "model.safetensors", "onnx/decoder_model.onnx"], None)


# --- placement, on real (tiny) graphs -----------------------------------------------------------


def _add_graph(weight: np.ndarray, name: str = "g") -> onnx.ModelProto:
    """y = float(input_ids) + w: small enough to check numerically, with one initializer."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input_ids"], ["x"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["x", "w"], ["logits"]),
        ],
        name,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", len(weight)])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", len(weight)])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")


def _if_graph(weight: np.ndarray) -> onnx.ModelProto:
    """A merged-decoder-like graph: the weight lives in an If branch (a subgraph initializer)."""

    def branch(name: str, scale: float) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("Mul", ["w_" + name, "s_" + name], ["out_" + name])],
            name,
            [],
            [helper.make_tensor_value_info("out_" + name, TensorProto.FLOAT, [len(weight)])],
            [numpy_helper.from_array(weight, "w_" + name), numpy_helper.from_array(np.float32(scale), "s_" + name)],
        )

    graph = helper.make_graph(
        [
            helper.make_node(
                "If", ["use_cache_branch"], ["b"], then_branch=branch("then", 1.0), else_branch=branch("else", 2.0)
            ),
            helper.make_node("Cast", ["input_ids"], ["x"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["x", "b"], ["logits"]),
        ],
        "decoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", len(weight)]),
            helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", len(weight)])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")


def _save(model: onnx.ModelProto, path: Path, data: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        onnx.save(model, str(path))
    else:
        onnx.save(
            model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data, size_threshold=0
        )


def _locations(path: Path) -> set[str]:
    from gpuxbuild.build.onnx_files import _all_tensors

    model = onnx.load(str(path), load_external_data=False)
    return {e.value for t in _all_tensors(model.graph) for e in t.external_data if e.key == "location"}


def _run(path: Path, **feeds: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], feeds)[0]


W = np.arange(4, dtype=np.float32) / 4
IDS = np.array([[1, 2, 3, 4]], dtype=np.int64)


def test_place_renames_graph_and_external_data(tmp_path):
    repo = tmp_path / "repo"
    _save(_add_graph(W), repo / "onnx" / "model.onnx")
    _save(_add_graph(W * 3), repo / "onnx" / "model_fp16.onnx", data="model_fp16.onnx_data")
    (repo / "config.json").write_text("{}")

    graphs = place_onnx(repo, tmp_path / "a", "fp16")
    assert graphs == {"model": "model.onnx"}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["model.onnx", "model.onnx_data"]
    assert _locations(tmp_path / "a" / "model.onnx") == {"model.onnx_data"}
    np.testing.assert_allclose(_run(tmp_path / "a" / "model.onnx", input_ids=IDS), IDS + W * 3)

    # Same input, same bytes, wherever the source lies.
    copy = tmp_path / "elsewhere"
    subprocess.run(["cp", "-r", str(repo), str(copy)], check=True)
    place_onnx(copy, tmp_path / "b", "fp16")
    for name in ("model.onnx", "model.onnx_data"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_place_keeps_bytes_when_names_are_already_canonical(tmp_path):
    repo = tmp_path / "repo"
    _save(_add_graph(W), repo / "model.onnx", data="model.onnx_data")
    assert place_onnx(repo, tmp_path / "out", None) == {"model": "model.onnx"}
    for name in ("model.onnx", "model.onnx_data"):
        assert (tmp_path / "out" / name).read_bytes() == (repo / name).read_bytes()


def test_place_seq2seq_rewrites_subgraph_references(tmp_path):
    repo = tmp_path / "repo" / "onnx"
    _save(_add_graph(W, "encoder"), repo / "encoder_model_quantized.onnx")
    _save(_if_graph(W), repo / "decoder_model_merged_quantized.onnx", data="decoder_model_merged_quantized.onnx.data")
    out = tmp_path / "out"
    assert place_onnx(repo.parent, out, "quantized") == {
        "decoder": "decoder_model_merged.onnx",
        "encoder": "encoder_model.onnx",
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "decoder_model_merged.onnx",
        "decoder_model_merged.onnx_data",
        "encoder_model.onnx",
    ]
    assert _locations(out / "decoder_model_merged.onnx") == {"decoder_model_merged.onnx_data"}
    for flag, scale in ((True, 1.0), (False, 2.0)):
        got = _run(out / "decoder_model_merged.onnx", input_ids=IDS, use_cache_branch=np.array([flag]))
        np.testing.assert_allclose(got, IDS + W * scale)


def test_place_several_external_files_get_numbered_names(tmp_path):
    repo = tmp_path / "repo"
    model = _if_graph(W)
    # Put each branch's tensors into its own file, as chunked exports do.
    from gpuxbuild.build.onnx_files import _all_tensors

    for tensor in _all_tensors(model.graph):
        onnx.external_data_helper.set_external_data(
            tensor, "chunk_b.bin" if tensor.name.endswith("else") else "chunk_a.bin"
        )
    _save_with_own_locations(model, repo / "model.onnx")
    out = tmp_path / "out"
    place_onnx(repo, out, None)
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.onnx_data", "model.onnx_data_1"]
    assert (out / "model.onnx_data").read_bytes() == (repo / "chunk_a.bin").read_bytes()
    assert (out / "model.onnx_data_1").read_bytes() == (repo / "chunk_b.bin").read_bytes()
    got = _run(out / "model.onnx", input_ids=IDS, use_cache_branch=np.array([False]))
    np.testing.assert_allclose(got, IDS + W * 2)


def _save_with_own_locations(model: onnx.ModelProto, path: Path) -> None:
    """Write tensors to the external files their set_external_data locations name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.external_data_helper.write_external_data_tensors(model, str(path.parent))
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd"])
def test_place_refuses_external_data_outside_the_repo(tmp_path, location):
    repo = tmp_path / "repo"
    model = _add_graph(W)
    _save(model, repo / "model.onnx", data="model.onnx_data")
    model = onnx.load(str(repo / "model.onnx"), load_external_data=False)
    for e in model.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = location
    (repo / "model.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(GpuxError, match="outside the repo"):
        place_onnx(repo, tmp_path / "out", None)


def test_place_missing_external_data(tmp_path):
    repo = tmp_path / "repo"
    _save(_add_graph(W), repo / "model.onnx", data="model.onnx_data")
    (repo / "model.onnx_data").unlink()
    with pytest.raises(GpuxError, match=r"needs external data file model\.onnx_data"):
        place_onnx(repo, tmp_path / "out", None)


def test_place_unreadable_graph(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "model.onnx").write_bytes(b"not a protobuf \xff\xff")
    with pytest.raises(GpuxError, match="not a readable ONNX graph"):
        place_onnx(tmp_path / "repo", tmp_path / "out", None)


def test_module_does_not_import_torch():
    code = "import sys, gpuxbuild.build.onnx_files; assert 'torch' not in sys.modules"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_one_graph_under_another_name_is_the_model():
    """The ONNX Model Zoo names its one graph after the model; two such graphs are ambiguous."""
    from gpuxbuild.project.shipped_onnx import find_onnx_variants

    assert find_onnx_variants(["README.md", "resnet50_Opset17.onnx"]) == {"default": {"model": "resnet50_Opset17.onnx"}}
    assert find_onnx_variants(["onnx/bert_Opset17.onnx"]) == {"default": {"model": "onnx/bert_Opset17.onnx"}}
    assert find_onnx_variants(["a_Opset17.onnx", "b_Opset17.onnx"]) == {}
    assert find_onnx_variants(["deep/x.onnx"]) == {}
    assert find_onnx_variants(["onnx/decoder_model.onnx"]) == find_onnx_variants(["vision_model.onnx"]) == {}
    assert find_onnx_variants(["model.onnx", "other.onnx"]) == {"default": {"model": "model.onnx"}}
