"""The generated ``gpux.yml``: the GPUX runtime 0.1.1 config of a built artifact.

Everything comes from the artifact folder (the ONNX graphs, config.json, tokenizer files)
and from the manifest's runtime hints, so the text is a pure function of the build:
fixed key order, no timestamps, no absolute paths.
"""

from __future__ import annotations

import copy
import json
import re
from decimal import ROUND_CEILING, Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gpuxbuild.errors import GpuxError
from gpuxbuild.preprocessor import PREPROCESSOR_CONFIG
from gpuxbuild.schemas_io import schema_validator

# Which graph the GPUX runtime runs (model.source) when an artifact has several.
MAIN_GRAPH_ROLES = ("model", "encoder", "decoder")
# A graph's gpux.yml inputs, outputs, and the named axes of each (graph_io).
GraphIO = tuple[list[dict], list[dict], dict[str, list]]

# Tasks whose "logits" output scores the classes of config.json's id2label.
CLASSIFICATION_TASKS = frozenset(
    {
        "text-classification",
        "token-classification",
        "zero-shot-classification",
        "image-classification",
        "audio-classification",
        "audio-frame-classification",
    }
)
LABELLED_OUTPUT = "logits"

DEFAULT_GPU = {"memory": "2GB", "backend": "auto"}
DEFAULT_TIMEOUT = 30
# GPUX binds 0.0.0.0 by default; a generated config should not expose a model to the network.
# batch_size is added from the runtime hints.
DEFAULT_SERVING = {"host": "127.0.0.1", "port": 8080, "timeout": 5, "max_workers": 4}
_MEMORY = re.compile(r"^(?P<number>[0-9]+(\.[0-9]+)?)\s*(?:(?P<unit>[KMGT])I?)?B$")

# The image processor's or feature extractor's config, kept in the artifact; `gpux run` preprocesses by it.
PREPROCESSOR_CONFIG_KEY = "preprocessor_config"
_MEDIA_FIELDS = (
    "image_processor_type",
    "feature_extractor_type",
    "size",
    "crop_size",
    "crop_pct",
    "resample",
    "rescale_factor",
    "image_mean",
    "image_std",
    "sampling_rate",
    "num_mel_bins",
    "max_length",
    "mean",
    "std",
)
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_NORMALIZE_NAMES = {
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    "inception": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    "clip": ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]),
}

# transformers writes int(1e30) as model_max_length when a tokenizer has no limit.
_SANE_MAX_LENGTH = 1_000_000

_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}


@lru_cache(maxsize=1)
def gpux_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the gpux.yml that gpuxbuild generates."""
    text = resources.files("gpuxbuild").joinpath("schemas", "gpux.schema.json").read_text("utf-8")
    return json.loads(text)


def validate_gpux_yml(text: str) -> None:
    """Check gpux.yml text against ``schemas/gpux.schema.json``; raise GpuxError on the first problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GpuxError(
            f"gpux.yml is not valid YAML: {exc}".splitlines()[0],
            "regenerate it with gpux build",
        ) from exc
    validator = schema_validator(gpux_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise GpuxError(
            f"gpux.yml field {where}: {err.message}",
            "check the model's runtime hints in gpux.models.yml (labels, max_length, gpu, serving)",
        )


def render_gpux_yml(
    *,
    name: str,
    task: str,
    graphs: dict[str, str],
    artifact_dir: Path,
    config: dict[str, Any],
    runtime: dict[str, Any],
    source: dict[str, str],
    format_version: int,
    io: dict[str, GraphIO] | None = None,
) -> str:
    """Return the gpux.yml text for the artifact in ``artifact_dir``, validated against the schema.

    ``graphs`` maps graph roles (model / encoder / decoder) to files in ``artifact_dir``;
    ``config`` is the model's config.json; ``runtime`` holds the manifest's runtime hints
    (labels, max_length, gpu {memory, backend}, batch_size); ``io`` is ``graph_io`` of graph files
    (by file name) as the exporter already read them, so the graph need not be parsed again.
    """
    artifact_dir = Path(artifact_dir)
    main_role = _main_role(name, graphs)
    main_file = graphs[main_role]
    known = (io or {}).get(main_file)
    inputs, outputs, axes = copy.deepcopy(known) if known else read_graph_io(artifact_dir / main_file)
    for item in inputs + outputs:
        if "shape" in item:
            item["shape"] = _Flow(item["shape"])

    labels = _labels(name, task, config, runtime)
    if labels is not None:
        _attach_labels(name, outputs, labels, from_manifest=runtime.get("labels") is not None)

    doc: dict[str, Any] = {
        "name": name,
        # The model's revision: what a GPUX user would call the version of this model.
        "version": str(source["commit"])[:12],
        "description": f"{task} model {source.get('repo', name)}, built by gpuxbuild",
        "model": {"source": main_file, "format": "onnx"},
        "inputs": inputs,
        "outputs": outputs,
        "runtime": _runtime(name, runtime),
        "serving": _serving(runtime),
    }
    preprocessing = _preprocessing(artifact_dir, config, runtime)
    if preprocessing:
        doc["preprocessing"] = preprocessing
    doc["metadata"] = {
        "gpuxbuild": {
            "format": format_version,
            "task": task,
            "source": {k: source.get(k) for k in ("registry", "repo", "commit")},
            "graphs": {role: graphs[role] for role in sorted(graphs)},
            "axes": {tensor: _Flow(dims) for tensor, dims in axes.items()},
        }
    }
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)
    validate_gpux_yml(text)
    return text


