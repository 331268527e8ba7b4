"""The generated gpux.yml: schema, determinism, fields, and acceptance by the real GPUX 0.1.1 parser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
import yaml
from gpux_runtime import inspect_with_gpux_runtime, load_with_gpux_runtime
from onnx import TensorProto, helper, numpy_helper

from gpuxbuild.build.gpuxyml import gpux_schema, render_gpux_yml, validate_gpux_yml
from gpuxbuild.errors import GpuxError

SOURCE = {"registry": "huggingface", "repo": "test-org/tiny-bert", "commit": "0123456789abcdef0123456789abcdef01234567"}
BATCH_SEQ = ["batch_size", "sequence_length"]
OPSET = [helper.make_opsetid("", 17)]


def _int64(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.INT64, dims)


def _float(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _const(name: str, value) -> onnx.TensorProto:
    import numpy as np

    array = np.asarray(value)
    return numpy_helper.from_array(array.astype(np.float32 if array.dtype.kind == "f" else np.int64), name)


def bert_classifier(num_labels: int = 2) -> onnx.ModelProto:
    """The interface of an optimum text-classification export of BERT, with a trivial body ORT can load."""
    names = ["input_ids", "attention_mask", "token_type_ids"]
    nodes = [
        helper.make_node("Add", ["input_ids", "attention_mask"], ["s1"]),
        helper.make_node("Add", ["s1", "token_type_ids"], ["s2"]),
        helper.make_node("Cast", ["s2"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f", "axis1"], ["r"], keepdims=1),
        helper.make_node("MatMul", ["r", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bert",
        [_int64(n, BATCH_SEQ) for n in names],
        [_float("logits", ["batch_size", num_labels])],
        [_const("axis1", [1]), _const("w", [[0.5] * num_labels])],
    )
    return helper.make_model(graph, opset_imports=OPSET)


def _embed(ids: str, out: str, width: int) -> list[onnx.NodeProto]:
    """[batch, seq] int64 -> [batch, seq, width] float."""
    return [
        helper.make_node("Cast", [ids], [out + "_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", [out + "_f", "last"], [out + "_u"]),
        helper.make_node("Mul", [out + "_u", f"w{width}"], [out]),
    ]


def _consts(width: int) -> list[onnx.TensorProto]:
    return [_const("last", [-1]), _const(f"w{width}", [0.25] * width)]


def t5_encoder() -> onnx.ModelProto:
    dims = ["batch_size", "encoder_sequence_length"]
    nodes = [helper.make_node("Add", ["input_ids", "attention_mask"], ["ids"]), *_embed("ids", "last_hidden_state", 4)]
    graph = helper.make_graph(
        nodes,
        "encoder",
        [_int64("input_ids", dims), _int64("attention_mask", dims)],
        [_float("last_hidden_state", [*dims, 4])],
        _consts(4),
    )
    return helper.make_model(graph, opset_imports=OPSET)


def causal_lm_with_past(layers: int = 2) -> onnx.ModelProto:
    """The interface of an optimum text-generation-with-past export (model.onnx with KV cache)."""
    past = ["batch_size", 2, "past_sequence_length", 4]
    present = ["batch_size", 2, "past_sequence_length + sequence_length", 4]
    inputs = [
        _int64("input_ids", BATCH_SEQ),
        _int64("attention_mask", ["batch_size", "past_sequence_length + sequence_length"]),
        _int64("position_ids", BATCH_SEQ),
    ]
    outputs = [_float("logits", ["batch_size", "sequence_length", 10])]
    nodes = [helper.make_node("Add", ["input_ids", "position_ids"], ["ids"]), *_embed("ids", "logits", 10)]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs.append(_float(f"past_key_values.{i}.{kind}", past))
            outputs.append(_float(f"present.{i}.{kind}", present))
            nodes.append(helper.make_node("Identity", [f"past_key_values.{i}.{kind}"], [f"present.{i}.{kind}"]))
    graph = helper.make_graph(nodes, "lm", inputs, outputs, _consts(10))
    return helper.make_model(graph, opset_imports=OPSET)


def _artifact(folder: Path, graphs: dict[str, onnx.ModelProto], tokenizer_config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in graphs.items():
        onnx.checker.check_model(model)
        onnx.save(model, str(folder / name))
    (folder / "tokenizer.json").write_text("{}\n")
    if tokenizer_config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return folder


def _render(folder: Path, **overrides) -> str:
    args = {
        "name": "tiny-bert",
        "task": "text-classification",
        "graphs": {"model": "model.onnx"},
        "artifact_dir": folder,
        "config": {"id2label": {"1": "POSITIVE", "0": "NEGATIVE"}, "max_position_embeddings": 128},
        "runtime": {},
        "source": SOURCE,
        "format_version": 1,
    }
    return render_gpux_yml(**(args | overrides))


def _write(folder: Path, text: str) -> Path:
    (folder / "gpux.yml").write_text(text)
    return folder / "gpux.yml"


@pytest.fixture
def bert_dir(tmp_path) -> Path:
    return _artifact(tmp_path / "bert", {"model.onnx": bert_classifier()})


def test_bert_classifier_fields(bert_dir):
    text = _render(bert_dir)
    validate_gpux_yml(text)
    doc = yaml.safe_load(text)
    assert doc["model"] == {"source": "model.onnx", "format": "onnx"}
    assert doc["inputs"] == [
        {"name": n, "type": "int64", "shape": [-1, -1], "required": True}
        for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    assert doc["outputs"] == [
        {"name": "logits", "type": "float32", "shape": [-1, 2], "labels": ["NEGATIVE", "POSITIVE"]}
    ]
    assert doc["preprocessing"] == {"tokenizer": "tokenizer.json", "max_length": 128}
    assert doc["runtime"]["gpu"] == {"memory": "2GB", "backend": "auto"}
    assert list(doc["serving"]) == ["host", "port", "batch_size", "timeout", "max_workers"]
    meta = doc["metadata"]["gpuxbuild"]
    assert meta["source"] == SOURCE and meta["task"] == "text-classification" and meta["format"] == 1
    assert meta["graphs"] == {"model": "model.onnx"}
    assert meta["axes"]["input_ids"] == BATCH_SEQ
    assert meta["axes"]["logits"] == ["batch_size", 2]
    assert doc["version"] == SOURCE["commit"][:12]


def test_output_is_byte_deterministic_and_free_of_paths(tmp_path, bert_dir):
    text = _render(bert_dir)
    other = shutil.copytree(bert_dir, tmp_path / "somewhere" / "else")
    assert _render(other) == text
    assert str(tmp_path) not in text
    # Key order is fixed: the document starts the way the GPUX README's examples do.
    assert list(yaml.safe_load(text))[:5] == ["name", "version", "description", "model", "inputs"]


def test_loads_with_gpux_runtime_and_matches_its_view_of_the_graph(bert_dir):
    text = _render(bert_dir)
    seen = load_with_gpux_runtime(_write(bert_dir, text))
    ours = yaml.safe_load(text)
    assert seen["name"] == "tiny-bert"
    assert seen["model"]["source"] == "model.onnx"
    for key in ("inputs", "outputs"):
        assert [{k: v for k, v in item.items() if v is not None} for item in seen[key]] == ours[key]
    assert seen["runtime"] == ours["runtime"]
    assert seen["serving"] == ours["serving"]
    assert seen["preprocessing"]["tokenizer"] == "tokenizer.json"
    assert seen["metadata"] == ours["metadata"]
    _assert_runtime_inspection_matches(bert_dir / "model.onnx", ours)


def _assert_runtime_inspection_matches(model: Path, ours: dict) -> None:
    """GPUX's ModelInspector (onnxruntime) sees the same names, dtypes and axes as the gpux.yml."""
    inspected = inspect_with_gpux_runtime(model)
    axes = ours["metadata"]["gpuxbuild"]["axes"]
    for key in ("inputs", "outputs"):
        assert [(i["name"], i["type"], i["shape"]) for i in inspected[key]] == [
            (o["name"], o["type"], axes[o["name"]]) for o in ours[key]
        ]


