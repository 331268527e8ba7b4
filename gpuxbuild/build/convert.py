"""ONNX export of a downloaded model repo with optimum, reproducible to the byte.

``export_onnx`` runs the export in a fresh Python process with ``PYTHONHASHSEED=0``: optimum merges seq2seq
decoders through a ``set.pop()``, so the graph bytes depend on the hash seed. The process boundary also
lets a caller bound memory and run exports in parallel. Post-processing (ORT optimizer, fp16, int8) runs
in that process too, and every graph is re-serialized without doc strings or metadata, so no temp path
ends up in the bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gpuxbuild.allocator import reuse_env
from gpuxbuild.build.exported_graphs import TWO_GB, ExportedGraphs, disk_size
from gpuxbuild.build.gpuxyml import GraphIO, graph_io
from gpuxbuild.build.patching import patched
from gpuxbuild.errors import GpuxError, MissingExtraError
from gpuxbuild.preprocessor import PREPROCESSOR_CONFIG
from gpuxbuild.tasks import (
    IMAGE_TEXT_MODEL_TYPES,
    IMAGE_TEXT_TASKS,
    SUPPORTED_TASKS,
    is_seq2seq,
    optimum_task,
    takes_text,
)

DTYPES = ("fp32", "fp16")
OPTIMIZE_LEVELS = (0, 1, 2, 99)
QUANTIZE_MODES = ("int8",)

# Validation tolerance (max absolute difference to PyTorch) of fp32 graphs, per task.
TASK_ATOL = {
    "audio-classification": 1e-3,
    "automatic-speech-recognition": 1e-3,
    "feature-extraction": 1e-3,
    "fill-mask": 1e-3,
    "image-classification": 1e-3,
    "image-feature-extraction": 1e-3,
    "image-segmentation": 1e-3,
    "object-detection": 1e-3,
    "question-answering": 1e-3,
    "text-classification": 1e-3,
    "token-classification": 1e-3,
    "text-generation": 2e-3,
    "text2text-generation": 2e-3,
    "zero-shot-image-classification": 1e-3,
}
FP16_ATOL_FACTOR = 50
# Dynamic int8 error grows with the output's magnitude: tolerate this fraction of the largest reference value.
INT8_RELATIVE_ATOL = 0.25

SAMPLE_TEXT = "The quick brown fox jumps over the lazy dog. Paris is the capital of France."
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
# The image processor's or feature extractor's settings: what run-time preprocessing follows.
# A CTC model's character vocabulary (Wav2Vec2CTCTokenizer has no fast version; decoding needs only the vocab).
CTC_TOKENIZER_FILES = ("vocab.json", "tokenizer_config.json", "special_tokens_map.json")


class ExportError(GpuxError):
    """The exporter failed on a model it claims to support."""


class UnsupportedModelError(GpuxError):
    """The model's architecture cannot be exported to ONNX for the requested task."""


class ValidationError(GpuxError):
    """The exported graph's outputs differ from the PyTorch model's beyond the tolerance."""

    def __init__(self, message: str, hint: str | None = None, *, max_diff: float):
        super().__init__(message, hint)
        self.max_diff = max_diff


_ERRORS = {
    cls.__name__: cls for cls in (GpuxError, ExportError, UnsupportedModelError, ValidationError, MissingExtraError)
}


@dataclass
class ExportResult:
    """What an export produced: graph role -> file name in out_dir, validation max diff, seconds per stage, and
    each graph file's inputs and outputs (gpuxyml.graph_io, read while the graph was in memory)."""

    graphs: dict[str, str]
    max_diff: float | None = None
    stages: dict[str, float] = field(default_factory=dict)
    io: dict[str, list] = field(default_factory=dict)


def export_onnx(
    source_dir: Path,
    out_dir: Path,
    *,
    task: str,
    library: str = "transformers",
    opset: int | None = None,
    dtype: str = "fp32",
    optimize: int | None = None,
    quantize: str | None = None,
    validate: bool = True,
    atol: float | None = None,
    trust_remote_code: bool = False,
    name: str | None = None,
    env: dict[str, str] | None = None,
    pool: ExportPool | None = None,
) -> ExportResult:
    """Export the model repo in ``source_dir`` to ONNX graphs plus runtime files in ``out_dir`` (must be empty).

    ``name`` labels the model in errors (default: the folder name); ``env`` adds variables to the export
    process's environment; ``pool`` runs it in a long-lived worker of that pool (torch and optimum are then
    imported once per worker, not once per model). Raises GpuxError subclasses for unsupported models, failed
    validation and missing dependencies.
    """
    source_dir, out_dir = Path(source_dir).resolve(), Path(out_dir).resolve()
    name = name or source_dir.name
    _check_options(name, task, dtype, optimize, quantize, opset)
    if not (source_dir / "config.json").is_file():
        raise GpuxError(f"{name}: no config.json in the model files", "export needs a transformers model repo")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise GpuxError(f"{out_dir}: output folder is not empty", "export into a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    request = {
        "source_dir": str(source_dir),
        "out_dir": str(out_dir),
        "task": task,
        "library": library,
        "opset": opset,
        "dtype": dtype,
        "optimize": optimize,
        "quantize": quantize,
        "validate": validate,
        "atol": atol,
        "trust_remote_code": trust_remote_code,
        "name": name,
    }
    started = time.perf_counter()
    if pool is None:
        with ExportPool(1, env) as own:
            payload = own.run(request)
    else:
        payload = pool.run(request)
    if "error" in payload:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise _error_from(payload["error"])
    result = payload["result"]
    stages = dict(result["stages"]) | {"total": round(time.perf_counter() - started, 3)}
    return ExportResult(graphs=result["graphs"], max_diff=result["max_diff"], stages=stages, io=result["io"])


