"""Artifact folders for the runtime tests, made end to end: tiny model on the test Hub -> gpux lock -> build -> sync.

`artifacts` (a session fixture) does that once per test session for every kind: `artifacts("bert")` returns a
`Built(source, artifact)` pair: `source` is the transformers folder (for reference outputs), `artifact`
the synced model folder (.gpux/models/<kind>, the layout of docs/architecture.md). Source folders come from tests/support/tinymodels.py (`write_repo`),
except the few kinds it lacks, which are made here.
"""

from __future__ import annotations

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
    "deberta-v2": ("text-classification", "text-classification"),  # NLI labels: zero-shot classification
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

# Kinds always made here (tests/support/tinymodels.py has no equivalent).
_OWN_KINDS = {"bert-multilabel", "t5-peaky", "bart-peaky"}


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
    tok.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=160, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
        clean_up_tokenization_spaces=True,
    )


def _bytelevel(specials: list[str], template: str | None, **special_kwargs):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    if template:
        used = [s for s in specials if s in template]
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(s, tok.token_to_id(s)) for s in used]
        )
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
        config = tf.BertConfig(
            vocab_size=len(tokenizer),
            num_hidden_layers=2,
            max_position_embeddings=64,
            hidden_size=32,
            num_attention_heads=2,
            intermediate_size=37,
            id2label=dict(enumerate(labels)),
            label2id={v: i for i, v in enumerate(labels)},
            problem_type="multi_label_classification",
        )
        return tf.BertForSequenceClassification(config).eval(), tokenizer
    # A wide init makes logits peaky, so greedy choices do not hinge on float rounding between torch and ORT.
    if kind == "t5-peaky":
        tokenizer = _bytelevel(
            ["<pad>", "</s>", "<unk>"], "$A </s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
        )
        config = tf.T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=16,
            d_ff=37,
            num_layers=2,
            num_heads=2,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
            initializer_factor=8.0,
        )
        return tf.T5ForConditionalGeneration(config).eval(), tokenizer
    tokenizer = _bytelevel(
        ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        "<s> $A </s>",
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    config = tf.BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
        init_std=0.2,
    )
    return tf.BartForConditionalGeneration(config).eval(), tokenizer


def write_source(kind: str, dest: Path) -> Path:
    """Write the tiny transformers model folder of `kind` (tests/support/tinymodels.py's, or one made here)."""
    if kind not in _OWN_KINDS:
        from tinymodels import write_repo

        return write_repo(kind, dest)
    model, tokenizer = _own_model_and_tokenizer(kind)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def sync_artifacts(hub, kinds: list[str], sources: dict[str, Path], root: Path) -> dict[str, Path]:
    """Publish each source on the test Hub, then `gpux lock`, `gpux build` and `gpux sync` them in one project,
    exactly as a user would; returns kind -> synced model folder."""
    from helpers import synced_project

    models = {}
    for kind in kinds:
        repo = f"runtime-artifacts/{kind}"
        hub.create_repo(repo)
        files = {
            p.relative_to(sources[kind]).as_posix(): p.read_bytes() for p in sources[kind].rglob("*") if p.is_file()
        }
        hub.commit(repo, files, message=f"add {kind}")
        models[kind] = {"source": f"hf:{repo}", "task": KINDS[kind][1]}
    project = synced_project(root, models)
    return {kind: project / ".gpux" / "models" / kind for kind in kinds}


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory, hub):
    """`artifacts(kind) -> Built`: every kind is published on the test Hub, locked, built and synced once per session."""
    root = tmp_path_factory.mktemp("runtime-artifacts")
    cache: dict[str, Built] = {}
    failure: list[BaseException] = []

    def get(kind: str) -> Built:
        if failure:  # built once per session: later tests report the same failure
            raise failure[0]
        if not cache:
            try:
                sources = {k: write_source(k, root / f"{k}-src") for k in KINDS}
                for k, folder in sync_artifacts(hub, list(KINDS), sources, root).items():
                    cache[k] = Built(sources[k], folder)
            except BaseException as exc:
                failure.append(exc)
                raise
        return cache[kind]

    return get
