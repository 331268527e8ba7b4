"""Create the quickstart's model folder, models/sentiment/, laid out like a Hugging Face repo.

A tiny BERT sentiment classifier trained in a few seconds on CPU on the sentences below, with a
WordPiece tokenizer trained on the same corpus. Deterministic: fixed seeds, deterministic torch
kernels, one thread, no timestamps; with the project's pinned stack (torch 2.13.0, transformers 4.57,
tokenizers 0.22) two runs write byte-identical files.

    python make_model.py            # (re)write models/sentiment/
    python make_model.py --check    # regenerate into a temp dir; exit 1 if it differs from models/sentiment/
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "models" / "sentiment"
SEED = 1234
MAX_LENGTH = 64
STEPS = 80
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}

# Whole sentences, written as people write reviews.
POSITIVE = """
I love this
I love it
I really love this product
I loved this movie
This is great
This is wonderful
This is amazing
This is excellent
This is fantastic
This is the best thing I have bought
Absolutely wonderful experience
What a great day
The food was delicious
The service was excellent and friendly
The staff were kind and helpful
Highly recommended
I would recommend it to everyone
Five stars, would buy again
It works perfectly
Works like a charm
The quality is superb
Beautiful design and great value
I am very happy with it
I am so happy with this purchase
We had a lovely time
A brilliant film with a great story
The acting was superb
Such a pleasant surprise
It exceeded my expectations
Fast delivery and great packaging
The battery lasts forever
Super easy to use
I enjoyed every minute
This made my day
Everything was perfect
The hotel was clean and comfortable
Great job, thank you
My kids adore it
It is worth every penny
Best purchase ever
""".strip().splitlines()

NEGATIVE = """
This is terrible
This is awful
This is horrible
This is the worst
This is bad
I hate this
I hate it
I really hate this product
I hated this movie
Absolutely terrible experience
What a terrible day
The food was disgusting
The service was slow and rude
The staff were rude and unhelpful
Not recommended
I would not recommend it to anyone
One star, never again
It does not work
It broke after one day
The quality is poor
Ugly design and a waste of money
I am very disappointed with it
I am so unhappy with this purchase
We had a miserable time
A boring film with a stupid story
The acting was dreadful
Such an unpleasant surprise
It failed my expectations
Late delivery and damaged packaging
The battery dies in an hour
Really hard to use
I regretted every minute
This ruined my day
Everything went wrong
The hotel was dirty and uncomfortable
Bad job, a total mess
My kids hate it
It is a waste of money
Worst purchase ever
Do not buy this
""".strip().splitlines()

# Short templates that teach the model the sentiment words themselves, whatever the subject.
SUBJECTS = ["this", "it", "the movie", "the product", "the food", "the service", "the book", "the app"]
GOOD = ["great", "good", "excellent", "wonderful", "amazing", "fantastic", "perfect", "lovely", "awesome", "nice"]
BAD = ["terrible", "bad", "awful", "horrible", "poor", "disappointing", "broken", "useless", "boring", "dreadful"]
LOVE = ["love", "like", "enjoy", "adore"]
HATE = ["hate", "dislike", "regret", "despise"]


def corpus() -> list[tuple[str, int]]:
    """The labelled sentences, in a fixed order: (text, 1 for positive / 0 for negative)."""
    data = [(s, 1) for s in POSITIVE] + [(s, 0) for s in NEGATIVE]
    for subject, (good, bad) in itertools.product(SUBJECTS, zip(GOOD, BAD, strict=True)):
        data += [(f"{subject} is {good}", 1), (f"{subject} is {bad}", 0)]
        data += [(f"{subject} is not {good}", 0), (f"{subject} is not {bad}", 1)]
    for subject, (love, hate) in itertools.product(SUBJECTS, zip(LOVE, HATE, strict=True)):
        data += [(f"I {love} {subject}", 1), (f"I {hate} {subject}", 0)]
    return data


def train_tokenizer(texts: list[str]):
    """A lowercasing BERT WordPiece tokenizer for `texts`, with [CLS] ... [SEP] templates.

    Its vocabulary: the special tokens, the corpus's words by frequency (trained with tokenizers'
    WordLevelTrainer, which breaks ties by the word), then every letter alone and as a `##` suffix so
    that unseen words split into letters instead of [UNK]. tokenizers' WordPieceTrainer is not used:
    in tokenizers 0.22 it breaks ties between equally frequent merges in hash-map order, so its
    vocabulary changes from run to run.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.normalizer, words.pre_tokenizer = normalizer, pre_tokenizer
    words.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials, show_progress=False))
    vocab = sorted(words.get_vocab().items(), key=lambda kv: kv[1])
    letters = sorted({c for text in texts for c in normalizer.normalize_str(text) if not c.isspace()})
    tokens = list(dict.fromkeys([t for t, _ in vocab] + letters + [f"##{c}" for c in letters]))

    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.decoder = decoders.WordPiece(prefix="##")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def train_model(tokenizer, data: list[tuple[str, int]]):
    """A 2-layer BERT fitted to `data` with full-batch AdamW; returns the model in eval mode."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=tokenizer.token_to_id("[PAD]"),
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    model = BertForSequenceClassification(config)
    tokenizer.enable_padding(pad_id=config.pad_token_id, pad_token="[PAD]")
    enc = tokenizer.encode_batch([t for t, _ in data])
    tokenizer.no_padding()
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    labels = torch.tensor([y for _, y in data])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    for _ in range(STEPS):
        opt.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
    return model.eval()


MODEL_CARD = """---
license: apache-2.0
language: en
pipeline_tag: text-classification
library_name: transformers
tags:
- sentiment-analysis
- tiny
---