class _Worker:
    """One export process serving requests one at a time (protocol in _export_worker.py)."""

    def __init__(self, env: dict[str, str]):
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 -- the worker's stderr for its whole life, closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpuxbuild.build._export_worker", "--serve"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=tempfile.gettempdir(),
        )
        if self.proc.stdin is None or self.proc.stdout is None:  # never: both are PIPEs
            raise RuntimeError("the export worker started without its pipes")
        self.requests, self.replies = self.proc.stdin, self.proc.stdout

    def run(self, request: dict) -> dict | None:
        """The worker's payload, or None when it died (its log then says why)."""
        with tempfile.TemporaryDirectory(prefix="gpux-export-") as tmp:
            request_path, result_path = Path(tmp) / "request.json", Path(tmp) / "result.json"
            request_path.write_text(json.dumps(request))
            self.log.seek(0)
            self.log.truncate()
            try:
                self.requests.write(json.dumps([str(request_path), str(result_path)]) + "\n")
                self.requests.flush()
                done = self.replies.readline()
            except (BrokenPipeError, OSError):
                done = ""
            if not done:
                return None
            return json.loads(result_path.read_text()) if result_path.is_file() else None

    def last_error(self) -> str:
        self.log.seek(0)
        return _last_line(self.log.read())

    def kill(self) -> None:
        """End the process at once; a request in flight then reads end-of-file (safe from another thread)."""
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        # An idle worker holds no state worth a clean exit, and tearing down torch takes about a second.
        self.kill()
        self.proc.wait()
        self.requests.close()
        self.replies.close()
        self.log.close()


class ExportPool:
    """Up to ``size`` long-lived export processes, started on first use; safe to share between threads.

    Every worker runs with ``PYTHONHASHSEED=0`` and resets torch's seed per export, so an export's bytes do
    not depend on which worker ran it or what it ran before (tested by the reproducibility tests).
    """

    def __init__(self, size: int, env: dict[str, str] | None = None):
        import queue
        import threading

        self._env = _worker_env(env)
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(max(1, size)):
            self._idle.put(None)  # a slot; its process starts on first use
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._stopped = False

    def _start(self) -> _Worker:
        with self._lock:
            if self._stopped:
                raise ExportError("the export was stopped (interrupted)", "run the command again")
            worker = _Worker(self._env)
            self._all.append(worker)
            return worker

    def prestart(self, count: int) -> None:
        """Start up to `count` workers now, so their imports overlap with the caller's fetching."""
        slots = [self._idle.get() for _ in range(self._idle.qsize())]
        try:
            for i, worker in enumerate(slots):
                if worker is None and i < count:
                    slots[i] = self._start()
        finally:
            for worker in slots:
                self._idle.put(worker)

    def stop(self) -> None:
        """Kill every worker now, exports in flight included (Ctrl-C): their callers get an ExportError at
        once and remove what the export wrote; no new export starts."""
        with self._lock:
            self._stopped = True
            for worker in self._all:
                worker.kill()

    def run(self, request: dict) -> dict:
        worker = self._idle.get()
        try:
            if worker is None or worker.proc.poll() is not None:
                worker = None  # a dead one is not put back, even if no new one starts
                worker = self._start()
            payload = worker.run(request)
            if payload is None:
                message = worker.last_error() or f"exit code {worker.proc.poll()}"
                worker.close()
                worker = None
                shutil.rmtree(request["out_dir"], ignore_errors=True)
                raise ExportError(
                    f"{request['name']}: ONNX export failed: {message}",
                    "report it if the model loads with transformers",
                )
            return payload
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        with self._lock:
            for worker in self._all:
                worker.close()
            self._all.clear()

    def __enter__(self) -> ExportPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_options(
    name: str, task: str, dtype: str, optimize: int | None, quantize: str | None, opset: int | None
) -> None:
    if task not in SUPPORTED_TASKS:
        raise GpuxError(f"{name}: task {task!r} cannot be exported", f"supported tasks: {', '.join(SUPPORTED_TASKS)}")
    if dtype not in DTYPES:
        raise GpuxError(f"{name}: dtype {dtype!r} is not supported", f"use one of: {', '.join(DTYPES)}")
    if optimize is not None and optimize not in OPTIMIZE_LEVELS:
        raise GpuxError(
            f"{name}: optimize level {optimize!r} is not supported",
            f"use one of: {', '.join(map(str, OPTIMIZE_LEVELS))}",
        )
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise GpuxError(f"{name}: quantize {quantize!r} is not supported", "use: int8")
    if quantize and dtype != "fp32":
        raise GpuxError(f"{name}: int8 quantization needs dtype fp32, not {dtype}", "drop one of dtype/quantize")
    if dtype == "fp16" and task == "text2text-generation":
        # The fp16 decoders' IO casts break optimum's merge of the two decoder graphs.
        raise GpuxError(
            f"{name}: dtype fp16 is not supported for text2text-generation yet",
            "use dtype fp32, optionally with quantize: int8",
        )
    if opset is not None and not 11 <= opset <= 23:
        raise GpuxError(f"{name}: opset {opset} is out of range", "use an opset between 11 and 23, or leave it unset")


def _worker_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ) | (extra or {})
    env["PYTHONHASHSEED"] = "0"
    # Never reach the Hub from an export: everything comes from the downloaded folder.
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    # torch's OpenMP threads otherwise spin after each of the export's thousands of small parallel regions, taking
    # the core the exporting thread needs when another process has the other one (bert-base's export, one core
    # busy: 9.9 s -> 6.0 s). The wait policy changes no result; a user's own setting is kept.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Freed buffers are reused rather than faulted in again (see `allocator`); the worker gives the memory back
    # after each export.
    env = reuse_env(env)
    # The worker imports gpuxbuild from wherever this process did.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _error_from(error: dict) -> GpuxError:
    """Rebuild the GpuxError the export process reported."""
    cls = _ERRORS.get(error["type"], GpuxError)
    exc = cls.__new__(cls)
    GpuxError.__init__(exc, error["message"], error["hint"])
    if isinstance(exc, ValidationError):
        exc.max_diff = error["max_diff"]
    return exc


