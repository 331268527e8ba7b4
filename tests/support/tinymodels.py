"""Tiny random-weight Hugging Face model repos of real architectures, for tests.

``make_repo(kind)`` returns the files of a repo (path -> bytes) as ``save_pretrained`` writes them:
config.json, weights, real tokenizer files trained deterministically on a small embedded corpus, and
generation_config.json for generative models. Output is byte-deterministic for the same arguments and
cached on disk (``$GPUX_TEST_CACHE``, else ``tinymodels`` in the suite's folder, tests/support/testhome.py) keyed
by kind, arguments and ``FACTORY_VERSION``; bump the version whenever generation changes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FACTORY_VERSION = 3

CORPUS = """\
The quick brown fox jumps over the lazy dog near the quiet river bank.
A small model learns to read short sentences about cats, dogs and birds.
I loved this movie, the acting was wonderful and the story was great.
This film was terrible, boring and far too long; I hated every minute.
Paris is the capital of France and Berlin is the capital of Germany.
John Smith works for the United Nations in New York City since 2019.
Mary visited London, Tokyo and Sydney during her long summer holiday.
What is the name of the river that flows through the old town?
The answer to the question is written in the second paragraph.
Translate English to German: the house is wonderful and very old.
Summarize: the meeting covered budgets, hiring plans and a new office.
def add(a, b):
    return a + b
