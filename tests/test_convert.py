"""Task vocabulary, fast tokenizers, and the ONNX export of every tiny architecture."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tinymodels
from helpers import check_exported_files, gpux, publish, read_lock, write_manifest

from gpuxbuild.build.convert import (
    ExportPool,
    ExportResult,
    UnsupportedModelError,
    ValidationError,
    _DeferredPreprocessors,
    _shape_inference_without_weights,
    _worker_env,
    export_onnx,
)
from gpuxbuild.build.tokenizer import ensure_fast_tokenizer
from gpuxbuild.errors import GpuxError, MissingExtraError
from gpuxbuild.tasks import SUPPORTED_TASKS, infer_task, normalize_task, optimum_task, pipeline_task

pytestmark = pytest.mark.convert  # exports with torch, or runs what it exported

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- tasks


@pytest.mark.parametrize(
    "tag, task",
    [
        ("sentence-similarity", "feature-extraction"),
        ("summarization", "text2text-generation"),
        ("translation", "text2text-generation"),
        ("translation_en_to_de", "text2text-generation"),
        ("text-generation-with-past", "text-generation"),
        ("text-classification", "text-classification"),
        ("sentiment-analysis", "text-classification"),
        ("ner", "token-classification"),
        ("image-classification", "image-classification"),
        ("automatic-speech-recognition", "automatic-speech-recognition"),
        ("audio-classification", "audio-classification"),
        ("zero-shot-image-classification", "zero-shot-image-classification"),
        ("image-feature-extraction", "image-feature-extraction"),
        ("image-segmentation", "image-segmentation"),
        ("semantic-segmentation", "image-segmentation"),
        ("depth-estimation", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_task(tag, task):
    assert normalize_task(tag) == task


@pytest.mark.parametrize(
    "arch, extra, task",
    [
        ("BertForSequenceClassification", {}, "text-classification"),
        ("GPT2LMHeadModel", {}, "text-generation"),
        ("LlamaForCausalLM", {}, "text-generation"),
        ("T5ForConditionalGeneration", {"is_encoder_decoder": True}, "text2text-generation"),
        ("BartForConditionalGeneration", {"is_encoder_decoder": True}, "text2text-generation"),
        ("LlavaForConditionalGeneration", {}, None),
        ("BertModel", {}, "feature-extraction"),
        ("BertForTokenClassification", {}, "token-classification"),
        ("RobertaForQuestionAnswering", {}, "question-answering"),
        ("AlbertForMaskedLM", {}, "fill-mask"),
        ("BertForMultipleChoice", {}, None),
        ("ViTForImageClassification", {}, "image-classification"),
        ("ConvNextForImageClassification", {}, "image-classification"),
        ("SegformerForSemanticSegmentation", {"model_type": "segformer"}, "image-segmentation"),
        ("Wav2Vec2ForCTC", {"model_type": "wav2vec2"}, "automatic-speech-recognition"),
        ("Wav2Vec2ForSequenceClassification", {"model_type": "wav2vec2"}, "audio-classification"),
        ("ASTForAudioClassification", {"model_type": "audio-spectrogram-transformer"}, "audio-classification"),
        (
            "WhisperForConditionalGeneration",
            {"model_type": "whisper", "is_encoder_decoder": True},
            "automatic-speech-recognition",
        ),
        ("Speech2TextForConditionalGeneration", {"model_type": "speech_to_text", "is_encoder_decoder": True}, None),
        ("CLIPModel", {"model_type": "clip"}, "zero-shot-image-classification"),
    ],
)
def test_infer_task_from_architecture(arch, extra, task):
    assert infer_task({"architectures": [arch]} | extra, ["config.json"]) == task


def test_vision_and_audio_backbones_are_not_text_feature_extractors():
    assert infer_task({"architectures": ["ViTModel"]}, ["config.json", "preprocessor_config.json"]) is None
    files = ["preprocessor_config.json", "tokenizer.json"]
    assert infer_task({"architectures": ["CLIPModel"], "model_type": "clip"}, files) == "zero-shot-image-classification"


def test_image_text_pipeline_tags_name_clip_models_only():
    assert pipeline_task("zero-shot-image-classification", {"model_type": "clip"}) == "zero-shot-image-classification"
    assert pipeline_task("image-feature-extraction", {"model_type": "clip"}) == "image-feature-extraction"
    assert pipeline_task("image-feature-extraction", {"model_type": "dinov2"}) is None  # detected from config.json
    assert pipeline_task("image-classification", {"model_type": "vit"}) == "image-classification"
    assert pipeline_task(None, None) is None


def test_infer_task_sentence_transformers_and_unknown():
    assert infer_task({"architectures": ["BertForMaskedLM"]}, ["config.json", "modules.json"]) == "feature-extraction"
    assert infer_task({}, ["config.json"]) is None
    assert infer_task(None, []) is None
    assert optimum_task("text-generation") == "text-generation-with-past"
    assert optimum_task("fill-mask") == "fill-mask"
    assert optimum_task("image-feature-extraction") == "feature-extraction"  # CLIP's two-tower graph
    assert optimum_task("zero-shot-image-classification") == "zero-shot-image-classification"
    assert optimum_task("image-segmentation") == "semantic-segmentation"  # logits with dynamic height and width
    assert set(SUPPORTED_TASKS) >= {normalize_task(t) for t in SUPPORTED_TASKS}


def test_option_errors_are_user_errors(tmp_path):
    source = tinymodels.write_repo("bert", tmp_path / "bert")
    for kwargs in (
        {"task": "depth-estimation"},
        {"task": "fill-mask", "dtype": "bf16"},
        {"task": "fill-mask", "optimize": 3},
        {"task": "fill-mask", "quantize": "int4"},
        {"task": "fill-mask", "dtype": "fp16", "quantize": "int8"},
        {"task": "text2text-generation", "dtype": "fp16"},
    ):
        with pytest.raises(GpuxError) as info:
            export_onnx(source, tmp_path / "out", **kwargs)
        assert info.value.hint and "bert" in info.value.message


# --------------------------------------------------------------------------- tokenizer


def test_ensure_fast_tokenizer_copies_and_converts(tmp_path):
    from tokenizers import Tokenizer

    fast = ensure_fast_tokenizer(tinymodels.repo_dir("bert"), tmp_path / "a")
    assert fast == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert (tmp_path / "a/tokenizer.json").read_bytes() == tinymodels.make_repo("bert")["tokenizer.json"]

    slow = tinymodels.repo_dir("slow-tokenizer-only")
    assert ensure_fast_tokenizer(slow, tmp_path / "b") == fast
    ensure_fast_tokenizer(slow, tmp_path / "c")
    assert (tmp_path / "b/tokenizer.json").read_bytes() == (tmp_path / "c/tokenizer.json").read_bytes()
    reference = Tokenizer.from_file(str(tmp_path / "a/tokenizer.json"))
    converted = Tokenizer.from_file(str(tmp_path / "b/tokenizer.json"))
    text = "Paris is the capital of France; unbelievable!"
    assert converted.encode(text).ids == reference.encode(text).ids

    (tmp_path / "empty").mkdir()
    with pytest.raises(GpuxError, match="no tokenizer files"):
        ensure_fast_tokenizer(tmp_path / "empty", tmp_path / "d")


# --------------------------------------------------------------------------- export

# The vision and audio models test_media.py builds end to end are checked there (check_exported_files), not
# exported a second time here.
EXPORT_KINDS = sorted(set(tinymodels.KINDS) - {"onnx-shipped", "unsupported", *tinymodels.END_TO_END_MEDIA})


def _task(kind: str) -> str:
    root = tinymodels.repo_dir(kind)
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return infer_task(json.loads((root / "config.json").read_text()), files)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pool():
    """Two long-lived export workers for this module's exports: torch and optimum are imported twice, not once
    per export (what `gpux build` does too). A pool worker's bytes do not depend on what it exported before:
    the byte-identity tests below compare them with fresh processes."""
    with ExportPool(2) as workers:
        yield workers


@pytest.fixture(scope="module")
def exported(request, tmp_path_factory, pool):
    """kind -> (ExportResult, out folder) of a default export.

    The kinds the selected tests need are exported up front, two at a time, in the module's worker pool.
    """

    needed = sorted(
        {
            item.callspec.params["kind"]
            for item in request.session.items
            if getattr(item, "originalname", "") in KIND_TESTS and "kind" in item.callspec.params
        }
        | (
            {k for k in BUILT if k != "onnx-shipped"}
            if any(i.name == BUILD_TEST for i in request.session.items)
            else set()
        )
    )
    root = tmp_path_factory.mktemp("export")

    def export(kind: str) -> tuple[ExportResult, Path]:
        return export_onnx(tinymodels.repo_dir(kind), root / kind, task=_task(kind), pool=pool), root / kind

    for kind in needed:
        tinymodels.repo_dir(kind)  # generate sequentially: repo generation is in-process
    with ThreadPoolExecutor(max_workers=2) as threads:
        futures = {kind: threads.submit(export, kind) for kind in needed}
    cache = {kind: future.result() for kind, future in futures.items()}

    def get(kind: str) -> tuple[ExportResult, Path]:
        if kind not in cache:
            cache[kind] = export(kind)
        return cache[kind]

    return get


def test_export_worker_imports_without_the_collector_then_freezes_them():
    """The worker imports torch, transformers and optimum with the cyclic garbage collector off (it traversed
    their objects again and again while they were created); afterwards the collector is on again, for the exports,
    and the imported objects are frozen out of its reach."""
    code = (
        "import gc, sys\n"
        "from gpuxbuild.build._export_worker import serve\n"
        "serve()\n"  # stdin is empty: no request, it returns once the imports are done
        "print('collector', gc.isenabled(), gc.get_freeze_count(), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    _, enabled, frozen = done.stderr.split()[-3:]
    assert enabled == "True"
    assert int(frozen) > 100_000  # torch alone leaves far more objects than that


def test_preprocessors_optimum_loads_up_front_load_once_when_first_read():
    """The few ONNX configs that read optimum's preprocessors (pix2struct: `len`, then an index) still get them."""
    calls = []
    deferred = _DeferredPreprocessors(lambda: calls.append("load") or ["tokenizer", "processor"])
    assert not calls and deferred is not None
    assert len(deferred) == 2 and deferred[1] == "processor" and list(deferred) == ["tokenizer", "processor"]
    assert calls == ["load"]