# sentiment (gpuxbuild quickstart)

A tiny BERT (2 layers, hidden size 32) that tells positive from negative English sentences.
It was trained in a few seconds on a few hundred short review-like sentences by
`examples/quickstart/make_model.py`, which also trained its WordPiece tokenizer; it knows only
the words of that corpus. Labels: `NEGATIVE`, `POSITIVE`.

It exists so that the quickstart runs end to end with no network. Do not use it for anything real.
"""


def write_model(out: Path) -> None:
    """Train and write the whole model folder into `out` (created or overwritten)."""
    import torch
    from transformers import BertTokenizerFast

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = corpus()
    tokenizer = train_tokenizer([t for t, _ in data])
    model = train_model(tokenizer, data)

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        stale.unlink()
    model.save_pretrained(out, safe_serialization=True)
    BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=MAX_LENGTH, do_lower_case=True).save_pretrained(out)
    (out / "README.md").write_text(MODEL_CARD, encoding="utf-8")
    _smoke(model, tokenizer)


def _smoke(model, tokenizer) -> None:
    """Refuse to write a model that gets the quickstart's own examples wrong."""
    import torch

    for text, want in [("I love this", "POSITIVE"), ("This is terrible", "NEGATIVE")]:
        enc = tokenizer.encode(text)
        with torch.no_grad():
            probs = model(input_ids=torch.tensor([enc.ids])).logits.softmax(-1)[0]
        got = LABELS[int(probs.argmax())]
        if got != want or float(probs.max()) < 0.9:
            sys.exit(f"make_model: {text!r} -> {got} ({float(probs.max()):.3f}), expected {want} with >= 0.9")


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def check() -> int:
    """Regenerate into a temp dir and compare with the committed folder; 0 when identical."""
    with tempfile.TemporaryDirectory() as tmp:
        write_model(Path(tmp))
        fresh, committed = hashes(Path(tmp)), hashes(OUT)
    diff = sorted(p for p in fresh.keys() | committed.keys() if fresh.get(p) != committed.get(p))
    for path in diff:
        print(
            f"differs: {path} (committed {committed.get(path, 'missing')[:12]}, fresh {fresh.get(path, 'missing')[:12]})"
        )
    if diff:
        print(
            f"{OUT.relative_to(HERE)} is not what make_model.py writes; rerun `python make_model.py`", file=sys.stderr
        )
        return 1
    print(f"{OUT.relative_to(HERE)}: {len(fresh)} files, identical to a fresh build")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh build with the committed folder")
    args = parser.parse_args()
    # The tokenizers trainer and torch must not depend on the machine's core count.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if args.check:
        return check()
    write_model(OUT)
    for path, sha in hashes(OUT).items():
        print(f"{sha[:12]}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
