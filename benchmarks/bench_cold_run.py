"""Benchmark a cold `gpux run org/name TEXT` (resolve, download, convert, first answer) of popular models at real size.

Eight architectures with their published configs and random weights (the Hub is unreachable here), served by the
test Hub (tests/support/hubserver.py) on loopback from this process, plus a transformers.js-style repo that ships ONNX:

    bert       google-bert/bert-base-uncased                                 BertForMaskedLM
    distilbert distilbert/distilbert-base-uncased-finetuned-sst-2-english    DistilBertForSequenceClassification
    gpt2       openai-community/gpt2                                         GPT2LMHeadModel (124M)
    roberta    FacebookAI/roberta-base                                       RobertaForMaskedLM
    minilm     sentence-transformers/all-MiniLM-L6-v2                        BertModel + sentence-transformers files
    t5         google-t5/t5-small                                            T5ForConditionalGeneration
    onnx       Xenova/all-MiniLM-L6-v2                                       config + tokenizer + onnx/model*.onnx
    vit        google/vit-base-patch16-224                                   ViTForImageClassification (86M)
    whisper    openai/whisper-tiny                                           WhisperForConditionalGeneration (38M)

The vision and speech models answer a generated file (`gpux run REPO --file FILE`): a 640x480 JPEG, a 5 s 16 kHz
WAV. vit's config holds 1000 generated label names (ImageNet's are not reachable here) and its published
preprocessor config; whisper-tiny's preprocessor config leaves out the precomputed `mel_filters` (transformers
computes them), and its generation config has the fields transformers and gpux read (language and task ids,
suppressed tokens) at the published ids. whisper-tiny decodes at most 20 tokens (`max_new_tokens`, the text
generators' default): with random weights it would never stop before its max_length of 448.

For each model, every command is a fresh process with a fresh GPUX_HOME and HF_HOME:
  cold:   `gpux run REPO TEXT`                        -> cold total (goal < 20 s on 2 cores; < 3 s for ONNX repos)
  anchor: `snapshot_download(REPO)` + `optimum-cli export onnx --model DIR --task T OUT` (its validation on),
          alternating with the cold gpux run (`--repeat N` times each)  -> ratio gpux / anchor (goal <= 0.8x)
  split:  `gpux pull --no-build REPO`                 -> resolve + download
          `gpux pull REPO` (only builds now)          -> convert (ONNX export, or placing shipped graphs), and the
                                                         build's own stages (import, export, files, validate, ...)
          `gpux run REPO TEXT`                        -> load + first answer
Each command is reported as wall seconds and CPU seconds (user + system of the command and all its children): on
a loaded machine the wall time depends on the neighbours, the CPU time much less. `--busy-core` keeps one core
spinning in another process for the whole benchmark (a shared CI runner, a laptop with a build running).

Tokenizers are full size (benchmarks/fullsize_tokenizers.py: 30522-entry WordPiece for bert/distilbert/MiniLM,
50257/50265-id byte-level BPE with their merges for gpt2/roberta, 32100-piece unigram SentencePiece for t5, and
whisper-tiny's 51865 ids: byte-level BPE, 99 languages, task tokens and timestamps),
generated deterministically with the special tokens at their published ids; every config value is the published
one. Repos (weights from torch.manual_seed(0), tokenizers) are generated once into a cache folder, so re-runs
start serving at once. Python's imports are warmed once before timing, so the first model does not pay for a
cold disk cache. Times are reported, never asserted: the exit code is 1 only when a command failed.

    python benchmarks/bench_cold_run.py [--models bert,gpt2,...] [--quick] [--repeat N] [--busy-core] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

import fullsize_tokenizers  # noqa: E402  (benchmarks/, on the path as the script's folder)
from bytecode import compile_gpuxbuild  # noqa: E402
from hubserver import HubServer  # noqa: E402

# Bump when generated repos change, so stale caches are not reused.
CACHE_VERSION = 2
DEFAULT_CACHE = "/tmp/gpuxbuild-bench-models"
GOAL_S, ONNX_GOAL_S, RATIO_GOAL = 20.0, 3.0, 0.8
TOKENIZER_FILES = (
    "merges.txt",
    "special_tokens_map.json",
    "spiece.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
)
T5_TASK_PARAMS = {
    "summarization": {
        "early_stopping": True,
        "length_penalty": 2.0,
        "max_length": 200,
        "min_length": 30,
        "no_repeat_ngram_size": 3,
        "num_beams": 4,
        "prefix": "summarize: ",
    },
    "translation_en_to_de": {
        "early_stopping": True,
        "max_length": 300,
        "num_beams": 4,
        "prefix": "translate English to German: ",
    },
    "translation_en_to_fr": {
        "early_stopping": True,
        "max_length": 300,
        "num_beams": 4,
        "prefix": "translate English to French: ",
    },
    "translation_en_to_ro": {
        "early_stopping": True,
        "max_length": 300,
        "num_beams": 4,
        "prefix": "translate English to Romanian: ",
    },
}


@dataclass(frozen=True)
class Model:
    """One benchmarked repo: its published config and card, and the tiny-model kind lending its tokenizer."""

    key: str
    repo: str
    tokenizer_kind: str | None  # the tokenizer family, generated at full size by fullsize_tokenizers.for_kind
    config: dict
    card: dict
    text: str
    task: str  # the gpux task; the anchor exports optimum's task for it (optimum_task)
    generation_config: dict = field(default_factory=dict)
    sentence_transformers: bool = False
    onnx_from: str | None = None  # key of the model exported once into this repo's onnx/ folder
    preprocessor_config: dict = field(default_factory=dict)  # vision and audio models' preprocessor_config.json
    input_file: str | None = None  # the model answers this generated file (input_file()) instead of `text`
    parameters: dict = field(default_factory=dict)  # `gpux run --parameters`

    def run_args(self, work: Path) -> list[str]:
        """What follows `gpux run REPO`: the text, or the generated file, and the parameters."""
        args = ["--file", str(input_file(self.input_file, work))] if self.input_file else [self.text]
        return args + (["--parameters", json.dumps(self.parameters)] if self.parameters else [])


BERT_BASE = {
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}
MINILM = BERT_BASE | {
    "architectures": ["BertModel"],
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_hidden_layers": 6,
}

MODELS = {
    m.key: m
    for m in (
        Model(
            "bert",
            "google-bert/bert-base-uncased",
            "bert-mlm",
            BERT_BASE,
            {"pipeline_tag": "fill-mask", "library_name": "transformers", "license": "apache-2.0"},
            "Paris is the [MASK] of France.",
            "fill-mask",
        ),
        Model(
            "distilbert",
            "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
            "distilbert",
            {
                "activation": "gelu",
                "architectures": ["DistilBertForSequenceClassification"],
                "attention_dropout": 0.1,
                "dim": 768,
                "dropout": 0.1,
                "finetuning_task": "sst-2",
                "hidden_dim": 3072,
                "id2label": {"0": "NEGATIVE", "1": "POSITIVE"},
                "initializer_range": 0.02,
                "label2id": {"NEGATIVE": 0, "POSITIVE": 1},
                "max_position_embeddings": 512,
                "model_type": "distilbert",
                "n_heads": 12,
                "n_layers": 6,
                "output_past": True,
                "pad_token_id": 0,
                "qa_dropout": 0.1,
                "seq_classif_dropout": 0.2,
                "sinusoidal_pos_embds": False,
                "tie_weights_": True,
                "vocab_size": 30522,
            },
            {"pipeline_tag": "text-classification", "library_name": "transformers", "license": "apache-2.0"},
            "I loved this movie, the acting was wonderful.",
            "text-classification",
        ),
        Model(
            "gpt2",
            "openai-community/gpt2",
            "gpt2",
            {
                "activation_function": "gelu_new",
                "architectures": ["GPT2LMHeadModel"],
                "attn_pdrop": 0.1,
                "bos_token_id": 50256,
                "embd_pdrop": 0.1,
                "eos_token_id": 50256,
                "initializer_range": 0.02,
                "layer_norm_epsilon": 1e-05,
                "model_type": "gpt2",
                "n_ctx": 1024,
                "n_embd": 768,
                "n_head": 12,
                "n_layer": 12,
                "n_positions": 1024,
                "resid_pdrop": 0.1,
                "summary_activation": None,
                "summary_first_dropout": 0.1,
                "summary_proj_to_labels": True,
                "summary_type": "cls_index",
                "summary_use_proj": True,
                "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
                "vocab_size": 50257,
            },
            {"pipeline_tag": "text-generation", "library_name": "transformers", "license": "mit"},
            "The quick brown fox",
            "text-generation",
            generation_config={"bos_token_id": 50256, "eos_token_id": 50256},
        ),
        Model(
            "roberta",
            "FacebookAI/roberta-base",
            "roberta",
            {
                "architectures": ["RobertaForMaskedLM"],
                "attention_probs_dropout_prob": 0.1,
                "bos_token_id": 0,
                "eos_token_id": 2,
                "hidden_act": "gelu",
                "hidden_dropout_prob": 0.1,
                "hidden_size": 768,
                "initializer_range": 0.02,
                "intermediate_size": 3072,
                "layer_norm_eps": 1e-05,
                "max_position_embeddings": 514,
                "model_type": "roberta",
                "num_attention_heads": 12,
                "num_hidden_layers": 12,
                "pad_token_id": 1,
                "type_vocab_size": 1,
                "vocab_size": 50265,
            },
            {"pipeline_tag": "fill-mask", "library_name": "transformers", "license": "mit"},
            "Paris is the <mask> of France.",
            "fill-mask",
        ),
        Model(
            "minilm",
            "sentence-transformers/all-MiniLM-L6-v2",
            "sentence-transformers",
            MINILM,
            {"pipeline_tag": "sentence-similarity", "library_name": "sentence-transformers", "license": "apache-2.0"},
            "A small model learns to read short sentences.",
            "feature-extraction",
            sentence_transformers=True,
        ),
        Model(
            "t5",
            "google-t5/t5-small",
            "t5",
            {
                "architectures": ["T5ForConditionalGeneration"],
                "d_ff": 2048,
                "d_kv": 64,
                "d_model": 512,
                "decoder_start_token_id": 0,
                "dropout_rate": 0.1,
                "eos_token_id": 1,
                "initializer_factor": 1.0,
                "is_encoder_decoder": True,
                "layer_norm_epsilon": 1e-06,
                "model_type": "t5",
                "n_positions": 512,
                "num_heads": 8,
                "num_layers": 6,
                "output_past": True,
                "pad_token_id": 0,
                "relative_attention_num_buckets": 32,
                "task_specific_params": T5_TASK_PARAMS,
                "vocab_size": 32128,
            },
            {"pipeline_tag": "translation", "library_name": "transformers", "license": "apache-2.0"},
            "translate English to German: the house is wonderful.",
            "text2text-generation",
            generation_config={"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0},
        ),
        Model(
            "onnx",
            "Xenova/all-MiniLM-L6-v2",
            "sentence-transformers",
            MINILM,
            {"pipeline_tag": "feature-extraction", "library_name": "transformers.js", "license": "apache-2.0"},
            "A small model learns to read short sentences.",
            "feature-extraction",
            onnx_from="minilm",
        ),
    )
}
QUICK = ("distilbert", "onnx")

VIT_BASE = {
    "architectures": ["ViTForImageClassification"],
    "attention_probs_dropout_prob": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 768,
    "image_size": 224,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "model_type": "vit",
    "num_attention_heads": 12,
    "num_channels": 3,
    "num_hidden_layers": 12,
    "patch_size": 16,
    "qkv_bias": True,
}
WHISPER_TINY = {
    "activation_dropout": 0.0,
    "activation_function": "gelu",
    "architectures": ["WhisperForConditionalGeneration"],
    "attention_dropout": 0.0,
    "begin_suppress_tokens": [220, 50257],
    "bos_token_id": 50257,
    "d_model": 384,
    "decoder_attention_heads": 6,
    "decoder_ffn_dim": 1536,
    "decoder_layerdrop": 0.0,
    "decoder_layers": 4,
    "decoder_start_token_id": 50258,
    "dropout": 0.0,
    "encoder_attention_heads": 6,
    "encoder_ffn_dim": 1536,
    "encoder_layerdrop": 0.0,
    "encoder_layers": 4,
    "eos_token_id": 50257,
    "forced_decoder_ids": [[1, 50259], [2, 50359], [3, 50363]],
    "init_std": 0.02,
    "is_encoder_decoder": True,
    "max_length": 448,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "model_type": "whisper",
    "num_hidden_layers": 4,
    "num_mel_bins": 80,
    "pad_token_id": 50257,
    "scale_embedding": False,
    "use_cache": True,
    "vocab_size": 51865,
}
# whisper-tiny's suppress_tokens (config.json and generation_config.json).
WHISPER_SUPPRESS = [1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93, 359, 503]
WHISPER_SUPPRESS += [522, 542, 873, 893, 902, 918, 922, 931, 1350, 1853, 1982, 2460, 2627, 3246, 3253, 3268, 3536]
WHISPER_SUPPRESS += [3846, 3961, 4183, 4667, 6585, 6647, 7273, 9061, 9383, 10428, 10929, 11938, 12033, 12331, 12562]
WHISPER_SUPPRESS += [13793, 14157, 14635, 15265, 15618, 16553, 16604, 18362, 18956, 20075, 21675, 22520, 26130]
WHISPER_SUPPRESS += [26161, 26435, 28279, 29464, 31650, 32302, 32470, 36865, 42863, 47425, 49870, 50254, 50258]
WHISPER_SUPPRESS += [50358, 50359, 50360, 50361, 50362]
WHISPER_TINY["suppress_tokens"] = WHISPER_SUPPRESS


def _imagenet_sized_labels(count: int = 1000) -> dict[str, dict]:
    """id2label and label2id of `count` generated names (ImageNet's 1000 are not reachable here)."""
    names = [word for word, _ in zip(fullsize_tokenizers.words(seed=1), range(count), strict=False)]
    return {"id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)}}


def _whisper_generation_config() -> dict:
    """whisper-tiny's generation_config.json at the ids of fullsize_tokenizers.whisper (those it publishes)."""
    specials = fullsize_tokenizers.whisper_specials()
    ids = {token: 50258 + i for i, token in enumerate(specials)}
    languages = specials[1:-6]
    return {
        "begin_suppress_tokens": [220, 50257],
        "bos_token_id": 50257,
        "decoder_start_token_id": 50258,
        "eos_token_id": 50257,
        "forced_decoder_ids": [[1, None], [2, 50359]],
        "is_multilingual": True,
        "lang_to_id": {token: ids[token] for token in languages},
        "max_initial_timestamp_index": 50,
        "max_length": 448,
        "no_timestamps_token_id": 50363,
        "pad_token_id": 50257,
        "prev_sot_token_id": 50361,
        "return_timestamps": False,
        "suppress_tokens": WHISPER_SUPPRESS,
        "task_to_id": {"transcribe": 50359, "translate": 50358},
    }


MEDIA_MODELS = (
    Model(
        "vit",
        "google/vit-base-patch16-224",
        None,
        VIT_BASE | _imagenet_sized_labels(),
        {"pipeline_tag": "image-classification", "library_name": "transformers", "license": "apache-2.0"},
        "",
        "image-classification",
        preprocessor_config={
            "do_normalize": True,
            "do_resize": True,
            "feature_extractor_type": "ViTFeatureExtractor",
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "resample": 2,
            "size": 224,
        },
        input_file="image.jpg",
    ),
    Model(
        "whisper",
        "openai/whisper-tiny",
        "whisper",
        WHISPER_TINY,
        {"pipeline_tag": "automatic-speech-recognition", "library_name": "transformers", "license": "apache-2.0"},
        "",
        "automatic-speech-recognition",
        preprocessor_config={
            "chunk_length": 30,
            "feature_extractor_type": "WhisperFeatureExtractor",
            "feature_size": 80,
            "hop_length": 160,
            "n_fft": 400,
            "n_samples": 480000,
            "nb_max_frames": 3000,
            "padding_side": "right",
            "padding_value": 0.0,
            "processor_class": "WhisperProcessor",
            "return_attention_mask": False,
            "sampling_rate": 16000,
        },
        input_file="speech.wav",
        # At most the text generators' default of 20 new tokens: random weights never say <|endoftext|>, and
        # would decode up to max_length (448), which a real transcript of 5 s never does.
        parameters={"max_new_tokens": 20},
    ),
)
MODELS |= {m.key: m for m in MEDIA_MODELS}


def input_file(name: str, folder: Path) -> Path:
    """The generated input `name` in `folder` (written on first use, the same bytes every time): a 640x480 JPEG of
    gradients and noise, or 5 s of a 16 kHz tone sweep with noise as a WAV."""
    import numpy as np

    path = folder / name
    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    if name.endswith(".jpg"):
        from PIL import Image

        y, x = np.mgrid[0:480, 0:640]
        base = np.stack([x * 255 // 639, y * 255 // 479, (x + y) % 256], axis=-1)
        pixels = np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(path, format="JPEG", quality=90)
    else:
        import soundfile

        t = np.arange(5 * 16000) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (220 + 200 * t) * t) + 0.05 * rng.standard_normal(t.size)
        soundfile.write(path, wave.astype(np.float32), 16000, subtype="PCM_16")
    return path


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _sentence_transformers_files(hidden: int) -> dict[str, bytes]:
    """all-MiniLM-L6-v2's sentence-transformers metadata: mean pooling, then L2 normalization."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    return {
        "modules.json": (json.dumps(modules, indent=2) + "\n").encode(),
        "sentence_bert_config.json": _json_bytes({"max_seq_length": 256, "do_lower_case": False}),
        "config_sentence_transformers.json": _json_bytes(
            {"__version__": {"sentence_transformers": "2.0.0", "transformers": "4.6.1", "pytorch": "1.8.1"}}
        ),
        "1_Pooling/config.json": _json_bytes(pooling),
    }


def _write_files(dest: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)


def _generate(model: Model, dest: Path, cache: Path) -> dict:
    """Write `model`'s repo into the empty folder `dest`; returns its metadata (parameter count)."""
    config = model.config
    if model.onnx_from:
        return _generate_onnx(model, dest, config, cache)
    # Full-size tokenizers with the special tokens at their published ids (the config's ids hold as published).
    if model.tokenizer_kind:
        tokenizer = fullsize_tokenizers.for_kind(model.tokenizer_kind, config["vocab_size"])
        _write_files(dest, {p: d for p, d in tokenizer.items() if p in TOKENIZER_FILES})

    import torch
    import transformers

    torch.manual_seed(0)
    hf_config = transformers.AutoConfig.for_model(**config)
    net = getattr(transformers, config["architectures"][0])(hf_config).eval()
    net.save_pretrained(dest, safe_serialization=True)
    # The published files, verbatim: save_pretrained would drop defaults and add its own keys.
    files = {"config.json": _json_bytes(config)}
    (dest / "generation_config.json").unlink(missing_ok=True)
    if model.generation_config:
        files["generation_config.json"] = _json_bytes(
            model.generation_config | {k: config[k] for k in model.generation_config if k in config}
        )
    if model.sentence_transformers:
        files |= _sentence_transformers_files(config["hidden_size"])
    if model.preprocessor_config:
        files["preprocessor_config.json"] = _json_bytes(model.preprocessor_config)
    if config["model_type"] == "whisper":
        files["generation_config.json"] = _json_bytes(_whisper_generation_config())
    _write_files(dest, files)
    return {"params": net.num_parameters()}


def _generate_onnx(model: Model, dest: Path, config: dict, cache: Path) -> dict:
    """A transformers.js layout: config, tokenizer, onnx/model.onnx (fp32) and onnx/model_quantized.onnx (int8)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from gpuxbuild.build.convert import export_onnx

    # quantize_dynamic logs advice about pre-processing on the root logger; irrelevant for a benchmark fixture.
    logging.getLogger().setLevel(logging.ERROR)

    source = source_dir(MODELS[model.onnx_from], cache)
    _write_files(dest, {p: (source / p).read_bytes() for p in TOKENIZER_FILES if (source / p).is_file()})
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        export_onnx(source, Path(tmp) / "out", task="feature-extraction", library="transformers", name=model.repo)
        (dest / "onnx").mkdir()
        shutil.move(Path(tmp) / "out" / "model.onnx", dest / "onnx" / "model.onnx")
    quantize_dynamic(dest / "onnx" / "model.onnx", dest / "onnx" / "model_quantized.onnx", weight_type=QuantType.QUInt8)
    _write_files(dest, {"config.json": _json_bytes(config)})
    return json.loads((source / "meta.json").read_text())


def source_dir(model: Model, cache: Path) -> Path:
    """The cached folder of `model`'s repo files (generated on first use), with a meta.json beside them."""
    target = cache / f"v{CACHE_VERSION}" / model.key
    if (target / "meta.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model.key}-", dir=target.parent))
    try:
        started = time.perf_counter()
        meta = _generate(model, staging, cache)
        (staging / "meta.json").write_bytes(_json_bytes(meta))
        staging.rename(target)
        print(f"  generated {model.repo} in {time.perf_counter() - started:.1f} s -> {target}", flush=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def repo_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "meta.json"
    }


def weights_bytes(files: dict[str, bytes]) -> int:
    """Bytes of the weights a cold run downloads: the safetensors, or the default ONNX graph."""
    shipped = [p for p in files if p.endswith(".safetensors")] or [p for p in files if p == "onnx/model.onnx"]
    return sum(len(files[p]) for p in shipped)


class Failed(Exception):
    """A command exited non-zero; the message holds the tail of its output."""


@dataclass
class Timing:
    """Wall seconds and CPU seconds (user + system of the command and every child it waited for)."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:6.1f} s  (CPU {self.cpu:5.1f} s)"


def timed(argv: list[str], env: dict, cwd: Path) -> tuple[Timing, str]:
    """The Timing and stdout of ARGV in a fresh process; raises Failed with its output on error."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise Failed(
            f"{' '.join(argv[2:5])} ... exited {done.returncode} after {elapsed:.1f} s:\n"
            f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    return Timing(elapsed, cpu), done.stdout


def gpux(args: list[str], env: dict, cwd: Path) -> tuple[Timing, str]:
    return timed([sys.executable, "-m", "gpuxbuild", *args], env, cwd)


ANCHOR = """\
import subprocess, sys
from huggingface_hub import snapshot_download
folder = snapshot_download(sys.argv[1])
sys.exit(subprocess.run([sys.argv[2], "export", "onnx", "--model", folder, "--task", sys.argv[3], sys.argv[4]]).returncode)
"""


def anchor(model: Model, env: dict, home: Path) -> Timing:
    """`snapshot_download` + `optimum-cli export onnx --task T` (its validation on), as a user would run them."""
    from gpuxbuild.tasks import optimum_task

    cli = str(Path(sys.executable).with_name("optimum-cli"))
    argv = [sys.executable, "-c", ANCHOR, model.repo, cli, optimum_task(model.task, model.config), str(home / "onnx")]
    return timed(argv, env, home / "cwd")[0]


def fresh_env(base: dict, home: Path) -> dict:
    home.mkdir(parents=True)
    (home / "cwd").mkdir()
    return base | {"GPUX_HOME": str(home / "gpux"), "HF_HOME": str(home / "hf")}


def answer_preview(stdout: str, width: int = 70) -> str:
    text = " ".join(stdout.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def bench(model: Model, base_env: dict, work: Path, repeat: int) -> dict:
    """Cold runs of gpux and the anchor (alternating, each in its own fresh home), then the three split stages."""
    row: dict = {"cold": [], "anchor": []}
    for n in range(repeat):
        home = work / f"{model.key}-cold-{n}"
        timing, out = gpux(
            ["run", model.repo, *model.run_args(work), "--json"], fresh_env(base_env, home), home / "cwd"
        )
        row["cold"].append(timing)
        print(f"  cold gpux run             {timing}   {answer_preview(out)}", flush=True)
        shutil.rmtree(home, ignore_errors=True)
        if model.onnx_from:
            continue  # the anchor exports; a repo that ships ONNX needs no export
        home = work / f"{model.key}-anchor-{n}"
        timing = anchor(model, fresh_env(base_env, home), home)
        row["anchor"].append(timing)
        print(f"  anchor (download+export)  {timing}   ratio {row['cold'][-1].wall / timing.wall:.2f}x", flush=True)
        shutil.rmtree(home, ignore_errors=True)

    split = work / f"{model.key}-split"
    env = fresh_env(base_env, split)
    stages = (
        ("download", "gpux pull --no-build    ", ["pull", model.repo, "--no-build", "--json"]),
        ("convert", "gpux pull (build only)   ", ["pull", model.repo, "--json"]),
        ("answer", "gpux run (load + answer) ", ["run", model.repo, *model.run_args(work), "--json"]),
    )
    for key, label, args in stages:
        row[key], out = gpux(args, env, split / "cwd")
        extra = ""
        if key == "convert":
            build = json.loads(out).get("build") or {}
            row["build_stages"] = build.get("stages", {})
            extra = "   " + " ".join(f"{k} {v:.1f}" for k, v in row["build_stages"].items())
        print(f"  {label} {row[key]}{extra}", flush=True)
    shutil.rmtree(split, ignore_errors=True)
    return row


def warm_imports(env: dict) -> None:
    """Read the heavy packages once, so that no row pays for a cold disk cache; compile gpuxbuild's modules as an
    install does (see bytecode.py)."""
    compile_gpuxbuild()
    code = "import torch, transformers, onnxruntime, tokenizers, huggingface_hub, optimum.exporters.onnx, gpuxbuild.cli"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)


def start_burner() -> subprocess.Popen:
    """A process spinning on one core (CPU 0) for the whole benchmark, like another job on a shared machine."""
    code = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(rows: list[tuple[Model, dict, dict | None]]) -> None:
    header = (
        "model",
        "params",
        "MB",
        "download s",
        "convert s",
        "answer s",
        "cold s",
        "cold CPU s",
        "anchor s",
        "anchor CPU s",
        "ratio",
    )
    lines = [header]
    for model, info, row in rows:
        cells = [model.repo, f"{info['params'] / 1e6:.1f}M", f"{info['weights'] / 1e6:.0f}"]
        if row is None:
            cells += ["FAILED"] + ["-"] * (len(header) - 4)
        else:
            cold, anc = median([t.wall for t in row["cold"]]), median([t.wall for t in row["anchor"]])
            cells += [f"{row[k].wall:.1f}" for k in ("download", "convert", "answer")]
            cells += [f"{cold:.1f}", f"{median([t.cpu for t in row['cold']]):.1f}"]
            if row["anchor"]:
                cells += [f"{anc:.1f}", f"{median([t.cpu for t in row['anchor']]):.1f}", f"{cold / anc:.2f}x"]
            else:
                cells += ["-", "-", "-"]
        lines.append(tuple(cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_goals(rows: list[tuple[Model, dict, dict | None]]) -> None:
    """Which of issue 15's goals this run met (medians of the cold runs)."""
    exported = [(m, r) for m, _, r in rows if not m.onnx_from]
    shipped = [(m, r) for m, _, r in rows if m.onnx_from]

    def verdict(label: str, pairs: list, ok) -> None:
        if not pairs:
            return
        missed = [m.key for m, r in pairs if r is None or not ok(r)]
        state = "met" if not missed else f"NOT met ({', '.join(missed)})"
        print(f"  {label:<44} {state}")

    print("goals:")
    verdict(f"cold gpux run < {GOAL_S:.0f} s", exported, lambda r: median([t.wall for t in r["cold"]]) < GOAL_S)
    verdict(
        f"cold gpux run <= {RATIO_GOAL}x anchor (same run)",
        exported,
        lambda r: median([t.wall for t in r["cold"]]) <= RATIO_GOAL * median([t.wall for t in r["anchor"]]),
    )
    verdict(
        f"repo shipping ONNX < {ONNX_GOAL_S:.0f} s",
        shipped,
        lambda r: median([t.wall for t in r["cold"]]) < ONNX_GOAL_S,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", help=f"comma-separated keys among {','.join(MODELS)} (default: all)")
    ap.add_argument("--quick", action="store_true", help=f"only {' and '.join(QUICK)}")
    ap.add_argument("--repeat", type=int, default=1, help="cold runs of gpux and the anchor per model, alternating")
    ap.add_argument("--busy-core", action="store_true", help="keep one core busy with a CPU burner throughout")
    ap.add_argument(
        "--cache",
        default=os.environ.get("GPUX_BENCH_CACHE") or DEFAULT_CACHE,
        help=f"where generated repos are kept between runs (default: {DEFAULT_CACHE})",
    )
    args = ap.parse_args()
    keys = list(QUICK) if args.quick else (args.models.split(",") if args.models else list(MODELS))
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    cache = Path(args.cache)

    print(f"preparing {len(keys)} repos (cached in {cache})", flush=True)
    hub = HubServer().start()
    infos: dict[str, dict] = {}
    for key in keys:
        model = MODELS[key]
        folder = source_dir(model, cache)
        files = repo_files(folder)
        hub.create_repo(model.repo, card=model.card)
        hub.commit(model.repo, files, message=f"add {key}")
        meta = json.loads((folder / "meta.json").read_text())
        infos[key] = {"params": meta["params"], "weights": weights_bytes(files)}

    base_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER", "GPUX_PROJECT")
    }
    base_env |= {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    warm_imports(base_env)
    burner = start_burner() if args.busy_core else None
    load = os.getloadavg()[0]
    print(
        f"serving on {hub.endpoint}; {os.cpu_count()} CPUs, load {load:.1f}"
        f"{', one core kept busy by a burner' if burner else ''} (goals: < {GOAL_S:.0f} s cold and <= {RATIO_GOAL}x "
        f"the anchor; < {ONNX_GOAL_S:.0f} s for a repo shipping ONNX)\n",
        flush=True,
    )

    rows: list[tuple[Model, dict, dict | None]] = []
    failed = False
    work = Path(tempfile.mkdtemp(prefix="bench-cold-run-"))
    try:
        for key in keys:
            model = MODELS[key]
            print(
                f"{model.repo}  ({infos[key]['params'] / 1e6:.1f}M params, {infos[key]['weights'] / 1e6:.0f} MB)",
                flush=True,
            )
            try:
                rows.append((model, infos[key], bench(model, base_env, work, args.repeat)))
            except Failed as exc:
                print(f"  FAILED: {exc}", flush=True)
                rows.append((model, infos[key], None))
                failed = True
    finally:
        if burner:
            burner.kill()
            burner.wait()
        shutil.rmtree(work, ignore_errors=True)
        hub.stop()
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (CPU s: user + system of the command and its children)")
    print_table(rows)
    print()
    print_goals(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