def read_graph_io(path: Path) -> GraphIO:
    """``graph_io`` of the ONNX graph file ``path``."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError as exc:
        raise GpuxError(f"ONNX graph {path.name} is missing", "rebuild the model with gpux build") from exc
    except Exception as exc:  # protobuf raises its own DecodeError
        raise GpuxError(f"{path.name} is not a readable ONNX graph: {exc}", "rebuild the model") from exc
    return graph_io(model, path.name)


def graph_io(model, file_name: str) -> GraphIO:
    """The inputs and outputs of an ONNX ModelProto (read from ``file_name``) as gpux.yml entries, plus each
    one's named axes (plain lists and dicts: they travel as JSON from the export process).

    Dynamic axes become -1 in ``shape`` (the GPUX parser takes only integers); their exporter
    names (batch_size, sequence_length, ...) are kept in the returned axes map.
    """
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    axes: dict[str, list] = {}

    def entry(value: Any, kind: str) -> dict[str, Any]:
        if not value.type.HasField("tensor_type"):
            raise GpuxError(
                f"{file_name}: {kind} {value.name} is not a tensor", "only tensor inputs and outputs are supported"
            )
        tensor = value.type.tensor_type
        dtype = _DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise GpuxError(
                f"{file_name}: {kind} {value.name} has an unsupported element type {tensor.elem_type}",
                "export the model with standard dtypes (float32/float16/int64)",
            )
        item: dict[str, Any] = {"name": value.name, "type": dtype}
        if tensor.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
            item["shape"] = [d if isinstance(d, int) else -1 for d in dims]
            axes[value.name] = dims
        return item

    # Old exporters list weights as graph inputs too; callers never feed those.
    inputs = [entry(v, "input") for v in graph.input if v.name not in initializers]
    for item in inputs:
        item["required"] = True
    outputs = [entry(v, "output") for v in graph.output]
    return inputs, outputs, axes


def _main_role(name: str, graphs: dict[str, str]) -> str:
    unknown = sorted(set(graphs) - set(MAIN_GRAPH_ROLES))
    if unknown or not graphs:
        raise GpuxError(
            f"model {name}: unknown graph roles {unknown or '(none)'}",
            f"graphs must use the roles {', '.join(MAIN_GRAPH_ROLES)}",
        )
    return next(role for role in MAIN_GRAPH_ROLES if role in graphs)


def _labels(name: str, task: str, config: dict[str, Any], runtime: dict[str, Any]) -> list[str] | None:
    if runtime.get("labels") is not None:
        return _ordered_labels(runtime["labels"], f"gpux.models.yml: model {name} runtime.labels")
    # transformers writes a placeholder id2label into every config; it only means something
    # for classification heads.
    if task in CLASSIFICATION_TASKS and config.get("id2label"):
        return _ordered_labels(config["id2label"], f"config.json of model {name}: id2label")
    return None


def _ordered_labels(labels: Any, where: str) -> list[str]:
    if isinstance(labels, list):
        return [str(label) for label in labels]
    if not isinstance(labels, dict):
        raise GpuxError(f"{where} must be a list or an id -> label map", "write labels as [neg, pos] or {0: neg}")
    try:
        by_id = {int(k): str(v) for k, v in labels.items()}
    except (TypeError, ValueError) as exc:
        raise GpuxError(f"{where} has a non-integer id", "use integer ids 0..n-1 as keys") from exc
    if sorted(by_id) != list(range(len(by_id))):
        raise GpuxError(
            f"{where} ids are not 0..{len(by_id) - 1}: {sorted(by_id)}",
            "give runtime.labels as a complete list in gpux.models.yml",
        )
    return [by_id[i] for i in range(len(by_id))]


def _attach_labels(name: str, outputs: list[dict], labels: list[str], *, from_manifest: bool) -> None:
    target = next((o for o in outputs if o["name"] == LABELLED_OUTPUT), None)
    if target is None:
        if from_manifest:
            raise GpuxError(
                f"model {name}: runtime.labels given but the graph has no {LABELLED_OUTPUT} output",
                "remove runtime.labels from gpux.models.yml for this model",
            )
        return
    classes = (target.get("shape") or [-1])[-1]
    if classes > 0 and classes != len(labels):
        origin = "runtime.labels" if from_manifest else "config.json id2label"
        raise GpuxError(
            f"model {name}: {len(labels)} labels ({origin}) but the {LABELLED_OUTPUT} output has {classes} classes",
            "fix runtime.labels in gpux.models.yml" if from_manifest else "set runtime.labels in gpux.models.yml",
        )
    target["labels"] = labels


def _runtime(name: str, hints: dict[str, Any]) -> dict[str, Any]:
    gpu = {**DEFAULT_GPU, **(hints.get("gpu") or {})}
    gpu["memory"] = gpux_memory(name, gpu["memory"])
    return {
        "gpu": {"memory": gpu["memory"], "backend": gpu["backend"]},
        "timeout": DEFAULT_TIMEOUT,
        "batch_size": hints.get("batch_size", 1),
        "enable_profiling": False,
    }


def gpux_memory(name: str, value: Any) -> str:
    """A memory size as the GPUX parser takes it: a number and GB, MB or KB (GPUX reads GB as 2**30 bytes).

    The manifest also allows B, TB and binary units (GiB, ...), which GPUX would reject.
    """
    match = _MEMORY.match(str(value).strip().upper())
    if not match:
        raise GpuxError(
            f"model {name}: runtime.gpu.memory {value!r} is not a size",
            "write it like 2GB, 512MB or 1.5GiB in gpux.models.yml",
        )
    number, unit = Decimal(match["number"]), match["unit"]
    if unit is None:
        number, unit = (number / 1024).to_integral_value(ROUND_CEILING), "K"
    elif unit == "T":
        number, unit = number * 1024, "G"
    return f"{format(number.normalize(), 'f')}{unit}B"


def _serving(hints: dict[str, Any]) -> dict[str, Any]:
    serving = {**DEFAULT_SERVING, "batch_size": hints.get("batch_size", 1)}
    return {k: serving[k] for k in ("host", "port", "batch_size", "timeout", "max_workers")}


def _preprocessing(artifact_dir: Path, config: dict[str, Any], hints: dict[str, Any]) -> dict[str, Any]:
    preprocessing: dict[str, Any] = {}
    if (artifact_dir / "tokenizer.json").is_file():
        preprocessing["tokenizer"] = "tokenizer.json"
    max_length = hints.get("max_length")
    if max_length is None:
        max_length = _tokenizer_max_length(artifact_dir) or _config_max_length(config)
    if max_length is not None:
        preprocessing["max_length"] = max_length
    preprocessing.update(_media_preprocessing(artifact_dir))
    return preprocessing


def _media_preprocessing(artifact_dir: Path) -> dict[str, Any]:
    """resize [height, width] and normalize from an image processor's config, and its settings (or an audio
    feature extractor's) under custom: what `gpux run` does to a file before the graph sees it."""
    path = artifact_dir / PREPROCESSOR_CONFIG
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise GpuxError(f"{PREPROCESSOR_CONFIG} of the model is not valid JSON: {exc}", "fix the repo's file") from exc
    if not isinstance(data, dict):
        return {}
    custom: dict[str, Any] = {PREPROCESSOR_CONFIG_KEY: PREPROCESSOR_CONFIG}
    custom.update({k: data[k] for k in _MEDIA_FIELDS if data.get(k) is not None})
    if "resample" in custom:
        custom["resample"] = _RESAMPLE_NAMES.get(custom["resample"], custom["resample"])
    media: dict[str, Any] = {}
    size = data.get("crop_size") if data.get("do_center_crop") else data.get("size")
    if data.get("do_center_crop") and isinstance(size, int):  # old configs (openai/clip-*): a square crop
        size = {"height": size, "width": size}
    if isinstance(size, dict) and "shortest_edge" in size and "crop_pct" in data:  # ConvNeXt crops to a square
        size = {"height": size["shortest_edge"], "width": size["shortest_edge"]}
    if isinstance(size, dict) and {"height", "width"} <= set(size):
        media["resize"] = _Flow([size["height"], size["width"]])
    mean, std = data.get("image_mean"), data.get("image_std")
    if data.get("do_normalize") and isinstance(mean, list) and isinstance(std, list):
        media["normalize"] = next((n for n, ms in _NORMALIZE_NAMES.items() if ms == (mean, std)), "custom")
    return media | {"custom": custom}


def _tokenizer_max_length(artifact_dir: Path) -> int | None:
    path = artifact_dir / "tokenizer_config.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text("utf-8")).get("model_max_length")
    except (ValueError, AttributeError):
        return None
    return value if _is_sane_length(value) else None


def _config_max_length(config: dict[str, Any]) -> int | None:
    # GPT-2 style configs call it n_positions.
    for key in ("max_position_embeddings", "n_positions"):
        if _is_sane_length(config.get(key)):
            return config[key]
    return None


def _is_sane_length(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _SANE_MAX_LENGTH


class _Flow(list):
    """A list written on one line (shapes, axes)."""


class _Dumper(yaml.SafeDumper):
    """Block style except for _Flow lists; never anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(
    _Flow, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)