def test_seq2seq_main_graph_is_the_encoder(tmp_path):
    folder = _artifact(
        tmp_path / "t5",
        {"encoder_model.onnx": t5_encoder(), "decoder_model_merged.onnx": causal_lm_with_past()},
        tokenizer_config={"model_max_length": 512},
    )
    graphs = {"encoder": "encoder_model.onnx", "decoder": "decoder_model_merged.onnx"}
    text = _render(folder, task="text2text-generation", graphs=graphs, config={"id2label": {"0": "LABEL_0"}})
    doc = yaml.safe_load(text)
    assert doc["model"]["source"] == "encoder_model.onnx"
    assert doc["metadata"]["gpuxbuild"]["graphs"] == {
        "decoder": "decoder_model_merged.onnx",
        "encoder": "encoder_model.onnx",
    }
    assert doc["outputs"] == [{"name": "last_hidden_state", "type": "float32", "shape": [-1, -1, 4]}]
    assert doc["preprocessing"]["max_length"] == 512
    seen = load_with_gpux_runtime(_write(folder, text))
    assert [i["name"] for i in seen["inputs"]] == ["input_ids", "attention_mask"]
    _assert_runtime_inspection_matches(folder / "encoder_model.onnx", doc)


def test_decoder_only_with_past(tmp_path):
    folder = _artifact(tmp_path / "lm", {"model.onnx": causal_lm_with_past()})
    text = _render(folder, task="text-generation-with-past", config={"n_positions": 64, "id2label": {"0": "LABEL_0"}})
    doc = yaml.safe_load(text)
    assert [i["name"] for i in doc["inputs"]][:4] == [
        "input_ids",
        "attention_mask",
        "position_ids",
        "past_key_values.0.key",
    ]
    assert doc["inputs"][3] == {
        "name": "past_key_values.0.key",
        "type": "float32",
        "shape": [-1, 2, -1, 4],
        "required": True,
    }
    assert "labels" not in doc["outputs"][0]  # a placeholder id2label is not a classifier's
    assert doc["metadata"]["gpuxbuild"]["axes"]["present.1.value"] == [
        "batch_size",
        2,
        "past_sequence_length + sequence_length",
        4,
    ]
    assert doc["preprocessing"]["max_length"] == 64
    seen = load_with_gpux_runtime(_write(folder, text))
    assert len(seen["inputs"]) == 7 and len(seen["outputs"]) == 5
    _assert_runtime_inspection_matches(folder / "model.onnx", doc)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["bad", "good"], ["bad", "good"]),
        ({1: "yes", 0: "no"}, ["no", "yes"]),
        ({"0": "null", "1": "1"}, ["null", "1"]),
    ],
)
def test_manifest_labels_override_config(bert_dir, labels, expected):
    text = _render(bert_dir, runtime={"labels": labels})
    assert yaml.safe_load(text)["outputs"][0]["labels"] == expected
    assert load_with_gpux_runtime(_write(bert_dir, text))["outputs"][0]["labels"] == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"runtime": {"labels": ["a", "b", "c"]}}, r"3 labels \(runtime.labels\) but the logits output has 2 classes"),
        ({"runtime": {"labels": {"0": "a", "2": "b"}}}, "ids are not 0..1"),
        ({"runtime": {"labels": {"x": "a"}}}, "non-integer id"),
        ({"config": {"id2label": {"0": "a", "1": "b", "2": "c"}}}, "config.json id2label"),
        ({"runtime": {"gpu": {"backend": "tpu"}}}, "runtime/gpu/backend"),
        ({"runtime": {"gpu": {"memory": "lots"}}}, "runtime.gpu.memory 'lots' is not a size"),
        ({"runtime": {"batch_size": 0}}, "runtime/batch_size"),
        ({"graphs": {"model": "missing.onnx"}}, "missing.onnx is missing"),
        ({"graphs": {"vision": "model.onnx"}}, "unknown graph roles"),
    ],
)
def test_user_errors(bert_dir, overrides, message):
    with pytest.raises(GpuxError, match=message) as err:
        _render(bert_dir, **overrides)
    assert err.value.hint


