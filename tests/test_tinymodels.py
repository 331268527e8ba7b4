"""The tiny model repos load with transformers and are byte-deterministic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tinymodels

pytestmark = pytest.mark.convert  # loads the models with transformers

HERE = Path(__file__).parent / "support"  # where tinymodels.py is

# model class suffix -> transformers Auto class that must load it
AUTO_CLASSES = {
    "ForSequenceClassification": "AutoModelForSequenceClassification",
    "ForTokenClassification": "AutoModelForTokenClassification",
    "ForQuestionAnswering": "AutoModelForQuestionAnswering",
    "ForMaskedLM": "AutoModelForMaskedLM",
    "ForCausalLM": "AutoModelForCausalLM",
    "LMHeadModel": "AutoModelForCausalLM",
    "ForConditionalGeneration": "AutoModelForSeq2SeqLM",
    "Model": "AutoModel",
}


def _load_and_run_media(kind: str, folder: Path) -> None:
    """Vision and audio kinds: their processor (preprocessor_config.json) feeds their model."""
    import numpy as np
    import torch
    import transformers

    if kind in tinymodels.IMAGE_KINDS:
        processor = transformers.AutoImageProcessor.from_pretrained(folder, use_fast=False)
        inputs = processor(np.zeros((40, 50, 3), dtype=np.uint8), return_tensors="pt")
        detection = kind in ("yolos", "detr")
        auto = "AutoModelForObjectDetection" if detection else "AutoModelForImageClassification"
        auto = "AutoModelForSemanticSegmentation" if kind == "segformer" else auto
    else:
        processor = transformers.AutoFeatureExtractor.from_pretrained(folder)
        inputs = processor(np.zeros(16000, dtype=np.float32), sampling_rate=16000, return_tensors="pt")
        auto = {"wav2vec2-ctc": "AutoModelForCTC", "whisper": "AutoModelForSpeechSeq2Seq"}.get(
            kind, "AutoModelForAudioClassification"
        )
    model = getattr(transformers, auto).from_pretrained(folder).eval()
    assert type(model).__name__ == tinymodels.KINDS[kind].model_cls
    if kind == "whisper":
        assert transformers.AutoTokenizer.from_pretrained(folder).is_fast
        inputs["decoder_input_ids"] = torch.tensor([[model.config.decoder_start_token_id]])
    with torch.no_grad():
        logits = model(**inputs).logits
    if kind == "whisper":
        assert logits.shape[-1] == model.config.vocab_size
        return
    no_object = model.config.num_labels + 1
    classes = {"wav2vec2-ctc": len(tinymodels.CTC_VOCAB), "yolos": no_object, "detr": no_object}
    axis = 1 if kind == "segformer" else -1  # [batch, labels, height, width]
    assert logits.shape[axis] == classes.get(kind, model.config.num_labels)


def _load_and_run_image_text(folder: Path) -> None:
    """CLIP: its processor (image processor and fast tokenizer) feeds both towers."""
    import numpy as np
    import torch
    import transformers

    processor = transformers.CLIPProcessor.from_pretrained(folder)
    assert processor.tokenizer.is_fast
    inputs = processor(
        text=["a photo of a cat", "a dog"],
        images=np.zeros((40, 50, 3), dtype=np.uint8),
        return_tensors="pt",
        padding=True,
    )
    model = transformers.AutoModelForZeroShotImageClassification.from_pretrained(folder).eval()
    assert inputs["input_ids"].max() < model.config.text_config.vocab_size
    with torch.no_grad():
        assert model(**inputs).logits_per_image.shape == (1, 2)


def _load_and_run(kind: str, folder: Path) -> None:
    import torch
    import transformers

    if kind in tinymodels.IMAGE_TEXT_KINDS:
        return _load_and_run_image_text(folder)
    if kind in tinymodels.IMAGE_KINDS | tinymodels.AUDIO_KINDS:
        return _load_and_run_media(kind, folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert tokenizer.is_fast
    arch = tinymodels.KINDS[kind].model_cls
    auto = next(cls for suffix, cls in AUTO_CLASSES.items() if arch.endswith(suffix))
    model = getattr(transformers, auto).from_pretrained(folder).eval()
    assert type(model).__name__ == arch
    assert model.config.vocab_size >= len(tokenizer)
    enc = tokenizer(["the quick brown fox jumps"], return_tensors="pt")
    ids = enc["input_ids"]
    assert ids.max() < model.config.vocab_size
    for name in ("bos", "eos", "pad"):
        token = getattr(tokenizer, f"{name}_token")
        if token is not None:
            assert getattr(model.config, f"{name}_token_id") == tokenizer.convert_tokens_to_ids(token)
    with torch.no_grad():
        if auto == "AutoModelForSeq2SeqLM":
            model(**enc, decoder_input_ids=ids[:, :2])
        else:
            model(**enc)


def test_bert_loads_and_classifies(tmp_path):
    folder = tinymodels.write_repo("bert", tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "model.safetensors"} <= {
        p.name for p in folder.iterdir()
    }
    _load_and_run("bert", folder)


def test_seed_gives_other_weights_same_tokenizer():
    a, b = tinymodels.make_repo("bert"), tinymodels.make_repo("bert", seed=1)
    assert a["model.safetensors"] != b["model.safetensors"]
    assert a["tokenizer.json"] == b["tokenizer.json"]


WEIGHTED = sorted(set(tinymodels.KINDS) - {"onnx-shipped", "slow-tokenizer-only"})


@pytest.mark.slow
@pytest.mark.parametrize("kind", WEIGHTED)
def test_kind_loads_with_transformers(kind):
    _load_and_run(kind, tinymodels.repo_dir(kind))


@pytest.mark.slow
def test_special_repos(tmp_path):
    import transformers

    slow = tinymodels.repo_dir("slow-tokenizer-only")
    assert not (slow / "tokenizer.json").exists() and (slow / "vocab.txt").exists()
    assert transformers.AutoTokenizer.from_pretrained(slow).is_fast  # converted on load
    assert transformers.AutoModelForSequenceClassification.from_pretrained(slow)

    files = tinymodels.make_repo("pickle-only")
    assert "pytorch_model.bin" in files and not any(p.endswith(".safetensors") for p in files)

    st = tinymodels.make_repo("sentence-transformers")
    assert {
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
    } <= set(st)

    import numpy as np
    import onnxruntime as ort

    shipped = tinymodels.repo_dir("onnx-shipped")
    assert not any(p.suffix in {".safetensors", ".bin"} for p in shipped.iterdir())
    feed = {n: np.ones((1, 5), dtype=np.int64) for n in ("input_ids", "attention_mask", "token_type_ids")}
    for name in ("model.onnx", "model_quantized.onnx", "model_fp16.onnx"):
        session = ort.InferenceSession(str(shipped / "onnx" / name), providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], feed)
        assert logits.shape == (1, 2)


@pytest.mark.slow
def test_repos_byte_identical_across_processes(tmp_path):
    """A fresh cache built by a process with another hash seed holds the bytes of this session's cache."""
    import hashlib

    kinds = ["bert", "gpt2", "t5", "llama", "pickle-only", "onnx-shipped", "clip"]
    code = (
        "import sys, hashlib, tinymodels\n"
        "for k in sys.argv[1:]:\n"
        "    for p, b in sorted(tinymodels.make_repo(k).items()):\n"
        "        print(k, p, hashlib.sha256(b).hexdigest())\n"
    )
    run = subprocess.Popen(  # beside this process's own generation of what it has not cached yet
        [sys.executable, "-c", code, *kinds],
        cwd=HERE,
        env=os.environ | {"GPUX_TEST_CACHE": str(tmp_path / "fresh"), "PYTHONHASHSEED": "12345"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ours = "".join(
        f"{k} {p} {hashlib.sha256(b).hexdigest()}\n" for k in kinds for p, b in sorted(tinymodels.make_repo(k).items())
    )
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    hashes = [line for line in out.splitlines() if line.split(" ", 1)[0] in kinds]  # not the tokenizer trainers' output
    assert hashes == ours.splitlines()
    assert len(hashes) > 6 * len(kinds) - 10
