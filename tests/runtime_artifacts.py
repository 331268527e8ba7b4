"""Tiny artifact folders for the runtime tests: a random transformers model, a trained tokenizer, an optimum export.

`artifacts` (a session fixture) builds each kind once per test session: `artifacts("bert")` returns an
`Built(source, artifact)` pair: `source` is the transformers folder (for reference outputs), `artifact`
the folder in the layout of docs/architecture.md. Source folders come from tests/tinymodels.py (`write_repo`),
except the few kinds it lacks, which are made here.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, paris is in france and berlin is in germany",
    "machine learning models run fast on gpus and cpus",
    "john smith works at acme corporation in new york",
    "what is the capital of france? it is paris.",
    "onnx runtime executes graphs with execution providers",
] * 8

# kind -> (optimum task, runtime task written to artifact.json)
KINDS = {
    "bert": ("text-classification", "text-classification"),
    "bert-multilabel": ("text-classification", "text-classification"),
    "distilbert": ("text-classification", "text-classification"),
    "roberta": ("text-classification", "text-classification"),
    "bert-mlm": ("fill-mask", "fill-mask"),
    "bert-ner": ("token-classification", "token-classification"),
    "bert-qa": ("question-answering", "question-answering"),
    "sentence-transformers": ("feature-extraction", "feature-extraction"),
    "gpt2": ("text-generation-with-past", "text-generation"),
    "llama": ("text-generation-with-past", "text-generation"),
    "qwen2": ("text-generation-with-past", "text-generation"),
    "t5": ("text2text-generation-with-past", "text2text-generation"),
    "bart": ("text2text-generation-with-past", "text2text-generation"),
    # Our own wide-init seq2seq models: tinymodels' t5/bart greedily emit only pad/eos, which tests no cache.
    "t5-peaky": ("text2text-generation-with-past", "text2text-generation"),
    "bart-peaky": ("text2text-generation-with-past", "text2text-generation"),
}

# Kinds always made here (tests/tinymodels.py has no equivalent).
_OWN_KINDS = {"bert-multilabel", "t5-peaky", "bart-peaky"}

_COPY = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json", "generation_config.json",
         "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")


@dataclass(frozen=True)
class Built:
    source: Path
    artifact: Path


def _wordpiece():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=160, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64,
                                   clean_up_tokenization_spaces=True)


def _bytelevel(specials: list[str], template: str | None, **special_kwargs):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if template:
        used = [s for s in specials if s in template]
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(s, tok.token_to_id(s)) for s in used])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=64, **special_kwargs)


def _own_model_and_tokenizer(kind: str):
    import torch
    import transformers as tf

    torch.manual_seed(0)
    if kind == "bert-multilabel":
        tokenizer = _wordpiece()
        labels = ["sports", "tech", "travel"]
        config = tf.BertConfig(vocab_size=len(tokenizer), num_hidden_layers=2, max_position_embeddings=64,
                               hidden_size=32, num_attention_heads=2, intermediate_size=37,
                               id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)},
                               problem_type="multi_label_classification")
        return tf.BertForSequenceClassification(config).eval(), tokenizer
    # A wide init makes logits peaky, so greedy choices do not hinge on float rounding between torch and ORT.
    if kind == "t5-peaky":
        tokenizer = _bytelevel(["<pad>", "</s>", "<unk>"], "$A </s>", pad_token="<pad>", eos_token="</s>",
                               unk_token="<unk>")
        config = tf.T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=37, num_layers=2, num_heads=2,
                             decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, initializer_factor=8.0)
        return tf.T5ForConditionalGeneration(config).eval(), tokenizer
    tokenizer = _bytelevel(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<s> $A </s>", bos_token="<s>",
                           pad_token="<pad>", eos_token="</s>", unk_token="<unk>", mask_token="<mask>")
    config = tf.BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=37,
                           decoder_ffn_dim=37, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2, init_std=0.2)
    return tf.BartForConditionalGeneration(config).eval(), tokenizer


def write_source(kind: str, dest: Path) -> Path:
    """Write the tiny transformers model folder of `kind` (tests/tinymodels.py's, or one made here)."""
    if kind not in _OWN_KINDS:
        from tinymodels import write_repo

        return write_repo(kind, dest)
    model, tokenizer = _own_model_and_tokenizer(kind)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def export_artifact(kind: str, source: Path, dest: Path) -> Path:
    """Export `source` with optimum and lay it out as an artifact folder."""
    from optimum.exporters.onnx import main_export

    optimum_task, task = KINDS[kind]
    raw = dest.parent / f"{dest.name}-raw"
    main_export(str(source), output=str(raw), task=optimum_task, do_validation=False)
    dest.mkdir(parents=True, exist_ok=True)
    if (raw / "model.onnx").is_file():
        graphs = {"model": "model.onnx"}
    else:
        graphs = {"encoder": "encoder_model.onnx", "decoder": "decoder_model_merged.onnx"}
    for name in graphs.values():
        shutil.copy(raw / name, dest / name)
    for name in _COPY:
        if (source / name).is_file():
            shutil.copy(source / name, dest / name)
    for sub in ("1_Pooling", "2_Normalize"):
        if (source / sub).is_dir():
            shutil.copytree(source / sub, dest / sub)
    manifest = {"format": 1, "task": task, "graphs": graphs,
                "library": "sentence-transformers" if (source / "modules.json").is_file() else "transformers"}
    (dest / "artifact.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(raw)
    return dest


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    """`artifacts(kind) -> Built`, each kind exported once per test session."""
    root = tmp_path_factory.mktemp("runtime-artifacts")
    cache: dict[str, Built] = {}

    def get(kind: str) -> Built:
        if kind not in cache:
            source = write_source(kind, root / f"{kind}-src")
            cache[kind] = Built(source, export_artifact(kind, source, root / kind))
        return cache[kind]

    return get