def test_labels_on_a_graph_without_logits(tmp_path):
    folder = _artifact(tmp_path / "enc", {"model.onnx": t5_encoder()})
    with pytest.raises(GpuxError, match="no logits output"):
        _render(folder, task="feature-extraction", runtime={"labels": ["a"]})
    assert "labels" not in yaml.safe_load(_render(folder, task="feature-extraction"))["outputs"][0]


def test_runtime_hints(bert_dir):
    hints = {"gpu": {"memory": " 4gb", "backend": "tensorrt"}, "batch_size": 8, "max_length": 32}
    text = _render(bert_dir, runtime=hints)
    doc = yaml.safe_load(text)
    assert doc["runtime"] == {
        "gpu": {"memory": "4GB", "backend": "tensorrt"},
        "timeout": 30,
        "batch_size": 8,
        "enable_profiling": False,
    }
    assert doc["serving"] == {"host": "127.0.0.1", "port": 8080, "batch_size": 8, "timeout": 5, "max_workers": 4}
    assert doc["preprocessing"]["max_length"] == 32
    assert load_with_gpux_runtime(_write(bert_dir, text))["runtime"]["gpu"] == doc["runtime"]["gpu"]


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("2GB", "2GB"),
        ("512 MB", "512MB"),
        ("1.5GiB", "1.5GB"),
        ("1TB", "1024GB"),
        ("0.5TiB", "512GB"),
        ("100B", "1KB"),
        ("64kib", "64KB"),
    ],
)
def test_memory_sizes_become_what_gpux_parses(bert_dir, memory, expected):
    text = _render(bert_dir, runtime={"gpu": {"memory": memory}})
    assert yaml.safe_load(text)["runtime"]["gpu"] == {"memory": expected, "backend": "auto"}