# --------------------------------------------------------------------------- in the export process


def run_export(
    source_dir: str,
    out_dir: str,
    *,
    task: str,
    library: str,
    opset: int | None,
    dtype: str,
    optimize: int | None,
    quantize: str | None,
    validate: bool,
    atol: float | None,
    trust_remote_code: bool,
    name: str,
) -> dict:
    """The export itself; runs inside the worker process (see ``export_onnx``). Returns the result as JSON data."""
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def stage(label: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[label] = round(stages.get(label, 0.0) + now - clock, 3)
        clock = now

    try:
        import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs)
        import torch
        from optimum.exporters.onnx import main_export
    except ImportError:
        raise MissingExtraError("convert", f"exporting {name} to ONNX") from None
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    stage("import")

    source, out = Path(source_dir), Path(out_dir)
    config = json.loads((source / "config.json").read_text())
    _check_supported(name, config, task)
    with (
        tempfile.TemporaryDirectory(prefix="gpux-onnx-", dir=out.parent) as tmp,
        _GraphWriter() as writer,
    ):
        export_dir = Path(tmp)
        exported = ExportedGraphs(export_dir)
        seq2seq = is_seq2seq(task, config)
        # sentence-transformers models export as their transformer (last_hidden_state); the runtime pools
        # per the copied 1_Pooling config, so the export needs no sentence-transformers package.
        # optimum's own post-processing is done here instead: a single graph's tied weights are deduplicated on
        # the graph gpuxbuild reads anyway (`_post_process`), and seq2seq decoders are post-processed before
        # they are merged (ORT's optimizer, fp16 converter and quantizer do not handle the merged graph's If
        # subgraphs). The exported graphs stay in memory for that (`ExportedGraphs`).
        with (
            _keeping_loaded_model() as loaded,
            exported.capturing(),
            _fixing_dynamic_axes_only_when_declared(exported),
            _preprocessors_on_use(),
            _shape_inference_without_weights(),
        ):
            main_export(
                str(source),
                export_dir,
                task=optimum_task(task, config),
                opset=opset,
                device="cpu",
                dtype="fp32",
                do_validation=False,
                library_name="transformers",
                trust_remote_code=trust_remote_code,
                no_post_process=True,
            )
        stage("export")
        graphs = (
            {"encoder": "encoder_model.onnx", "decoder": "decoder_model_merged.onnx"}
            if seq2seq
            else {"model": "model.onnx"}
        )
        parts = (
            ["encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"] if seq2seq else ["model.onnx"]
        )
        processed = export_dir / "processed"
        processed.mkdir()
        for file_name in parts:
            if not exported.exists(export_dir / file_name):
                raise ExportError(f"{name}: the exporter wrote no {file_name}", "report this model")
        # Without optimize/fp16/int8 the decoders need nothing before the merge, which strips them: small ones
        # are merged straight from the export, each read once (see `_merge_decoders`).
        raw_decoders = (
            seq2seq and (optimize, dtype, quantize) == (None, "fp32", None) and _merges_in_memory(export_dir, exported)
        )
        # optimum post-processes only the single graph of a model it loaded as one (not seq2seq's parts).
        tied_model = None if seq2seq or len(loaded) != 1 else loaded[0]
        io = {}
        final = set(graphs.values())  # written into `out`; the decoders before a merge stay in `processed`
        for file_name in parts[:1] if raw_decoders else parts:
            dest = (out if file_name in final else processed) / file_name
            io[file_name] = _post_process(
                export_dir / file_name,
                dest,
                config,
                optimize,
                dtype,
                quantize,
                stage,
                tied_model,
                writer if file_name in final else None,
                exported,
            )
        if seq2seq:
            merge_from = export_dir if raw_decoders else processed
            io[graphs["decoder"]] = _merge_decoders(merge_from, out / graphs["decoder"], writer, exported)
            stage("merge")
        # Older repos keep generation settings in config.json; optimum moves them to a generation config.
        if not (source / "generation_config.json").is_file() and (export_dir / "generation_config.json").is_file():
            shutil.copyfile(export_dir / "generation_config.json", out / "generation_config.json")
        _copy_runtime_files(source, out, task, seq2seq)
        stage("files")

        max_diff = None
        if validate:
            reference = loaded[0] if len(loaded) == 1 else None
            max_diff = _validate(source, out, graphs, task, name, dtype, quantize, atol, reference, writer.graphs)
            stage("validate")
    stage("write")
    return {"graphs": graphs, "max_diff": max_diff, "stages": stages, "io": {f: io[f] for f in graphs.values()}}


@contextmanager
def _keeping_loaded_model() -> Iterator[list]:
    """Collect the PyTorch model(s) optimum's ``main_export`` loads, so validation compares against the same
    model instead of loading the weights a second time (``main_export`` takes a path, not a loaded model, and
    its own loading logic (dtype, pad token, attention implementation) is what the export must keep).

    The export changes the model's configs (its patcher sets ``use_cache`` on every submodule's config, for
    one): they are restored on the way out, so the model is as ``from_pretrained`` returned it.
    """
    from optimum.exporters.tasks import TasksManager

    loaded: list = []
    saved: list[tuple[object, dict]] = []
    original = TasksManager.__dict__["get_model_from_task"]

    def keep(*args, **kwargs):
        model = original.__func__(*args, **kwargs)
        configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}
        saved.extend((config, dict(vars(config))) for config in configs.values())
        loaded.append(model)
        return model

    try:
        with patched(TasksManager, get_model_from_task=staticmethod(keep)):
            yield loaded
    finally:
        for config, attributes in saved:
            vars(config).clear()
            vars(config).update(attributes)


class _DeferredPreprocessors(Sequence):
    """The preprocessors optimum's export loads up front, loaded on first use instead (see ``_preprocessors_on_use``)."""

    def __init__(self, load: Callable[[], list]):
        self._load = load
        self._items: list | None = None

    def _loaded(self) -> list:
        if self._items is None:
            self._items = self._load()
        return self._items

    def __len__(self) -> int:
        return len(self._loaded())

    def __getitem__(self, index):
        return self._loaded()[index]