for i in range(10): print(i * 2)
Numbers like 42, 3.14, 1000 and 7 appear in many technical documents.
She said: "Hello, world!" and everyone laughed at the silly joke.
Le chat noir dort sur le canapé pendant que la pluie tombe dehors.
Der schnelle braune Fuchs springt über den faulen Hund am Fluss.
El perro come pan y bebe agua en la casa de mi abuela.
Machine learning models convert text into numbers called embeddings.
Reproducible builds give the same bytes for the same inputs every time.
Good, bad, happy, sad, excellent, awful, positive, negative, neutral.
The weather today is sunny with a light breeze from the west coast.
Please open the window, close the door and turn off the lights.
Students study mathematics, physics, chemistry, biology and history.
An apple a day keeps the doctor away, or so the old saying goes.
GPU kernels run matrix multiplications very fast on modern hardware.
Tokenizers split words into pieces such as un-believ-able and re-do.
We walked, talked, laughed and sang until the sun went down.
Why do birds sing in the morning? Nobody knows for sure.
"""

CORPUS_LINES = [line for line in CORPUS.splitlines() if line.strip()]

BINARY_LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
NLI_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}
MAX_LEN = 128


# --------------------------------------------------------------------------- tokenizers


def _wordpiece(fast_cls: str, *, lowercase: bool = True, specials: dict[str, str] | None = None) -> Callable:
    """A WordPiece vocab.txt trained on the corpus, loaded by ``fast_cls`` (BERT-style tokenizers)."""
    specials = specials or {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }

    def build(tmp: Path):
        import transformers

        order = ["pad_token", "unk_token", "cls_token", "sep_token", "mask_token", "bos_token", "eos_token"]
        special_list = list(dict.fromkeys(specials[k] for k in order if k in specials))
        (tmp / "vocab.txt").write_text("\n".join(special_list + _wordpiece_vocab(lowercase, 400)) + "\n")
        return getattr(transformers, fast_cls)(
            vocab_file=str(tmp / "vocab.txt"), do_lower_case=lowercase, model_max_length=MAX_LEN, **specials
        )

    return build


def _wordpiece_vocab(lowercase: bool, size: int) -> list[str]:
    """Characters, their ``##`` continuations, then the most frequent words (ties by spelling).

    Built by hand because the Rust WordPiece trainer breaks frequency ties differently run to run.
    """
    import re
    from collections import Counter

    text = CORPUS.lower() if lowercase else CORPUS
    words = Counter(re.findall(r"\w+|[^\w\s]", text))
    chars = sorted({c for word in words for c in word})
    vocab = chars + [f"##{c}" for c in chars if c.isalnum()]
    frequent = sorted((w for w in words if len(w) > 1), key=lambda w: (-words[w], w))
    return vocab + frequent[: size - len(vocab)]


def _byte_bpe(
    fast_cls: str, specials: dict[str, str], extra: dict[str, Any] | None = None, *, from_object: bool = False
) -> Callable:
    """A byte-level BPE (vocab.json + merges.txt) trained on the corpus (GPT-2/RoBERTa-style tokenizers)."""

    def build(tmp: Path):
        import transformers
        from tokenizers import ByteLevelBPETokenizer

        trainer = ByteLevelBPETokenizer()
        special_list = list(dict.fromkeys(v for v in specials.values() if v))
        trainer.train_from_iterator(CORPUS_LINES, vocab_size=500, min_frequency=1, special_tokens=special_list)
        cls = getattr(transformers, fast_cls)
        if from_object:
            # Classes without a slow tokenizer (BLOOM) ship only tokenizer.json.
            return cls(tokenizer_object=trainer._tokenizer, model_max_length=MAX_LEN, **specials, **(extra or {}))
        trainer.save_model(str(tmp))
        return cls(
            vocab_file=str(tmp / "vocab.json"),
            merges_file=str(tmp / "merges.txt"),
            model_max_length=MAX_LEN,
            **specials,
            **(extra or {}),
        )

    return build


def _sentencepiece(
    fast_cls: str, spm_args: dict[str, Any], tok_kwargs: dict[str, Any] | None = None, vocab_size: int = 400
) -> Callable:
    """A SentencePiece model trained on the corpus, converted to a fast tokenizer by ``fast_cls``."""

    def build(tmp: Path):
        import sentencepiece as spm
        import transformers

        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(CORPUS_LINES),
            model_writer=model,
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            num_threads=1,
            character_coverage=1.0,
            minloglevel=2,
            **spm_args,
        )
        path = tmp / "source.model"
        path.write_bytes(model.getvalue())
        return getattr(transformers, fast_cls)(vocab_file=str(path), model_max_length=MAX_LEN, **(tok_kwargs or {}))

    return build


BERT_TOKENIZER = _wordpiece("BertTokenizerFast")
GPT2_SPECIALS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
    "cls_token": "<s>",
    "sep_token": "</s>",
}
LLAMA_SPM = {"model_type": "bpe", "byte_fallback": True, "unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}


# --------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class Kind:
    """How to build one kind of repo: transformers model class, config, tokenizer."""

    model_cls: str
    config_cls: str
    config: Callable[[int], dict[str, Any]]
    tokenizer: Callable[[Path], Any] | None
    extra: dict[str, Any] = field(default_factory=dict)
    # The image processor or feature extractor (preprocessor_config.json) of vision and audio models.
    processor: Callable[[], Any] | None = None


def _bert_cfg(h: int) -> dict[str, Any]:
    return {
        "hidden_size": h,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 2 * h,
        "max_position_embeddings": MAX_LEN,
    }


def _labels(id2label: dict[int, str] | list[str]) -> dict[str, Any]:
    if isinstance(id2label, list):
        id2label = dict(enumerate(id2label))
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def _decoder_cfg(h: int) -> dict[str, Any]:
    return {
        "hidden_size": h,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 2 * h,
        "max_position_embeddings": MAX_LEN,
        "tie_word_embeddings": False,
    }


KINDS: dict[str, Kind] = {
    "bert": Kind(
        "BertForSequenceClassification", "BertConfig", lambda h: _bert_cfg(h) | _labels(BINARY_LABELS), BERT_TOKENIZER
    ),
    "bert-mlm": Kind("BertForMaskedLM", "BertConfig", _bert_cfg, BERT_TOKENIZER),
    "bert-ner": Kind(
        "BertForTokenClassification",
        "BertConfig",
        lambda h: _bert_cfg(h) | _labels(NER_LABELS),
        _wordpiece("BertTokenizerFast", lowercase=False),
    ),
    "bert-qa": Kind("BertForQuestionAnswering", "BertConfig", _bert_cfg, BERT_TOKENIZER),
    "distilbert": Kind(
        "DistilBertForSequenceClassification",
        "DistilBertConfig",
        lambda h: (
            {"dim": h, "n_layers": 2, "n_heads": 2, "hidden_dim": 2 * h, "max_position_embeddings": MAX_LEN}
            | _labels(BINARY_LABELS)
        ),
        _wordpiece("DistilBertTokenizerFast"),
    ),
    "roberta": Kind(
        "RobertaForSequenceClassification",
        "RobertaConfig",
        lambda h: _bert_cfg(h) | {"max_position_embeddings": MAX_LEN + 2} | _labels(BINARY_LABELS),
        _byte_bpe("RobertaTokenizerFast", ROBERTA_SPECIALS),
    ),
    "albert": Kind(
        "AlbertForMaskedLM",
        "AlbertConfig",
        lambda h: _bert_cfg(h) | {"embedding_size": h // 2},
        _sentencepiece(
            "AlbertTokenizerFast",
            {
                "model_type": "unigram",
                "pad_id": 0,
                "unk_id": 1,
                "bos_id": -1,
                "eos_id": -1,
                "control_symbols": ["[CLS]", "[SEP]", "[MASK]"],
            },
        ),
    ),
    "electra": Kind(
        "ElectraForSequenceClassification",
        "ElectraConfig",
        lambda h: _bert_cfg(h) | {"embedding_size": h} | _labels(BINARY_LABELS),
        _wordpiece("ElectraTokenizerFast"),
    ),
    "mpnet": Kind(
        "MPNetModel",
        "MPNetConfig",
        lambda h: _bert_cfg(h) | {"max_position_embeddings": MAX_LEN + 2},
        _wordpiece(
            "MPNetTokenizerFast",
            specials={
                "bos_token": "<s>",
                "eos_token": "</s>",
                "sep_token": "</s>",
                "cls_token": "<s>",
                "unk_token": "[UNK]",
                "pad_token": "<pad>",
                "mask_token": "<mask>",
            },
        ),
    ),
    "xlm-roberta": Kind(
        "XLMRobertaForMaskedLM",
        "XLMRobertaConfig",
        lambda h: _bert_cfg(h) | {"max_position_embeddings": MAX_LEN + 2},
        _sentencepiece("XLMRobertaTokenizerFast", {"model_type": "unigram"}),
    ),
    "deberta-v2": Kind(
        "DebertaV2ForSequenceClassification",
        "DebertaV2Config",
        lambda h: (
            _bert_cfg(h)
            | {
                "relative_attention": True,
                "position_buckets": 16,
                "max_relative_positions": -1,
                "pos_att_type": ["p2c", "c2p"],
                "position_biased_input": False,
            }
            | _labels(NLI_LABELS)
        ),
        _sentencepiece(
            "DebertaV2TokenizerFast",
            {
                "model_type": "unigram",
                "pad_id": 0,
                "bos_id": 1,
                "eos_id": 2,
                "unk_id": 3,
                "pad_piece": "[PAD]",
                "bos_piece": "[CLS]",
                "eos_piece": "[SEP]",
                "unk_piece": "[UNK]",
                "user_defined_symbols": ["[MASK]"],
            },
        ),
    ),
    "gpt2": Kind(
        "GPT2LMHeadModel",
        "GPT2Config",
        lambda h: {"n_embd": h, "n_layer": 2, "n_head": 2, "n_positions": MAX_LEN},
        _byte_bpe("GPT2TokenizerFast", GPT2_SPECIALS),
    ),
    "gpt-neo": Kind(
        "GPTNeoForCausalLM",
        "GPTNeoConfig",
        lambda h: {
            "hidden_size": h,
            "num_layers": 2,
            "num_heads": 2,
            "attention_types": [[["global", "local"], 1]],
            "window_size": 16,
            "max_position_embeddings": MAX_LEN,
            "intermediate_size": 2 * h,
        },
        _byte_bpe("GPT2TokenizerFast", GPT2_SPECIALS),
    ),
    "opt": Kind(
        "OPTForCausalLM",
        "OPTConfig",
        lambda h: {
            "hidden_size": h,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "ffn_dim": 2 * h,
            "word_embed_proj_dim": h,
            "max_position_embeddings": MAX_LEN,
        },
        _byte_bpe(
            "GPT2TokenizerFast",
            {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>", "pad_token": "<pad>"},
            {"add_bos_token": True},
        ),
    ),
    "bloom": Kind(
        "BloomForCausalLM",
        "BloomConfig",
        lambda h: {"hidden_size": h, "n_layer": 2, "n_head": 4},
        _byte_bpe(
            "BloomTokenizerFast",
            {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"},
            from_object=True,
        ),
    ),
    "llama": Kind(
        "LlamaForCausalLM",
        "LlamaConfig",
        _decoder_cfg,
        _sentencepiece("LlamaTokenizerFast", LLAMA_SPM, {"legacy": False}),
    ),
    "mistral": Kind(
        "MistralForCausalLM",
        "MistralConfig",
        lambda h: _decoder_cfg(h) | {"sliding_window": 64},
        _sentencepiece("LlamaTokenizerFast", LLAMA_SPM, {"legacy": False}),
    ),
    "qwen2": Kind(
        "Qwen2ForCausalLM",
        "Qwen2Config",
        lambda h: _decoder_cfg(h) | {"use_sliding_window": False},
        _byte_bpe(
            "Qwen2TokenizerFast",
            {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": None, "bos_token": None},
            {"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]},
        ),
    ),
    "phi": Kind(
        "PhiForCausalLM",
        "PhiConfig",
        lambda h: {
            "hidden_size": h,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 2 * h,
            "max_position_embeddings": MAX_LEN,
            "partial_rotary_factor": 0.5,
        },
        _byte_bpe("CodeGenTokenizerFast", GPT2_SPECIALS),
    ),
    "t5": Kind(
        "T5ForConditionalGeneration",
        "T5Config",
        lambda h: {
            "d_model": h,
            "d_kv": 8,
            "d_ff": 2 * h,
            "num_layers": 2,
            "num_decoder_layers": 2,
            "num_heads": 4,
            "relative_attention_num_buckets": 8,
            "relative_attention_max_distance": 32,
            "decoder_start_token_id": 0,
        },
        _sentencepiece(
            "T5TokenizerFast",
            {"model_type": "unigram", "pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1},
            {"extra_ids": 100, "legacy": False},
        ),
    ),
    "bart": Kind(
        "BartForConditionalGeneration",
        "BartConfig",
        lambda h: {
            "d_model": h,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 2 * h,
            "decoder_ffn_dim": 2 * h,
            "max_position_embeddings": MAX_LEN,
            "decoder_start_token_id": 2,
            "forced_eos_token_id": 2,
        },
        _byte_bpe("BartTokenizerFast", ROBERTA_SPECIALS),
    ),
    "sentence-transformers": Kind(
        "BertModel", "BertConfig", _bert_cfg, BERT_TOKENIZER, {"sentence_transformers": True}
    ),
    "slow-tokenizer-only": Kind(
        "BertForSequenceClassification",
        "BertConfig",
        lambda h: _bert_cfg(h) | _labels(BINARY_LABELS),
        BERT_TOKENIZER,
        {"slow_only": True},
    ),
    "pickle-only": Kind(
        "BertForSequenceClassification",
        "BertConfig",
        lambda h: _bert_cfg(h) | _labels(BINARY_LABELS),
        BERT_TOKENIZER,
        {"pickle": True},
    ),
    "onnx-shipped": Kind(
        "BertForSequenceClassification",
        "BertConfig",
        lambda h: _bert_cfg(h) | _labels(BINARY_LABELS),
        BERT_TOKENIZER,
        {"onnx": True},
    ),
    # XLNet: a real transformers architecture that optimum's ONNX exporter does not support.
    "unsupported": Kind(
        "XLNetLMHeadModel",
        "XLNetConfig",
        lambda h: {"d_model": h, "n_layer": 2, "n_head": 2, "d_inner": 2 * h},
        _sentencepiece(
            "XLNetTokenizerFast",
            {
                "model_type": "unigram",
                "unk_id": 0,
                "bos_id": 1,
                "eos_id": 2,
                "pad_id": -1,
                "control_symbols": ["<cls>", "<sep>", "<pad>", "<mask>"],
            },
        ),
    ),
}

# Vision and audio kinds: preprocessor_config.json as the real repos write it (google/vit-base-patch16-224,
# microsoft/resnet-50, facebook/convnext-tiny-224, google/mobilenet_v2_1.0_224, facebook/wav2vec2-base-960h,
# superb/wav2vec2-base-superb-ks), shrunk to 32x32 images.
IMAGE_SIZE = 32
IMAGE_LABELS = ["tabby cat", "golden retriever", "tiger", "banana", "teapot"]
SOUND_LABELS = ["yes", "no", "up", "down", "_silence_"]
CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONISRHDLUCMFWGYPBVKXJQZ'"]


def _processor(cls: str, **kwargs: Any) -> Callable[[], Any]:
    def build():
        import transformers

        return getattr(transformers, cls)(**kwargs)

    return build


def _ctc_tokenizer(tmp: Path):
    import transformers

    (tmp / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(CTC_VOCAB)}))
    return transformers.Wav2Vec2CTCTokenizer(
        str(tmp / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )


def _wav2vec2_cfg(h: int) -> dict[str, Any]:
    return {
        "hidden_size": h,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 2 * h,
        "conv_dim": [16, 16],
        "conv_kernel": [10, 3],
        "conv_stride": [5, 2],
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
        "num_feat_extract_layers": 2,
        "mask_time_prob": 0.0,
        "feat_extract_norm": "group",
        "do_stable_layer_norm": False,
    }


WAV2VEC2_FEATURES = _processor(
    "Wav2Vec2FeatureExtractor",
    feature_size=1,
    sampling_rate=16000,
    padding_value=0.0,
    do_normalize=True,
    return_attention_mask=False,
)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# ConvNeXt's processor, which the published ResNet repos ship too.
CONVNEXT_PROCESSOR = _processor(
    "ConvNextImageProcessor",
    size={"shortest_edge": IMAGE_SIZE},
    crop_pct=0.875,
    resample=3,
    image_mean=IMAGENET_MEAN,
    image_std=IMAGENET_STD,
)

KINDS.update(
    {
        "vit": Kind(
            "ViTForImageClassification",
            "ViTConfig",
            lambda h: _bert_cfg(h) | {"image_size": IMAGE_SIZE, "patch_size": 8} | _labels(IMAGE_LABELS),
            None,
            processor=_processor(
                "ViTImageProcessor",
                size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                resample=2,
                image_mean=[0.5, 0.5, 0.5],
                image_std=[0.5, 0.5, 0.5],
            ),
        ),
        "convnext": Kind(
            "ConvNextForImageClassification",
            "ConvNextConfig",
            lambda h: {"hidden_sizes": [h // 2, h], "depths": [1, 1], "num_stages": 2} | _labels(IMAGE_LABELS),
            None,
            processor=CONVNEXT_PROCESSOR,
        ),
        "resnet": Kind(
            "ResNetForImageClassification",
            "ResNetConfig",
            lambda h: {"embedding_size": h // 2, "hidden_sizes": [h // 2, h], "depths": [1, 1]} | _labels(IMAGE_LABELS),
            None,
            processor=CONVNEXT_PROCESSOR,
        ),
        "mobilenet-v2": Kind(
            "MobileNetV2ForImageClassification",
            "MobileNetV2Config",
            lambda h: {"image_size": IMAGE_SIZE, "depth_multiplier": 0.35} | _labels(IMAGE_LABELS),
            None,
            processor=_processor(
                "MobileNetV2ImageProcessor",
                size={"shortest_edge": IMAGE_SIZE + 4},
                crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                resample=2,
            ),
        ),
        "wav2vec2-ctc": Kind(
            "Wav2Vec2ForCTC", "Wav2Vec2Config", _wav2vec2_cfg, _ctc_tokenizer, processor=WAV2VEC2_FEATURES
        ),
        "wav2vec2-audio": Kind(
            "Wav2Vec2ForSequenceClassification",
            "Wav2Vec2Config",
            lambda h: _wav2vec2_cfg(h) | {"classifier_proj_size": h} | _labels(SOUND_LABELS),
            None,
            processor=WAV2VEC2_FEATURES,
        ),
    }
)
# Whisper: the special tokens of openai/whisper-tiny (a few languages; every timestamp) after a small BPE vocab,
# and its generation_config.json's fields (language and task tokens, suppressed tokens), decoding at most
# WHISPER_MAX_LENGTH tokens.
WHISPER_LANGUAGES = ["en", "de", "fr", "es"]
WHISPER_SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    *[f"<|{lang}|>" for lang in WHISPER_LANGUAGES],
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]
WHISPER_MAX_LENGTH = 24


def _whisper_tokenizer(tmp: Path):
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(CORPUS_LINES, vocab_size=500, min_frequency=1, special_tokens=["<|endoftext|>"])
    trainer.save_model(str(tmp))
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    tokenizer = transformers.WhisperTokenizerFast(
        vocab_file=str(tmp / "vocab.json"),
        merges_file=str(tmp / "merges.txt"),
        model_max_length=WHISPER_MAX_LENGTH * 4,
        pad_token="<|endoftext|>",
        additional_special_tokens=WHISPER_SPECIALS[1:],
    )
    tokenizer.add_tokens(timestamps)
    return tokenizer


def _whisper_generation_config(dest: Path) -> None:
    """generation_config.json as openai/whisper-tiny's, with this tokenizer's ids."""
    vocab = json.loads((dest / "tokenizer.json").read_text())["model"]["vocab"]
    added = {t["content"]: t["id"] for t in json.loads((dest / "tokenizer.json").read_text())["added_tokens"]}
    ids = {**vocab, **added}
    eot = ids["<|endoftext|>"]
    config = json.loads((dest / "generation_config.json").read_text())
    config.update(
        {
            "_from_model_config": False,  # else transformers rebuilds it from config.json, dropping lang_to_id
            "begin_suppress_tokens": [ids["\u0120"], eot],
            "bos_token_id": eot,
            "decoder_start_token_id": ids["<|startoftranscript|>"],
            "eos_token_id": eot,
            "forced_decoder_ids": [[1, None], [2, ids["<|transcribe|>"]]],
            "is_multilingual": True,
            "lang_to_id": {f"<|{lang}|>": ids[f"<|{lang}|>"] for lang in WHISPER_LANGUAGES},
            "max_initial_timestamp_index": 50,
            "max_length": WHISPER_MAX_LENGTH,
            "no_timestamps_token_id": ids["<|notimestamps|>"],
            "pad_token_id": eot,
            "prev_sot_token_id": ids["<|startofprev|>"],
            "return_timestamps": False,
            "suppress_tokens": sorted({ids[c] for c in '"#()*+/:;<=>@[]^_`{|}~' if c in ids}),
            "task_to_id": {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        }
    )
    (dest / "generation_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    model_config = json.loads((dest / "config.json").read_text())
    model_config["decoder_start_token_id"] = config["decoder_start_token_id"]
    (dest / "config.json").write_text(json.dumps(model_config, indent=2, sort_keys=True) + "\n")


KINDS["whisper"] = Kind(
    "WhisperForConditionalGeneration",
    "WhisperConfig",
    lambda h: {
        "d_model": h,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 2 * h,
        "decoder_ffn_dim": 2 * h,
        "num_mel_bins": 80,
        "max_source_positions": 1500,
        "max_target_positions": 64,
        "init_std": 1.0,  # peaky logits: what it transcribes depends on the sound, and no near-ties
    },
    _whisper_tokenizer,
    {"whisper": True},
    processor=_processor("WhisperFeatureExtractor", feature_size=80),
)
KINDS["yolos"] = Kind(
    "YolosForObjectDetection",
    "YolosConfig",
    lambda h: (
        _bert_cfg(h)
        | {"image_size": [IMAGE_SIZE, 2 * IMAGE_SIZE], "patch_size": 8, "num_detection_tokens": 8}
        | _labels(IMAGE_LABELS)
    ),
    None,
    processor=_processor(
        "YolosImageProcessor",
        size={"shortest_edge": IMAGE_SIZE, "longest_edge": 2 * IMAGE_SIZE},
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    ),
)
KINDS["detr"] = Kind(
    "DetrForObjectDetection",
    "DetrConfig",
    lambda h: (
        {
            "use_timm_backbone": False,
            "use_pretrained_backbone": False,
            "backbone": None,
            "backbone_config": {
                "model_type": "resnet",
                "embedding_size": h // 4,
                "hidden_sizes": [h // 4, h // 2],
                "depths": [1, 1],
                "out_features": ["stage2"],
            },
            "d_model": h,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 2 * h,
            "decoder_ffn_dim": 2 * h,
            "num_queries": 8,
        }
        | _labels(IMAGE_LABELS)
    ),
    None,
    processor=_processor("DetrImageProcessor", size={"shortest_edge": IMAGE_SIZE, "longest_edge": 2 * IMAGE_SIZE}),
)


def _clip_merges(count: int) -> list[tuple[str, str]]:
    """BPE merges learned from the corpus as CLIP's tokenizer splits it (lower case, byte symbols, "</w>" on each
    word's last symbol): the most frequent pair first, ties by spelling. Learned here because the Rust trainer
    numbers the "</w>" symbols in hash order, so its ties break differently run to run."""
    from collections import Counter
    from itertools import pairwise

    from tokenizers import Regex, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    splitter = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""), "removed", invert=True
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    words: Counter[tuple[str, ...]] = Counter()
    for line in CORPUS_LINES:
        for piece, _ in splitter.pre_tokenize_str(normalizer.normalize_str(line)):
            words[(*piece[:-1], piece[-1] + "</w>")] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, n in words.items():
            for pair in pairwise(word):
                pairs[pair] += n
        best = min(pairs, key=lambda pair: (-pairs[pair], pair), default=None)
        if best is None or pairs[best] < 2:
            break
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, n in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if word[i : i + 2] == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


def _clip_tokenizer(tmp: Path):
    """A CLIP BPE (vocab.json + merges.txt, "</w>" word ends, lower case) from the corpus: the 512 byte symbols
    first, then the merges, then the two special tokens, in openai/clip-vit-base-patch32's order."""
    import transformers
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    merges = _clip_merges(300)
    symbols = list(bytes_to_unicode().values())
    vocab = list(dict.fromkeys([*symbols, *(s + "</w>" for s in symbols), *(a + b for a, b in merges)]))
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (tmp / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return transformers.CLIPTokenizerFast(
        vocab_file=str(tmp / "vocab.json"), merges_file=str(tmp / "merges.txt"), model_max_length=CLIP_MAX_LENGTH
    )


CLIP_MAX_LENGTH = 77
# openai/clip-vit-base-patch32's preprocessor_config.json: the old format (CLIPFeatureExtractor, sizes as numbers).
OPENAI_CLIP_PREPROCESSOR = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}
# CLIP: an image tower and a text tower (the tokenizer's ids go into text_config), openai's processor settings.
KINDS["clip"] = Kind(
    "CLIPModel",
    "CLIPConfig",
    lambda h: {
        "text_config": _bert_cfg(h) | {"max_position_embeddings": CLIP_MAX_LENGTH},
        "vision_config": _bert_cfg(h) | {"image_size": IMAGE_SIZE, "patch_size": 8},
        "projection_dim": h // 2,
    },
    _clip_tokenizer,
    {"text_tower": True},
    processor=_processor(
        "CLIPImageProcessor",
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        resample=3,
        image_mean=OPENAI_CLIP_PREPROCESSOR["image_mean"],
        image_std=OPENAI_CLIP_PREPROCESSOR["image_std"],
    ),
)
# SegFormer as nvidia/segformer-b0-finetuned-ade-512-512 (its processor, two of its four stages) on 32x32 images.
SEGMENT_LABELS = ["wall", "sky", "tree", "road", "person"]
KINDS["segformer"] = Kind(
    "SegformerForSemanticSegmentation",
    "SegformerConfig",
    lambda h: (
        {
            "num_encoder_blocks": 2,
            "depths": [1, 1],
            "sr_ratios": [2, 1],
            "hidden_sizes": [h // 4, h // 2],
            "patch_sizes": [7, 3],
            "strides": [4, 2],
            "num_attention_heads": [1, 2],
            "mlp_ratios": [2, 2],
            "decoder_hidden_size": h,
            "initializer_range": 0.5,  # several labels per image, not one everywhere
        }
        | _labels(SEGMENT_LABELS)
    ),
    None,
    processor=_processor(
        "SegformerImageProcessor", size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_reduce_labels=True
    ),
)
# AST as MIT/ast-finetuned-speech-commands-v2 (its feature extractor: 128 mel bins, AudioSet mean and std) over
# AST_FRAMES frames (1 s) instead of 128: the test sounds are padded and cut.
AST_FRAMES = 100
KINDS["ast"] = Kind(
    "ASTForAudioClassification",
    "ASTConfig",
    lambda h: (
        {
            "hidden_size": h,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 2 * h,
            "max_length": AST_FRAMES,
            "num_mel_bins": 128,
        }
        | _labels(SOUND_LABELS)
    ),
    None,
    processor=_processor("ASTFeatureExtractor", max_length=AST_FRAMES, num_mel_bins=128),
)
IMAGE_KINDS = {"vit", "convnext", "resnet", "mobilenet-v2", "yolos", "detr", "segformer"}
AUDIO_KINDS = {"wav2vec2-ctc", "wav2vec2-audio", "whisper", "ast"}
# Models with an image and a text tower: images and texts in.
IMAGE_TEXT_KINDS = {"clip"}
# The vision and audio kinds tests/test_media.py locks, builds and runs end to end.
END_TO_END_MEDIA = ("vit", "convnext", "mobilenet-v2", "yolos", "detr", "segformer", "wav2vec2-ctc", "wav2vec2-audio")
END_TO_END_MEDIA += ("whisper", "ast", "clip")

SEQ2SEQ_KINDS = {"t5", "bart"}
CAUSAL_KINDS = {"gpt2", "gpt-neo", "opt", "bloom", "llama", "mistral", "qwen2", "phi"}
# The text architectures gpux build exports (test_convert's build matrix, benchmarks/bench_build.py's sweep).
TEXT_ARCHITECTURES = [
    "bert",
    "bert-mlm",
    "bert-ner",
    "bert-qa",
    "distilbert",
    "roberta",
    "albert",
    "electra",
    "mpnet",
    "xlm-roberta",
    "deberta-v2",
    "gpt2",
    "gpt-neo",
    "opt",
    "bloom",
    "llama",
    "mistral",
    "qwen2",
    "phi",
    "t5",
    "bart",
    "sentence-transformers",
    "slow-tokenizer-only",
]


# --------------------------------------------------------------------------- generation


def _build(kind: str, hidden: int, seed: int, dest: Path) -> None:
    """Write repo ``kind`` into the empty folder ``dest``."""
    import torch
    import transformers

    spec = KINDS[kind]
    # The tokenizer's source files must outlive save_pretrained, which copies them.
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = spec.tokenizer(Path(tmp)) if spec.tokenizer else None
        config_kwargs = spec.config(hidden)
        if tokenizer is not None:
            # The text tower's config holds them where the model has one (CLIP).
            text_kwargs = config_kwargs["text_config"] if spec.extra.get("text_tower") else config_kwargs
            text_kwargs["vocab_size"] = len(tokenizer)
            # Special token ids in config.json follow the tokenizer, as in real repos.
            for name in ("bos", "eos", "pad"):
                token = getattr(tokenizer, f"{name}_token")
                if token is not None:
                    text_kwargs[f"{name}_token_id"] = tokenizer.convert_tokens_to_ids(token)
        config = getattr(transformers, spec.config_cls)(**config_kwargs)
        config.architectures = [spec.model_cls]

        torch.manual_seed(seed)
        model = getattr(transformers, spec.model_cls)(config).eval()
        if spec.extra.get("whisper"):
            # Zero logits for the special and timestamp tokens: random weights then transcribe words, not
            # timestamps (the output embedding is tied to these rows).
            first_special = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
            with torch.no_grad():
                model.model.decoder.embed_tokens.weight[first_special:] = 0
        if spec.extra.get("onnx"):
            config.save_pretrained(dest)
            _write_onnx_variants(model, dest / "onnx")
        else:
            model.save_pretrained(dest, safe_serialization=not spec.extra.get("pickle"))
        if tokenizer is not None:
            tokenizer.save_pretrained(dest)
        if spec.processor is not None:
            spec.processor().save_pretrained(dest)
    if spec.extra.get("slow_only"):
        (dest / "tokenizer.json").unlink()
    if spec.extra.get("sentence_transformers"):
        _write_sentence_transformers(dest, hidden)
    if spec.extra.get("whisper"):
        _whisper_generation_config(dest)


def _write_sentence_transformers(dest: Path, hidden: int) -> None:
    """The metadata files sentence-transformers saves next to the transformer (mean pooling + normalize)."""
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
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    files = {
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": MAX_LEN, "do_lower_case": False},
        "config_sentence_transformers.json": {
            "__version__": {"sentence_transformers": "3.0.1", "transformers": "4.57.6", "pytorch": "2.13.0"},
            "prompts": {},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
        "1_Pooling/config.json": pooling,
    }
    for path, data in files.items():
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        (dest / path).write_text(json.dumps(data, indent=2) + "\n")


def _write_onnx_variants(model, onnx_dir: Path) -> None:
    """A transformers.js-style onnx/ folder: fp32, dynamic int8 and fp16 graphs of the same model."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx_dir.mkdir(parents=True)
    fp32 = onnx_dir / "model.onnx"
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = tuple(torch.ones(1, 8, dtype=torch.long) for _ in names)
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names} | {"logits": {0: "batch_size"}}
    with torch.no_grad():
        torch.onnx.export(
            model,
            sample,
            str(fp32),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=14,
            dynamo=False,
        )
    quantize_dynamic(fp32, onnx_dir / "model_quantized.onnx", weight_type=QuantType.QUInt8)
    fp16 = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    onnx.save(fp16, str(onnx_dir / "model_fp16.onnx"))


def cache_root() -> Path:
    """Where generated repos are cached."""
    from testhome import tests_home

    return Path(os.environ["GPUX_TEST_CACHE"]) if os.environ.get("GPUX_TEST_CACHE") else tests_home() / "tinymodels"


def repo_dir(kind: str, *, hidden: int = 32, seed: int = 0) -> Path:
    """The cached folder holding repo ``kind`` (generated on first use). Treat it as read-only."""
    if kind not in KINDS:
        raise KeyError(f"unknown tiny model kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    target = cache_root() / f"v{FACTORY_VERSION}" / f"{kind}-h{hidden}-s{seed}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=target.parent))
    try:
        _build(kind, hidden, seed, staging)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # lost a race with another process: theirs is identical
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def make_repo(kind: str, *, hidden: int = 32, seed: int = 0) -> dict[str, bytes]:
    """The files of a tiny repo of ``kind`` (path -> bytes); another ``seed`` gives other weights, same tokenizer."""
    root = repo_dir(kind, hidden=hidden, seed=seed)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_repo(kind: str, dest: str | os.PathLike, *, hidden: int = 32, seed: int = 0) -> Path:
    """Write the files of ``make_repo(kind, ...)`` into ``dest`` (created if needed); returns ``dest``."""
    dest = Path(dest)
    for rel, data in make_repo(kind, hidden=hidden, seed=seed).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return dest