@pytest.mark.parametrize(
    ("tokenizer_config", "config", "expected"),
    [
        ({"model_max_length": 256}, {"max_position_embeddings": 512}, 256),
        ({"model_max_length": 1000000000000000019884624838656}, {"max_position_embeddings": 512}, 512),
        (None, {"n_positions": 1024}, 1024),
        (None, {}, None),
    ],
)
def test_max_length_sources(tmp_path, tokenizer_config, config, expected):
    folder = _artifact(tmp_path / "m", {"model.onnx": t5_encoder()}, tokenizer_config=tokenizer_config)
    doc = yaml.safe_load(_render(folder, task="feature-extraction", config=config))
    assert doc["preprocessing"].get("max_length") == expected


def test_no_tokenizer_no_preprocessing(tmp_path):
    folder = tmp_path / "vision"
    folder.mkdir()
    onnx.save(t5_encoder(), str(folder / "model.onnx"))
    assert "preprocessing" not in yaml.safe_load(_render(folder, task="feature-extraction", config={}))


def test_graph_io_skips_weight_inputs_and_keeps_unknown_shapes(tmp_path):
    """Old exporters list initializers as inputs; outputs may have no shape or unnamed dynamic dims."""
    from gpuxbuild.build.gpuxyml import read_graph_io

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"]), helper.make_node("Identity", ["y"], ["z"])],
        "old",
        [_float("x", [None, 3]), _float("w", [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None), _float("z", [None, 3])],
        [_const("w", [1.0, 2.0, 3.0])],
    )
    onnx.save(helper.make_model(graph, opset_imports=OPSET), str(tmp_path / "m.onnx"))
    inputs, outputs, axes = read_graph_io(tmp_path / "m.onnx")
    assert inputs == [{"name": "x", "type": "float32", "shape": [-1, 3], "required": True}]
    assert outputs == [{"name": "y", "type": "float32"}, {"name": "z", "type": "float32", "shape": [-1, 3]}]
    assert axes == {"x": [None, 3], "z": [None, 3]}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("model", "source"), "/abs/model.onnx"),
        (("model", "source"), "../model.onnx"),
        (("model", "source"), "C:/model.onnx"),
        (("inputs", 0, "shape"), ["batch_size", -1]),
        (("inputs", 0, "shape"), [None, -1]),
        (("version",), 1.0),
        (("unknown",), 1),
    ],
)
def test_schema_rejects_what_gpux_or_reproducibility_would_not_take(bert_dir, path, value):
    doc = yaml.safe_load(_render(bert_dir))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(GpuxError, match=r"gpux\.yml field"):
        validate_gpux_yml(yaml.safe_dump(doc))