@contextmanager
def _preprocessors_on_use() -> Iterator[None]:
    """optimum's export loads the repo's tokenizer, processor, feature extractor and image processor before
    exporting, for the few ONNX configs that read input shapes from them (pix2struct), and loads them all again
    afterwards (``maybe_save_preprocessors``) only to save copies beside the graphs. Here the first loading happens
    only if a config reads them, and the second not at all: gpuxbuild places the runtime files from the source
    itself (``_copy_runtime_files``) and never reads those copies. The two took 0.2 s (a WordPiece tokenizer),
    0.8 s (GPT-2's byte-level BPE), 1.7 s (t5-small's) and 3 s (whisper-tiny's processor, whose modules they
    also imported) of an export."""
    import optimum.exporters.onnx.__main__ as onnx_main
    import optimum.exporters.onnx.convert as onnx_convert

    load = onnx_main.maybe_load_preprocessors
    with (
        patched(
            onnx_main,
            maybe_load_preprocessors=lambda *args, **kwargs: _DeferredPreprocessors(lambda: load(*args, **kwargs)),
        ),
        patched(onnx_convert, maybe_save_preprocessors=lambda *args, **kwargs: None),
    ):
        yield


@contextmanager
def _fixing_dynamic_axes_only_when_declared(exported: ExportedGraphs) -> Iterator[None]:
    """optimum's ``OnnxConfig.fix_dynamic_axes`` opens an onnxruntime session on every exported graph to find
    output dimensions the exporter left symbolic but the config does not name as dynamic; only when it finds
    one does it run the graph and rewrite the file with the dimensions seen. When the file itself declares
    every output dimension as a number or as one of the config's dynamic axes, the session can only report
    numbers or those axes (onnxruntime merges the shapes it infers into the declared ones: a declared number
    stays, a declared name stays or becomes a number), so there is nothing to fix and the session — about a
    second for a 400 MB graph — is skipped. Any other graph goes through optimum's method as before, from its
    file (written now if it was kept in memory).
    """
    from optimum.exporters.onnx.base import OnnxConfig

    original = OnnxConfig.fix_dynamic_axes

    def fix(self, model_path, *args, **kwargs):
        dynamic = {axis for axes in (*self.inputs.values(), *self.outputs.values()) for axis in axes.values()}
        path = Path(model_path)
        if not _outputs_declared(exported, path, dynamic):
            exported.materialize(path)
            original(self, model_path, *args, **kwargs)

    with patched(OnnxConfig, fix_dynamic_axes=fix):
        yield


# Fewer elements than any weight matrix, more than any tensor whose values decide a shape (Range's scalars, Resize's
# scales: one per dimension).
_SHAPE_VALUE_LIMIT = 1024


@contextmanager
def _shape_inference_without_weights() -> Iterator[None]:
    """torch's ONNX exporter infers the graph's shapes twice (``_jit_pass_onnx_graph_shape_type_inference``), and
    for every node that reads a parameter it copies that parameter's values into a one-node ONNX model to run
    onnx's shape inference on: every weight, twice: 3.6 s of a roberta-base export. Only the values of small
    tensors can decide a shape (a Reshape's target, a Range's bounds); a floating-point tensor of 1024 elements
    or more is given to the pass by its type alone (dtype and shape, which the traced graph declares), as the
    pass does for any input whose value it does not know. The shapes inferred, and so the bytes, are the same.
    """
    import torch

    original = torch._C._jit_pass_onnx_graph_shape_type_inference

    def infer(graph, params_dict, opset_version):
        values = {
            name: value
            for name, value in params_dict.items()
            if not (
                isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel() >= _SHAPE_VALUE_LIMIT
            )
        }
        return original(graph, values, opset_version)

    with patched(torch._C, _jit_pass_onnx_graph_shape_type_inference=infer):
        yield


def _outputs_declared(exported: ExportedGraphs, path: Path, dynamic: set[str]) -> bool:
    """Whether every output of the graph at ``path`` is a tensor whose every dimension is a number or one of
    the ``dynamic`` axis names (see `ExportedGraphs.outputs`)."""
    try:
        outputs = exported.outputs(path)
    except (OSError, ValueError):  # optimum's method then reports what is wrong with the file
        return False
    for output in outputs:
        tensor = output.type.tensor_type
        if not output.type.HasField("tensor_type") or not tensor.HasField("shape"):
            return False
        for dim in tensor.shape.dim:
            if not (dim.HasField("dim_value") or (dim.HasField("dim_param") and dim.dim_param in dynamic)):
                return False
    return True


def _check_supported(name: str, config: dict, task: str) -> None:
    from optimum.exporters.tasks import TasksManager

    model_type = config.get("model_type") or "unknown"
    arch = ", ".join(config.get("architectures") or []) or model_type
    _check_image_text(name, arch, model_type, task)
    try:
        supported = TasksManager.get_supported_tasks_for_model_type(
            model_type, exporter="onnx", library_name="transformers"
        )
    except KeyError:
        raise UnsupportedModelError(
            f"{name}: architecture {arch} (model_type {model_type}) cannot be exported to ONNX for task {task}",
            "optimum's ONNX exporter does not support it; choose a model that ships ONNX files or another architecture",
        ) from None
    if optimum_task(task, config) not in supported:
        clip = model_type in IMAGE_TEXT_MODEL_TYPES
        tasks = sorted(
            t for t in SUPPORTED_TASKS if optimum_task(t, config) in supported and (t not in IMAGE_TEXT_TASKS or clip)
        )
        raise UnsupportedModelError(
            f"{name}: architecture {arch} (model_type {model_type}) cannot be exported to ONNX for task {task}",
            f"set `task:` to one it supports: {', '.join(tasks) or 'none that gpux runs'}",
        )