def test_export_worker_threads_wait_passively_unless_told_otherwise():
    assert _worker_env(None)["OMP_WAIT_POLICY"] == "PASSIVE"
    assert _worker_env({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"


_ALLOCATION = """
import sys
from gpuxbuild.allocator import release_freed_memory, reuse_freed_memory
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
if sys.argv[1] == "call":
    reuse_freed_memory()
elif sys.argv[1] == "gpux":  # the command, as its console script runs it
    from gpuxbuild.cli import main
    sys.argv = ["gpux", "--version"]
    try:
        main()
    except SystemExit:
        pass
before = rss()
buffer = bytearray(256 << 20)
buffer[::4096] = b"x" * len(range(0, 256 << 20, 4096))
del buffer
kept = rss()
release_freed_memory()
print(before, kept, rss())
"""


def _allocation(env: dict[str, str], how: str) -> tuple[int, int]:
    """MB more resident than before a 256 MB buffer: after it was freed, and after release_freed_memory()."""
    done = subprocess.run([sys.executable, "-c", _ALLOCATION, how], env=env, capture_output=True, text=True, check=True)
    before, kept, released = map(int, done.stdout.splitlines()[-1].split())
    return kept - before, released - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings")
def test_freed_memory_is_kept_for_reuse_in_the_worker_and_in_gpux_until_released():
    """In the export worker's environment, and in a process that called reuse_freed_memory() (`gpux`, as it
    starts), a freed 256 MB buffer stays with the process for the next large buffer to reuse without
    faulting in fresh pages, until release_freed_memory() gives it back (the worker, after each export). A user's
    own allocator settings are kept."""
    plain = {k: v for k, v in _worker_env(None).items() if not k.startswith("MALLOC_")}
    for env, how in ((_worker_env(None), "env"), (plain, "call"), (plain, "gpux")):
        kept, released = _allocation(env, how)
        assert kept > 200 and released < 50, (how, kept, released)
    kept, _ = _allocation(plain, "env")
    assert kept < 50  # glibc's default: the buffer was its own mapping, gone when freed
    kept, _ = _allocation(plain | {"MALLOC_MMAP_MAX_": "65536"}, "call")
    assert kept < 50  # the user's setting stands
    assert _worker_env({"MALLOC_MMAP_MAX_": "65536"})["MALLOC_MMAP_MAX_"] == "65536"


KIND_TESTS = {
    "test_export_kind",
    "test_export_is_byte_identical_across_processes_and_folders",
    "test_graph_io_from_the_export_is_what_the_files_say",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", EXPORT_KINDS)
def test_export_kind(kind, exported):
    result, out = exported(kind)
    assert result.max_diff is not None and result.max_diff < 1e-3
    assert {"export", "validate", "total"} <= set(result.stages)
    check_exported_files(kind, _task(kind), out, result.graphs)


BUILT = [*tinymodels.TEXT_ARCHITECTURES, "onnx-shipped", "pickle-only"]  # the build matrix
BUILD_TEST = "test_every_architecture_builds_reproducibly"


@pytest.mark.slow
def test_every_architecture_builds_reproducibly(hub, repo_id, tmp_path, exported):
    """`gpux build` of every text architecture (from the test Hub, in a nested folder, another hash seed, a fresh
    store) builds each one, fails the unsupported one alone, locks what it built, and places graph and runtime
    files byte-identical to this module's exports (other processes, folders and hash seed)."""
    kinds = [*BUILT, "unsupported"]
    project = tmp_path / "two" / "nested"
    models = {}
    for kind in kinds:
        publish(hub, f"{repo_id}-{kind}", kind)
        models[kind] = {"source": f"hf:{repo_id}-{kind}", **({"allow_pickle": True} if kind == "pickle-only" else {})}
    write_manifest(project, models)
    env = {**os.environ, "GPUX_HOME": str(tmp_path / "home"), "PYTHONHASHSEED": "2"}
    r = gpux("build", "--json", "--jobs", "2", cwd=project, env=env, check=False)
    assert r.returncode == 1, r.stderr  # the unsupported model fails the run, at the end
    status = {m["name"]: m for m in json.loads(r.stdout)["models"]}
    failed = {n for n, m in status.items() if m["status"] == "failed"}
    assert failed == {"unsupported"}, {n: status[n]["error"] for n in failed}
    err = status["unsupported"]["error"]
    assert "unsupported" in err.lower() or "not supported" in err.lower()
    lock = read_lock(project)["models"]
    for kind in BUILT:
        assert lock[kind]["artifact"]["digest"] == status[kind]["digest"]
        if kind == "onnx-shipped":
            continue
        built = _files(Path(status[kind]["path"]))
        for path, data in _files(exported(kind)[1]).items():
            assert built.get(path) == data, f"{kind}: {path} differs from the export's"


def _export_in_subprocess(source: Path, out: Path, task: str, hash_seed: str, **options) -> None:
    code = (
        "import sys, json; from gpuxbuild.build.convert import export_onnx; "
        "export_onnx(sys.argv[1], sys.argv[2], task=sys.argv[3], **json.loads(sys.argv[4]))"
    )
    env = os.environ | {"PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", code, str(source), str(out), task, json.dumps(options)],
        env=env,
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bert", "gpt2", "t5"])
def test_export_is_byte_identical_across_processes_and_folders(kind, exported, tmp_path):
    _, first = exported(kind)
    source = shutil.copytree(tinymodels.repo_dir(kind), tmp_path / "elsewhere" / "src-copy")
    second = tmp_path / "other-out" / "deeper"
    _export_in_subprocess(source, second, _task(kind), hash_seed="12345")
    assert _files(first) == _files(second)
    for data in _files(second).values():
        assert str(tmp_path).encode() not in data and b"/tmp/" not in data


@pytest.mark.slow
def test_unsupported_architecture_is_named(tmp_path, pool):
    with pytest.raises(UnsupportedModelError) as info:
        export_onnx(
            tinymodels.repo_dir("unsupported"), tmp_path / "out", task="text-generation", name="tiny-xlnet", pool=pool
        )
    message = str(info.value)
    assert "XLNetLMHeadModel" in message and "text-generation" in message and "tiny-xlnet" in message
    assert not (tmp_path / "out").exists()

    with pytest.raises(UnsupportedModelError, match=r"BertForSequenceClassification.*text2text-generation") as info:
        export_onnx(tinymodels.repo_dir("bert"), tmp_path / "out", task="text2text-generation", pool=pool)
    assert "text-classification" in info.value.hint

    # CLIP's tasks need its two towers; its two towers run only as those tasks.
    with pytest.raises(UnsupportedModelError, match=r"zero-shot-image-classification .* \(CLIP\), not ViTForImage"):
        export_onnx(tinymodels.repo_dir("vit"), tmp_path / "out", task="zero-shot-image-classification", pool=pool)
    with pytest.raises(UnsupportedModelError, match="CLIPModel runs as image-feature-extraction or zero-shot") as info:
        export_onnx(tinymodels.repo_dir("clip"), tmp_path / "out", task="feature-extraction", pool=pool)
    assert "task: zero-shot-image-classification" in info.value.hint


def test_unsupported_task_hint_names_only_tasks_the_export_has():
    """DETR's optimum "image-segmentation" is panoptic; gpux exports image-segmentation as semantic-segmentation."""
    from gpuxbuild.build.convert import _check_supported

    pytest.importorskip("optimum.exporters.onnx.model_configs")  # registers the ONNX configs, as the export does
    config = {"model_type": "detr", "architectures": ["DetrForSegmentation"]}
    with pytest.raises(UnsupportedModelError, match="cannot be exported to ONNX for task image-segmentation") as info:
        _check_supported("tiny-detr", config, "image-segmentation")
    assert info.value.hint == "set `task:` to one it supports: feature-extraction, object-detection"


def test_graph_writer_writes_in_the_background_and_raises_a_failed_write(tmp_path):
    """Final graphs are written while validation reads their bytes from memory: leaving the block waits for the
    writes and releases the bytes; a write that failed raises then (the export fails, nothing half-written is
    kept: export_onnx removes its output folder)."""
    from gpuxbuild.build.convert import _GraphWriter

    with _GraphWriter() as writer:
        writer.write(tmp_path / "model.onnx", b"graph")
        assert writer.graphs == {"model.onnx": b"graph"}
    assert (tmp_path / "model.onnx").read_bytes() == b"graph" and writer.graphs == {}

    with pytest.raises(FileNotFoundError), _GraphWriter() as writer:
        writer.write(tmp_path / "missing" / "model.onnx", b"graph")
    with pytest.raises(ValueError, match="validation"), _GraphWriter() as writer:  # the export's own error wins
        writer.write(tmp_path / "missing" / "model.onnx", b"graph")
        raise ValueError("validation failed")


@pytest.mark.slow
def test_missing_convert_extra(tmp_path):
    shim = tmp_path / "shim" / "torch"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('torch is not installed')\n")
    with pytest.raises(MissingExtraError, match="convert") as info:
        export_onnx(
            tinymodels.repo_dir("bert"),
            tmp_path / "out",
            task="text-classification",
            name="tiny-bert",
            env={"PYTHONPATH": str(shim.parent)},
        )
    assert "tiny-bert" in info.value.message and "pip install" in info.value.hint


@pytest.mark.slow
@pytest.mark.parametrize(
    "options, check",
    [
        ({"dtype": "fp16", "optimize": 1}, "fp16"),
        ({"quantize": "int8", "optimize": 2}, "int8"),
    ],
)
def test_bert_options_are_deterministic(options, check, tmp_path, pool):
    import numpy as np
    import onnx

    source = tinymodels.repo_dir("bert")
    copy = shutil.copytree(source, tmp_path / "src")
    with ThreadPoolExecutor(1) as thread:  # the fresh process runs beside the pool's export
        fresh = thread.submit(_export_in_subprocess, copy, tmp_path / "b", "text-classification", "7", **options)
        first = export_onnx(source, tmp_path / "a", task="text-classification", pool=pool, **options)
        fresh.result()
    assert first.max_diff is not None and {"optimize", {"fp16": "fp16", "int8": "quantize"}[check]} <= set(first.stages)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")

    graph = onnx.load(str(tmp_path / "a/model.onnx"))
    assert [o.type.tensor_type.elem_type for o in graph.graph.output] == [onnx.TensorProto.FLOAT]
    weights = [onnx.numpy_helper.to_array(t).dtype for t in graph.graph.initializer]
    if check == "fp16":
        assert np.dtype("float16") in weights
    else:
        assert np.dtype("int8") in weights
        assert any(
            n.op_type in {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"} for n in graph.graph.node
        )


@pytest.mark.slow
def test_seq2seq_int8_with_optimizer(tmp_path, pool):
    result = export_onnx(
        tinymodels.repo_dir("t5"),
        tmp_path / "out",
        task="text2text-generation",
        optimize=99,
        quantize="int8",
        pool=pool,
    )
    assert result.graphs["decoder"] == "decoder_model_merged.onnx" and {"quantize", "merge"} <= set(result.stages)


@pytest.mark.slow
def test_decoders_merged_in_memory_are_optimums_merge_to_the_byte(tmp_path):
    """Small decoders merge in memory (read once, written once as the merged graph), straight from the export
    or after post-processing: the bytes and inputs/outputs are those of optimum's own merge_decoders of the
    stripped files, stripped (the path of decoders over 1 GB); onnx's checker still refuses a broken merged
    graph, writing nothing."""
    import onnx
    from optimum.exporters.onnx import main_export
    from optimum.onnx import merge_decoders

    from gpuxbuild.build.convert import DECODERS, _merge_decoders, _post_process, _strip
    from gpuxbuild.build.gpuxyml import graph_io

    raw, files, memory, broken = (tmp_path / name for name in ("raw", "files", "memory", "broken"))
    task = "text2text-generation-with-past"
    main_export(str(tinymodels.repo_dir("t5")), raw, task=task, device="cpu", do_validation=False, no_post_process=True)
    for folder in (files, memory, broken):
        folder.mkdir()
    for name in DECODERS:
        _post_process(raw / name, files / name, {}, None, "fp32", None, stage=print)
    merge_decoders(files / DECODERS[0], files / DECODERS[1], save_path=files / "merged.onnx", strict=False)
    expected = onnx.load(str(files / "merged.onnx"))
    _strip(expected)
    expected_io = graph_io(expected, "decoder_model_merged.onnx")

    for source, dest in ((raw, memory / "decoder_model_merged.onnx"), (files, files / "decoder_model_merged.onnx")):
        io = _merge_decoders(source, dest)
        assert dest.read_bytes() == expected.SerializeToString()
        assert io == expected_io

    graph = onnx.load(str(raw / DECODERS[0]))
    graph.graph.node[0].input[0] = "defined-nowhere"
    onnx.save(graph, str(broken / DECODERS[0]))
    shutil.copy(raw / DECODERS[1], broken / DECODERS[1])
    with pytest.raises(onnx.checker.ValidationError, match="defined-nowhere"):
        _merge_decoders(broken, broken / "decoder_model_merged.onnx")
    assert not (broken / "decoder_model_merged.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind, auto", [("bert-mlm", "AutoModelForMaskedLM"), ("gpt2", "AutoModelForCausalLM")])
def test_tied_weights_deduplicated_in_memory_are_optimums_post_processing_to_the_byte(kind, auto, tmp_path):
    """A single graph's tied weights (the LM head sharing the input embedding) are stored once on the graph the
    build reads anyway: the bytes and inputs/outputs are those of optimum's own post-processing, stripped, also
    from a graph kept in memory; onnx's checker still refuses a broken graph, writing nothing."""
    import onnx
    import transformers
    from optimum.exporters.onnx import main_export

    from gpuxbuild.build.convert import _fixing_dynamic_axes_only_when_declared, _post_process, _strip
    from gpuxbuild.build.exported_graphs import ExportedGraphs
    from gpuxbuild.build.gpuxyml import graph_io

    source = tinymodels.repo_dir(kind)
    raw, optimum_done, ours = tmp_path / "raw", tmp_path / "optimum", tmp_path / "ours"
    task = optimum_task(_task(kind))
    for folder, post_process in ((raw, False), (optimum_done, True)):
        main_export(str(source), folder, task=task, device="cpu", do_validation=False, no_post_process=not post_process)
    expected = onnx.load(str(optimum_done / "model.onnx"))
    _strip(expected)
    model = getattr(transformers, auto).from_pretrained(source)
    initializers = len(onnx.load(str(raw / "model.onnx")).graph.initializer)
    assert len(expected.graph.initializer) < initializers  # there was a duplicate to remove

    ours.mkdir()
    io = _post_process(raw / "model.onnx", ours / "model.onnx", {}, None, "fp32", None, stage=print, tied_model=model)
    assert (ours / "model.onnx").read_bytes() == expected.SerializeToString()
    assert io == graph_io(expected, "model.onnx")

    # the same from a graph kept in memory, serialized with the exporter's weight bytes (onnx_wire.with_initializers)
    kept, ours_kept = tmp_path / "kept", tmp_path / "ours-kept"
    exported = ExportedGraphs(kept)
    with exported.capturing(), _fixing_dynamic_axes_only_when_declared(exported):
        main_export(str(source), kept, task=task, device="cpu", do_validation=False, no_post_process=True)
    assert not (kept / "model.onnx").exists()
    ours_kept.mkdir()
    _post_process(kept / "model.onnx", ours_kept / "model.onnx", {}, None, "fp32", None, print, model, None, exported)
    assert (ours_kept / "model.onnx").read_bytes() == expected.SerializeToString()

    broken = onnx.load(str(raw / "model.onnx"))
    broken.graph.node[-1].input[0] = "defined-nowhere"
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    with pytest.raises(onnx.checker.ValidationError, match="defined-nowhere"):
        _post_process(tmp_path / "broken.onnx", tmp_path / "out.onnx", {}, None, "fp32", None, print, model)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.slow
def test_validation_failure_names_max_difference(tmp_path, pool):
    with pytest.raises(ValidationError) as info:
        export_onnx(
            tinymodels.repo_dir("bert"),
            tmp_path / "out",
            task="text-classification",
            dtype="fp16",
            atol=1e-9,
            pool=pool,
        )
    assert info.value.max_diff > 1e-9
    assert f"{info.value.max_diff:.3g}" in info.value.message and "tolerance 1e-09" in info.value.message
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_validate_false_skips_validation(tmp_path, pool):
    result = export_onnx(
        tinymodels.repo_dir("bert-qa"), tmp_path / "out", task="question-answering", validate=False, opset=17, pool=pool
    )
    assert result.max_diff is None and "validate" not in result.stages
    import onnx

    graph = onnx.load(str(tmp_path / "out/model.onnx"))
    assert {o.domain: o.version for o in graph.opset_import}[""] == 17


def test_shape_inference_gets_no_weight_values_and_infers_the_same_graph(tmp_path, monkeypatch):
    """torch's exporter copied every weight into its shape inference, twice per export; the weights' values
    decide no shape, so the pass now gets only small tensors' values, and the exported bytes do not change."""
    import contextlib

    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(100, 32)
            self.proj = torch.nn.Linear(32, 64)
            self.scale = torch.nn.Parameter(torch.full((8,), 0.5))

        def forward(self, ids):
            x = self.proj(self.embed(ids)).reshape(ids.shape[0], -1, 8, 8) * self.scale
            return x.transpose(1, 2).flatten(2)

    given: list[dict[str, tuple]] = []
    inference = torch._C._jit_pass_onnx_graph_shape_type_inference

    def spy(graph, params_dict, opset_version):
        given.append({name: (value.is_floating_point(), value.numel()) for name, value in params_dict.items()})
        return inference(graph, params_dict, opset_version)

    monkeypatch.setattr(torch._C, "_jit_pass_onnx_graph_shape_type_inference", spy)

    def export(path: Path, context) -> tuple[bytes, list[dict[str, tuple]]]:
        given.clear()
        torch.manual_seed(0)
        net = Net().eval()
        with context, torch.no_grad():
            torch.onnx.export(
                net,
                (torch.zeros(2, 5, dtype=torch.long),),
                str(path),
                dynamo=False,
                input_names=["ids"],
                output_names=["out"],
                dynamic_axes={"ids": {0: "batch", 1: "sequence"}, "out": {0: "batch"}},
            )
        return path.read_bytes(), list(given)

    plain, plain_given = export(tmp_path / "plain.onnx", contextlib.nullcontext())
    trimmed, trimmed_given = export(tmp_path / "trimmed.onnx", _shape_inference_without_weights())
    assert trimmed == plain
    weights = {(True, 100 * 32), (True, 64 * 32)}
    assert plain_given and all(weights <= set(g.values()) for g in plain_given)
    assert trimmed_given and not any(weights & set(g.values()) for g in trimmed_given)
    assert all((True, 8) in g.values() for g in trimmed_given)  # small tensors keep their values


@pytest.mark.slow
def test_export_loads_the_weights_once_and_no_preprocessor_it_does_not_use(tmp_path):
    """Validation compares the graphs with the model the export loaded, not a second copy read from disk, and
    the export does not load the tokenizer through optimum's preprocessor loading, which these models' ONNX configs
    never read, nor again to save copies nobody reads (an encoder and an encoder-decoder model, in one process:
    torch is imported once)."""
    jobs = {kind: (str(tinymodels.repo_dir(kind)), str(tmp_path / kind), _task(kind)) for kind in ("bert", "t5")}
    code = f"""
import json, os
import transformers
import transformers.modeling_utils as mu
from optimum.utils.save_utils import maybe_load_preprocessors
from gpuxbuild.build.convert import run_export
loads, tokenizers = [], []
original = mu.PreTrainedModel.from_pretrained.__func__
def counted(cls, *args, **kwargs):
    loads.append(cls.__name__)
    return original(cls, *args, **kwargs)
mu.PreTrainedModel.from_pretrained = classmethod(counted)
original_tokenizer = transformers.AutoTokenizer.from_pretrained.__func__
def counted_tokenizer(cls, *args, **kwargs):
    tokenizers.append(cls.__name__)
    return original_tokenizer(cls, *args, **kwargs)
transformers.AutoTokenizer.from_pretrained = classmethod(counted_tokenizer)
for kind, (source, out, task) in {jobs!r}.items():
    tokenizers.clear()
    maybe_load_preprocessors(source)
    by_optimum = len(tokenizers)
    loads.clear()
    tokenizers.clear()
    os.mkdir(out)
    result = run_export(source, out, task=task, library="transformers", opset=None, dtype="fp32", optimize=None,
        quantize=None, validate=True, atol=None, trust_remote_code=False, name="tiny")
    print(json.dumps({{"kind": kind, "loads": list(loads), "tokenizers": [len(tokenizers), by_optimum],
        "max_diff": result["max_diff"]}}))
"""
    env = os.environ | {"PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"kind"')]
    assert [r["kind"] for r in reports] == ["bert", "t5"]
    for report in reports:
        assert len(report["loads"]) == 1, report
        exported, by_optimum = report["tokenizers"]
        assert by_optimum >= 1 and exported == 0, report
        assert report["max_diff"] is not None and report["max_diff"] < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bert", "t5"])
def test_graph_io_from_the_export_is_what_the_files_say(kind, exported):
    """gpux.yml is rendered from the inputs and outputs the exporter read from the graphs it had in memory: the
    same as reading the written files again (as the build did before)."""
    from gpuxbuild.build.gpuxyml import read_graph_io

    result, out = exported(kind)
    assert set(result.io) == set(result.graphs.values())
    for file_name in result.graphs.values():
        assert json.loads(json.dumps(read_graph_io(out / file_name))) == result.io[file_name]