def test_schema_is_draft_2020_12():
    import jsonschema

    schema = gpux_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_invalid_yaml_is_a_user_error():
    with pytest.raises(GpuxError, match="not valid YAML"):
        validate_gpux_yml("name: [unclosed")


@pytest.mark.slow
@pytest.mark.parametrize("variant", [None, "quantized", "fp16"])
def test_shipped_onnx_variants_end_to_end(tmp_path, variant):
    """A transformers.js-style repo (real tiny BERT graphs): place a variant, generate, load with GPUX."""
    import tinymodels

    from gpuxbuild.build.onnx_files import place_onnx

    repo = tinymodels.repo_dir("onnx-shipped")
    out = tmp_path / "artifact"
    graphs = place_onnx(repo, out, variant)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(repo / name, out / name)
    config = json.loads((repo / "config.json").read_text())
    text = render_gpux_yml(
        name="shipped",
        task="text-classification",
        graphs=graphs,
        artifact_dir=out,
        config=config,
        runtime={},
        source=SOURCE,
        format_version=1,
    )
    doc = yaml.safe_load(text)
    assert doc["outputs"][0]["labels"] == ["NEGATIVE", "POSITIVE"]
    assert load_with_gpux_runtime(_write(out, text))["model"]["source"] == "model.onnx"
    _assert_runtime_inspection_matches(out / "model.onnx", doc)


@pytest.mark.convert
@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "task", "roles"),
    [
        ("bert", "text-classification", {"model"}),
        ("gpt2", "text-generation-with-past", {"model"}),
        ("t5", "text2text-generation-with-past", {"encoder", "decoder"}),
    ],
)
def test_optimum_export_end_to_end(tmp_path, kind, task, roles):
    """Real optimum exports of tiny models: placed like a repo that ships ONNX, then gpux.yml vs the graph GPUX loads."""
    import tinymodels
    from optimum.exporters.onnx import main_export

    from gpuxbuild.build.onnx_files import place_onnx

    repo = tinymodels.repo_dir(kind)
    export, out = tmp_path / "export", tmp_path / "artifact"
    main_export(str(repo), output=export, task=task, do_validation=False)
    graphs = place_onnx(export, out, None)
    assert set(graphs) == roles
    shutil.copy(export / "tokenizer.json", out / "tokenizer.json")
    config = json.loads((export / "config.json").read_text())
    text = render_gpux_yml(
        name=kind,
        task=task,
        graphs=graphs,
        artifact_dir=out,
        config=config,
        runtime={},
        source=SOURCE,
        format_version=1,
    )
    doc = yaml.safe_load(text)
    assert doc["inputs"][0] == {"name": "input_ids", "type": "int64", "shape": [-1, -1], "required": True}
    if kind == "bert":
        assert doc["outputs"] == [
            {"name": "logits", "type": "float32", "shape": [-1, 2], "labels": ["NEGATIVE", "POSITIVE"]}
        ]
    assert load_with_gpux_runtime(_write(out, text))["model"]["source"] == graphs.get("model", "encoder_model.onnx")
    _assert_runtime_inspection_matches(out / doc["model"]["source"], doc)


def test_old_image_processor_configs_give_the_crop_as_resize(tmp_path):
    from tinymodels import OPENAI_CLIP_PREPROCESSOR

    folder = tmp_path / "clip"
    folder.mkdir()
    onnx.save(t5_encoder(), str(folder / "model.onnx"))
    (folder / "preprocessor_config.json").write_text(json.dumps(OPENAI_CLIP_PREPROCESSOR))
    doc = yaml.safe_load(_render(folder, task="zero-shot-image-classification", config={}))
    assert doc["preprocessing"]["resize"] == [224, 224] and doc["preprocessing"]["normalize"] == "clip"
    assert doc["preprocessing"]["custom"]["resample"] == "bicubic"