def _check_image_text(name: str, arch: str, model_type: str, task: str) -> None:
    """Image-text tasks are CLIP's (one graph of both towers); CLIP's tower pair runs only as those tasks."""
    clip = model_type in IMAGE_TEXT_MODEL_TYPES
    if task in IMAGE_TEXT_TASKS and not clip:
        raise UnsupportedModelError(
            f"{name}: task {task} is built for models with an image and a text tower (CLIP), not {arch}",
            "set `task:` to the model's own task, e.g. image-classification",
        )
    if clip and task not in IMAGE_TEXT_TASKS and "ForImageClassification" not in arch:
        raise UnsupportedModelError(
            f"{name}: {arch} runs as {' or '.join(IMAGE_TEXT_TASKS)}, not {task}",
            "set `task: zero-shot-image-classification` (or image-feature-extraction), or leave it out",
        )


def _post_process(
    src: Path,
    dest: Path,
    config: dict,
    optimize: int | None,
    dtype: str,
    quantize: str | None,
    stage,
    tied_model=None,
    writer: _GraphWriter | None = None,
    exported: ExportedGraphs | None = None,
) -> GraphIO:
    """Optimize / fp16 / int8 one graph, then write it to ``dest`` without doc strings or metadata (with a
    ``writer``, see `_save`); returns its inputs and outputs. ``tied_model``: the PyTorch model of a single-graph
    export, whose tied weights the graph then stores once (`_tied_weights`). ``exported``: where ``src`` may be
    kept in memory."""
    import onnx

    exported = exported or ExportedGraphs(src.parent)
    tied = _tied_weights(tied_model) if tied_model is not None else []
    if (optimize, dtype, quantize) != (None, "fp32", None):
        exported.materialize(src)  # ORT's optimizer and quantizer, and the fp16 converter here, read files
        if tied:  # deduplicate the file first, as optimum does
            from optimum.onnx import remove_duplicate_weights_from_tied_info

            remove_duplicate_weights_from_tied_info(onnx.load(str(src)), tied_model, tied, save_path=str(src))
            tied = []
    work = src
    if optimize is not None:
        from onnxruntime.transformers.optimizer import optimize_model

        # T5 fusions emit CUDA-only kernels (RelativePositionBias); the generic BERT fusions run everywhere.
        model_type = config.get("model_type")
        model_type = model_type if model_type in ("gpt2", "bart") else "bert"
        optimized = optimize_model(
            str(work), model_type=model_type, num_heads=0, hidden_size=0, opt_level=optimize, use_gpu=False
        )
        work = src.with_name(f"optimized-{src.name}")
        optimized.save_model_to_file(str(work), use_external_data_format=disk_size(src) >= TWO_GB)
        stage("optimize")
    if dtype == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        # Inputs and outputs stay float32 so the runtime feeds every dtype the same way.
        half = convert_float_to_float16(onnx.load(str(work)), keep_io_types=True)
        loaded_from, work = work, src.with_name(f"fp16-{src.name}")
        _save(half, work, disk_size(loaded_from))
        stage("fp16")
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = src.with_name(f"int8-{src.name}")
        # Fused ops of the ORT optimizer lack shape-inference types; their outputs are float tensors.
        quantize_dynamic(
            work,
            quantized,
            weight_type=QuantType.QInt8,
            use_external_data_format=disk_size(work) >= TWO_GB,
            extra_options={"EnableSubgraph": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        work = quantized
        stage("quantize")
    size = exported.size(work)
    model, original = exported.load(work)
    if tied:
        _deduplicate_tied(model, tied_model, tied)  # drops initializers, changes none
    _strip(model)
    io = graph_io(model, dest.name)
    _save(model, dest, size, check=bool(tied), writer=writer, original=original)
    return io


def _tied_weights(torch_model) -> list[list[str]]:
    """The groups of parameters ``torch_model`` ties (an LM head sharing the input embedding), as optimum's
    post-processing finds them."""
    from accelerate.utils import find_tied_parameters

    return find_tied_parameters(torch_model)


def _deduplicate_tied(model, torch_model, tied: list[list[str]]) -> None:
    """optimum's ``remove_duplicate_weights_from_tied_info`` (optimum 2.x, optimum/onnx/graph_transformations.py;
    what its ``main_export`` post-processing runs on a single graph) on the graph in memory, up to its
    ``check_and_save_model``: the same helpers with the same arguments. Its size pass, its two checks and its
    write, which gpuxbuild read back to strip, become one check of the bytes gpuxbuild writes (`_save`)."""
    from optimum.onnx.transformations_utils import (
        _deduplicate_gather_matmul,
        _find_matching_initializers,
        _get_weights_to_tie,
    )

    with_op, to_tie, _ignored = _get_weights_to_tie(tied, torch_model)
    index = {initializer.name: i for i, initializer in enumerate(model.graph.initializer)}
    groups = _find_matching_initializers(with_op, model, index)
    _deduplicate_gather_matmul(model, to_tie, groups, index)


DECODERS = ("decoder_model.onnx", "decoder_with_past_model.onnx")


def _merges_in_memory(folder: Path, exported: ExportedGraphs) -> bool:
    """Whether the decoders in `folder` are small enough (under 1 GB each) for `_merge_decoders` to merge them in
    memory: their union stays under protobuf's 2 GB."""
    return all(exported.size(folder / name) < TWO_GB // 2 for name in DECODERS)


def _merge_decoders(
    folder: Path, dest: Path, writer: _GraphWriter | None = None, exported: ExportedGraphs | None = None
) -> GraphIO:
    """`folder`'s decoder_model.onnx + decoder_with_past_model.onnx -> ``dest`` (one graph, If on the cache),
    stripped (with a ``writer``, see `_save`); returns its inputs and outputs.

    Decoders under 1 GB each are merged in memory (`_merged`), stripped, checked once and written once: the bytes
    optimum's ``merge_decoders`` writes from the stripped decoders (the merge drops the decoders' own doc strings
    and metadata, and stripping the merged graph reaches every node stripping each decoder would), without its
    writes and re-reads of the merged graph, its size pass and its second check (of the file it has just
    written). Larger ones go through optimum's ``merge_decoders``, which writes their weights beside the graph.
    ``exported``: where the decoders may be kept in memory.
    """
    import onnx

    exported = exported or ExportedGraphs(folder)
    if not _merges_in_memory(folder, exported):
        from optimum.onnx import merge_decoders

        for name in DECODERS:
            exported.materialize(folder / name)

        merged = folder / "merged.onnx"
        merge_decoders(
            decoder=folder / DECODERS[0], decoder_with_past=folder / DECODERS[1], save_path=merged, strict=False
        )
        model = onnx.load(str(merged))
        _strip(model)
        _save(model, dest, disk_size(merged))
        return graph_io(model, dest.name)
    decoder, with_past = (exported.load(folder / name)[0] for name in DECODERS)
    model = _merged(decoder, with_past)
    del decoder, with_past  # the merged graph holds copies of their nodes and initializers
    _strip(model)
    data = model.SerializeToString()  # under 2 GB: the union of two graphs under 1 GB each
    _check(data)
    _write(dest, data, writer)
    return graph_io(model, dest.name)


def _merged(decoder, with_past):
    """optimum's ``merge_decoders(decoder, with_past, strict=False)`` (optimum 2.x, optimum/onnx/
    graph_transformations.py) on the same in-memory graphs, up to the merged ModelProto: the same helpers with
    the same arguments in the same order, without its ``check_and_save_model`` (which cannot skip writing the
    file). One If node on ``use_cache_branch``: then the graph with the KV cache, else the one without; weights
    shared by both are deduplicated into the outer graph. Both inputs are changed in place (as optimum does).
    tests/test_convert.py checks the result is byte-identical to optimum's own merge.
    """
    import onnx
    from optimum.onnx.transformations_utils import _get_all_inputs, _unify_onnx_outputs

    graph_name = "merged"
    _unify_onnx_outputs(decoder, with_past, strict=False)
    inputs = _get_all_inputs([decoder, with_past])
    initializers = _shared_initializers([decoder, with_past], suffix=graph_name)

    def branch(model, name: str):
        kept = [t for t in model.graph.initializer if _stays_in_branch(t)]
        return onnx.helper.make_graph(
            nodes=model.graph.node, name=name, inputs=[], outputs=model.graph.output, initializer=kept
        )

    no_past, past = branch(decoder, "no_past"), branch(with_past, "with_past")
    use_cache_branch = onnx.helper.make_tensor_value_info(
        name="use_cache_branch", elem_type=onnx.TensorProto.BOOL, shape=[1]
    )
    if_node = onnx.helper.make_node(
        "If",
        inputs=["use_cache_branch"],
        outputs=[output.name for output in no_past.output],
        name="optimum::if",
        then_branch=past,
        else_branch=no_past,
    )
    graph = onnx.helper.make_graph(
        nodes=[if_node],
        name=graph_name,
        inputs=[*inputs, use_cache_branch],
        outputs=no_past.output,
        initializer=initializers,
    )
    opsets: dict[str, object] = {}  # the first import of each domain, the decoder's before the other's
    for opset in [*decoder.opset_import, *with_past.opset_import]:
        opsets.setdefault(opset.domain, opset)
    return onnx.helper.make_model_gen_version(
        graph, producer_name="optimum-onnx", opset_imports=list(opsets.values()), ir_version=9
    )


def _stays_in_branch(tensor) -> bool:
    """Whether a decoder's weight stays in its own branch of the merged graph (scalars and 1-D int32/int64, as
    optimum keeps them: ONNX Runtime needs that after optimization) rather than shared in the outer graph."""
    return len(tensor.dims) == 0 or (len(tensor.dims) == 1 and tensor.data_type in (6, 7))


def _shared_initializers(models: list, suffix: str) -> list:
    """optimum's ``_deduplicated_cross_model_initializers`` (optimum 2.x): the weights of `models` with equal
    type, shape and data, once each, renamed and referenced by the same name in every model. Its duplicate finder
    copies every weight into numpy and hashes it with SHA-512 (0.6 s of a whisper-tiny merge); here the stored
    bytes are hashed with SHA-256 (hardware-accelerated, no copy). The groups, their order and so the names and
    bytes are the same: the digest only keys a group."""
    from collections import defaultdict

    import onnx
    from optimum.onnx.transformations_utils import _create_name_sharing_dict, _replace_input_names

    duplicates: defaultdict[tuple, set[tuple[str, int]]] = defaultdict(set)
    for i, model in enumerate(models):
        for tensor in model.graph.initializer:
            if not _stays_in_branch(tensor):
                # the bytes optimum hashes: raw_data is what numpy_helper.to_array reads (little-endian)
                data = tensor.raw_data or onnx.numpy_helper.to_array(tensor).tobytes()
                duplicates[(tensor.data_type, hashlib.sha256(data).digest(), tuple(tensor.dims))].add((tensor.name, i))
    names = _create_name_sharing_dict(duplicates, suffix=suffix)
    _replace_input_names(models, names)
    shared, seen = [], set()
    for i, model in enumerate(models):
        for tensor in model.graph.initializer:
            name = names.get((tensor.name, i))
            if name is not None and name not in seen:
                seen.add(name)
                tensor.name = name
                shared.append(tensor)
    return shared


def _strip(model) -> None:
    """Drop what may carry machine-specific text: doc strings and metadata, in every (sub)graph."""
    model.doc_string = ""
    del model.metadata_props[:]

    def graph(g) -> None:
        g.doc_string = ""
        for node in g.node:
            node.doc_string = ""
            del node.metadata_props[:]
            for attr in node.attribute:
                if attr.HasField("g"):
                    graph(attr.g)
                for sub in attr.graphs:
                    graph(sub)

    graph(model.graph)


class _GraphWriter:
    """Writes an export's final graphs in a background thread, so that writing them to disk overlaps their
    validation, which reads the same bytes from memory (``graphs``: file name -> bytes). Leaving the ``with``
    block waits for every write and releases the bytes; a failed write then raises."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.graphs: dict[str, bytes] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gpux-graph-writer")
        self._writes: list = []

    def write(self, dest: Path, data: bytes) -> None:
        self.graphs[dest.name] = data
        self._writes.append(self._pool.submit(dest.write_bytes, data))

    def __enter__(self) -> _GraphWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._pool.shutdown()  # waits for the writes in flight
        self.graphs.clear()
        if exc_type is None:
            for write in self._writes:
                write.result()


def _write(dest: Path, data: bytes, writer: _GraphWriter | None) -> None:
    """Write a serialized graph to ``dest``: now, or in the background by ``writer``."""
    if writer is None:
        dest.write_bytes(data)
    else:
        writer.write(dest, data)


def _check(model) -> None:
    """onnx's checker on a graph (a ModelProto, its bytes or its file), as optimum checks what it writes: an op
    of another domain (onnxruntime's) is not an error."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        if "No Op registered for" not in str(e):
            raise


def _save(
    model,
    dest: Path,
    size: int,
    *,
    check: bool = False,
    writer: _GraphWriter | None = None,
    original: bytes | None = None,
) -> None:
    """Save a graph that was read from ``size`` bytes (its files, or the bytes it was parsed from); over 2 GB its
    weights go to ``<name>_data`` next to it (a relative location). ``check``: run onnx's checker on it, before
    writing it (over 2 GB onnx checks only files: after). With a ``writer``, a graph read from under 1 GB is handed
    to it: written in the background, its bytes kept. ``original``: see `_serialized`.

    A graph read from under 1 GB is far from the limit (stripping and fp16 only shrink it), so it is
    serialized once, without ``ByteSize()`` first: that walks the whole graph, as long as serializing it does,
    and checked in those bytes. The bytes are those ``onnx.save`` writes (it writes ``SerializeToString()`` of a
    graph without external data).
    """
    import onnx

    if size < TWO_GB // 2:
        data = _serialized(model, original)
        if check:
            _check(data)
        _write(dest, data, writer)
    elif model.ByteSize() < TWO_GB:
        if check:
            _check(model)
        onnx.save(model, str(dest))
    else:
        onnx.save(
            model,
            str(dest),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{dest.name}_data",
            size_threshold=1024,
        )
        if check:
            _check(str(dest))


def _serialized(model, original: bytes | None) -> bytes:
    """``model.SerializeToString()``. With ``original``, the bytes ``model`` was parsed from before changes that
    dropped initializers or left them as they were (stripping, deduplicating tied weights), the initializers'
    encodings are copied from those instead of encoded again (`onnx_wire.with_initializers`; 0.6 s less for
    vit-base's 346 MB): the same bytes. ``model`` then loses its initializers."""
    if original is None:
        return model.SerializeToString()
    from gpuxbuild.build.onnx_wire import with_initializers

    names = [initializer.name for initializer in model.graph.initializer]
    del model.graph.initializer[:]
    return with_initializers(model.SerializeToString(), original, names)


def _copy_runtime_files(source: Path, out: Path, task: str, seq2seq: bool) -> None:
    """Tokenizer (always fast; a CTC vocabulary for CTC speech models), config, generation config, the
    preprocessor config of vision and audio models and sentence-transformers metadata."""
    names = ["config.json", "generation_config.json", PREPROCESSOR_CONFIG, *SENTENCE_TRANSFORMERS_FILES]
    if task == "automatic-speech-recognition" and not seq2seq:
        names += CTC_TOKENIZER_FILES
    elif takes_text(task) or seq2seq:
        from gpuxbuild.build.tokenizer import ensure_fast_tokenizer

        ensure_fast_tokenizer(source, out)
    if (source / "modules.json").is_file():
        for module in json.loads((source / "modules.json").read_text()):
            path = module.get("path") or ""
            if path and (source / path / "config.json").is_file():
                names.append(f"{path}/config.json")
    for rel in names:
        if (source / rel).is_file():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, out / rel)


# --------------------------------------------------------------------------- validation

AUTO_CLASSES = {
    "audio-classification": "AutoModelForAudioClassification",
    "automatic-speech-recognition": "AutoModelForCTC",  # AutoModelForSpeechSeq2Seq for Whisper
    "feature-extraction": "AutoModel",
    "image-classification": "AutoModelForImageClassification",
    "image-feature-extraction": "AutoModel",
    "zero-shot-image-classification": "AutoModelForZeroShotImageClassification",
    "image-segmentation": "AutoModelForSemanticSegmentation",
    "object-detection": "AutoModelForObjectDetection",
    "fill-mask": "AutoModelForMaskedLM",
    "question-answering": "AutoModelForQuestionAnswering",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "text-generation": "AutoModelForCausalLM",
    "text2text-generation": "AutoModelForSeq2SeqLM",
}


def _validate(
    source: Path,
    out: Path,
    graphs: dict[str, str],
    task: str,
    name: str,
    dtype: str,
    quantize: str | None,
    atol: float | None,
    model=None,
    graph_bytes: dict[str, bytes] | None = None,
) -> float:
    """Run the final graphs and the PyTorch model on a sample text; raise ValidationError beyond the tolerance.

    ``model`` is the PyTorch model the export loaded (None: load it from ``source``); ``graph_bytes``: graph
    file name -> the bytes being written there (read from memory, not from the file). Generative graphs are
    checked on their first step (empty KV cache), the step every generation starts with.
    """
    import numpy as np
    import onnxruntime as ort
    import torch
    import transformers

    media = not takes_text(task)
    speech_seq2seq = media and "encoder" in graphs
    if not media:
        tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
        ids = np.array([tokenizer(SAMPLE_TEXT)["input_ids"][:24]], dtype=np.int64)
        mask = np.ones_like(ids)
    if model is None:
        auto = "AutoModelForSpeechSeq2Seq" if speech_seq2seq else AUTO_CLASSES[task]
        model = getattr(transformers, auto).from_pretrained(source, local_files_only=True)
    model = model.eval()
    options = ort.SessionOptions()
    options.log_severity_level = 3

    def session(file_name: str):
        graph = (graph_bytes or {}).get(file_name) or str(out / file_name)
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    pairs: list[tuple[str, np.ndarray, np.ndarray]] = []  # (output, onnx, torch)
    with torch.no_grad():
        if "encoder" in graphs:
            encoder, decoder = session(graphs["encoder"]), session(graphs["decoder"])
            start = model.config.decoder_start_token_id
            if speech_seq2seq:  # Whisper: 30 s of log-mel features, then a few text tokens
                encoder_inputs = _media_sample(model.config)
                mask = np.ones((1, 1), dtype=np.int64)  # no encoder attention mask: the decoder takes none
                dec_ids = np.array([[start, 1, 2, 3]], dtype=np.int64)
            else:
                encoder_inputs = {"input_ids": ids, "attention_mask": mask}
                dec_ids = np.concatenate([np.array([[start]], dtype=np.int64), ids[:, :3]], axis=1)
            (hidden,) = encoder.run(["last_hidden_state"], _feeds(encoder, encoder_inputs))
            ref = model(
                **{k: torch.from_numpy(v) for k, v in encoder_inputs.items()},
                decoder_input_ids=torch.from_numpy(dec_ids),
                use_cache=False,
            )
            pairs.append(("encoder last_hidden_state", hidden, ref.encoder_last_hidden_state.numpy()))
            feeds = {
                "input_ids": dec_ids,
                "encoder_hidden_states": ref.encoder_last_hidden_state.numpy(),
                "encoder_attention_mask": mask,
                "use_cache_branch": np.array([False]),
            }
            (logits,) = decoder.run(["logits"], _feeds(decoder, feeds))
            pairs.append(("decoder logits", logits, ref.logits.numpy()))
        else:
            graph = session(graphs["model"])
            feeds = (
                _media_sample(model.config)
                if media
                else {
                    "input_ids": ids,
                    "attention_mask": mask,
                    "token_type_ids": np.zeros_like(ids),
                    "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None],
                }
            )
            if task in IMAGE_TEXT_TASKS:  # CLIP: an image for the image tower as well
                feeds.update(_media_sample(model.config.vision_config))
            torch_inputs: dict[str, torch.Tensor | bool] = {
                k: torch.from_numpy(v)
                for k, v in feeds.items()
                if k in {i.name for i in graph.get_inputs()} and k != "position_ids"
            }
            if task == "text-generation":
                torch_inputs["use_cache"] = False
            ref = model(**torch_inputs)
            names = [o.name for o in graph.get_outputs() if not o.name.startswith("present")]
            for out_name, value in zip(names, graph.run(names, _feeds(graph, feeds)), strict=True):
                if out_name in ref:
                    pairs.append((out_name, value, ref[out_name].numpy()))
    if not pairs:
        raise ExportError(f"{name}: no ONNX output matches the PyTorch model's outputs", "report this model")

    max_diff = 0.0
    for label, got, want in pairs:
        diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        tol = atol if atol is not None else _tolerance(task, dtype, quantize, want)
        max_diff = max(max_diff, diff)
        if not diff <= tol:  # also catches NaN
            raise ValidationError(
                f"{name}: ONNX output '{label}' differs from PyTorch by {diff:.3g} (tolerance {tol:.3g})",
                "the exported graph is not faithful; try another opset/optimize level, or raise `atol` if expected",
                max_diff=diff,
            )
    return max_diff


def _media_sample(config) -> dict:
    """A fixed random image (pixel_values), second of sound (input_values) or log-mel spectrogram (input_features;
    AST's input_values) for the model of ``config``."""
    import numpy as np

    rng = np.random.default_rng(0)
    if getattr(config, "model_type", None) == "audio-spectrogram-transformer":  # log-mel frames, then bins
        return {"input_values": rng.standard_normal((1, config.max_length, config.num_mel_bins), dtype=np.float32)}
    if hasattr(config, "num_mel_bins"):  # Whisper: 30 s of log-mel features
        return {"input_features": rng.standard_normal((1, config.num_mel_bins, 3000), dtype=np.float32)}
    if hasattr(config, "num_channels"):
        size = getattr(config, "image_size", 64)  # convolutional nets take any size; ViTs only their own
        size = size if isinstance(size, int) else size[0]
        return {"pixel_values": rng.standard_normal((1, config.num_channels, size, size), dtype=np.float32)}
    return {"input_values": rng.standard_normal((1, 16000), dtype=np.float32) * 0.1}


def _tolerance(task: str, dtype: str, quantize: str | None, reference) -> float:
    tol = TASK_ATOL[task] * (FP16_ATOL_FACTOR if dtype == "fp16" else 1)
    if quantize == "int8":
        tol = max(tol, INT8_RELATIVE_ATOL * float(abs(reference).max()))
    return tol


def _feeds(session, known: dict) -> dict:
    """Inputs for ``session``: the known ones it takes, and an empty KV cache for every past_key_values input."""
    import numpy as np

    feeds = {}
    for spec in session.get_inputs():
        if spec.name in known:
            feeds[spec.name] = known[spec.name]
        elif spec.name.startswith("past_key_values"):
            # batch 1, cache length 0; fixed dims (heads, head size) as declared
            shape = [d if isinstance(d, int) else (1 if "batch" in str(d) else 0) for d in spec.shape]
            dtype = np.float16 if "float16" in spec.type else np.float32
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
        else:
            raise ExportError(f"graph input {spec.name!r} is unknown to the validator", "report this model")
    return feeds
