"""Full-size tokenizers for the benchmarks, generated deterministically at the published vocabulary sizes.

The real vocab files of bert/gpt2/roberta/t5 are not reachable from here, and a tokenizer's load and conversion
time grows with its vocabulary, so the benchmarks serve generated ones of the same shape instead:

    wordpiece(size)        bert-base-uncased's layout: [PAD]=0, [unused*], [UNK]=100 [CLS]=101 [SEP]=102
                           [MASK]=103, characters and their ## forms, then words and ## pieces
    byte_bpe(size, ...)    gpt2/roberta: 256 byte symbols, (size - 256 - specials) merges, specials at their ids
    unigram(size, ...)     t5-small: a SentencePiece unigram model of `size` pieces (pad=0, eos=1, unk=2)
    whisper(size)          whisper-tiny (multilingual): a byte-level BPE whose <|endoftext|> is 50257, then its
                           special tokens (99 languages, task tokens, <|notimestamps|>=50363) and 1501 timestamps

Words are pronounceable strings drawn from syllables by random.Random(0), so every run gives the same bytes.
Each function returns the files of the tokenizer (path -> bytes) as the fast tokenizer class saves them.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

ONSETS = [
    "",
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "z",
    "ch",
    "st",
    "tr",
]
VOWELS = ["a", "e", "i", "o", "u", "ou", "ea", "y"]
CODAS = ["", "", "n", "r", "s", "t", "l", "ng", "ck"]
MAX_LEN = 512


def words(seed: int = 0) -> Iterator[str]:
    """Endless distinct pronounceable lowercase words, the same sequence for the same seed."""
    rng, seen = random.Random(seed), set()
    while True:
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.randint(1, 3)))
        if word not in seen:
            seen.add(word)
            yield word


def _saved(tokenizer) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="bench-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def wordpiece(size: int = 30522) -> dict[str, bytes]:
    """A BERT uncased WordPiece tokenizer of `size` entries (vocab.txt + tokenizer.json)."""
    import string

    import transformers

    specials = ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + specials
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab += chars + [f"##{c}" for c in string.ascii_lowercase + string.digits]
    known = set(vocab)
    for n, word in enumerate(words()):
        if len(vocab) >= size:
            break
        piece = word if n % 3 else f"##{word}"
        if piece not in known:
            known.add(piece)
            vocab.append(piece)
    with tempfile.TemporaryDirectory(prefix="bench-tok-") as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(vocab[:size]) + "\n")
        tok = transformers.BertTokenizerFast(vocab_file=str(Path(tmp) / "vocab.txt"), model_max_length=MAX_LEN)
        return _saved(tok)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-ins for the 256 bytes."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    mapping, extra = {}, 0
    for b in range(256):
        if b in visible:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def byte_bpe(
    size: int,
    fast_cls: str,
    leading: list[str],
    trailing: list[str],
    added: tuple[str, ...] = (),
    **specials: str | list[str],
) -> dict[str, bytes]:
    """A byte-level BPE of `size` ids: `leading` specials first, 256 byte symbols, merges, `trailing` specials last;
    then (beyond `size`) the special tokens of `specials`' additional_special_tokens and the `added` tokens.

    Merges build words left to right (`Ġ` marks a leading space, as in GPT-2), so every merge's parts exist.
    """
    import transformers

    symbols = list(_bytes_to_unicode().values())
    vocab = list(leading) + symbols
    known, merges = set(vocab), []
    n_merges = size - len(vocab) - len(trailing)
    for n, word in enumerate(words()):
        pieces = list(("Ġ" if n % 2 == 0 else "") + word)
        prefix = pieces[0]
        for piece in pieces[1:]:
            merged = prefix + piece
            if merged not in known:
                if len(merges) == n_merges:
                    break
                merges.append(f"{prefix} {piece}")
                known.add(merged)
                vocab.append(merged)
            prefix = merged
        if len(merges) == n_merges:
            break
    vocab += trailing
    with tempfile.TemporaryDirectory(prefix="bench-tok-") as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        tok = getattr(transformers, fast_cls)(
            vocab_file=str(Path(tmp) / "vocab.json"),
            merges_file=str(Path(tmp) / "merges.txt"),
            model_max_length=MAX_LEN,
            **specials,
        )
        if added:
            tok.add_tokens(list(added))
        return _saved(tok)


def unigram(size: int = 32000, extra_ids: int = 100) -> dict[str, bytes]:
    """A T5-style SentencePiece unigram model of `size` pieces plus `extra_ids` sentinels (spiece.model + tokenizer.json)."""
    import string

    import transformers
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = pb.ModelProto()
    model.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    model.trainer_spec.vocab_size = size
    model.trainer_spec.pad_id, model.trainer_spec.eos_id, model.trainer_spec.unk_id = 0, 1, 2
    model.trainer_spec.bos_id = -1
    model.normalizer_spec.name = "nmt_nfkc"
    model.normalizer_spec.add_dummy_prefix = True
    model.normalizer_spec.remove_extra_whitespaces = True
    for piece, kind in (("<pad>", pb.ModelProto.SentencePiece.CONTROL), ("</s>", pb.ModelProto.SentencePiece.CONTROL)):
        model.pieces.add(piece=piece, score=0.0, type=kind)
    model.pieces.add(piece="<unk>", score=0.0, type=pb.ModelProto.SentencePiece.UNKNOWN)
    pieces = ["▁", *(string.ascii_letters + string.digits + string.punctuation)]
    known = set(pieces)
    for n, word in enumerate(words()):
        if len(pieces) + 3 >= size:
            break
        piece = ("▁" if n % 2 == 0 else "") + word
        if piece not in known:
            known.add(piece)
            pieces.append(piece)
    for rank, piece in enumerate(pieces):
        model.pieces.add(piece=piece, score=-2.0 - rank / 1000, type=pb.ModelProto.SentencePiece.NORMAL)
    with tempfile.TemporaryDirectory(prefix="bench-tok-") as tmp:
        (Path(tmp) / "spiece.model").write_bytes(model.SerializeToString())
        tok = transformers.T5TokenizerFast(
            vocab_file=str(Path(tmp) / "spiece.model"), extra_ids=extra_ids, legacy=False, model_max_length=MAX_LEN
        )
        return _saved(tok)


def whisper_specials() -> list[str]:
    """whisper-tiny's special tokens after <|endoftext|> (ids 50258-50363): its 99 languages (transformers' list
    without Cantonese, which large-v3 added)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    languages = [f"<|{code}|>" for code in LANGUAGES if code != "yue"]
    tasks = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>"]
    return ["<|startoftranscript|>", *languages, *tasks, "<|notimestamps|>"]


def whisper(size: int = 51865) -> dict[str, bytes]:
    """A multilingual Whisper tokenizer of `size` ids: byte-level BPE up to <|endoftext|>, the special tokens,
    then the 1501 timestamp tokens <|0.00|> ... <|30.00|>."""
    eot = "<|endoftext|>"
    specials = whisper_specials()
    timestamps = tuple(f"<|{i * 0.02:.2f}|>" for i in range(1501))
    base = size - len(specials) - len(timestamps)
    return byte_bpe(
        base,
        "WhisperTokenizerFast",
        [],
        [eot],
        timestamps,
        bos_token=eot,
        eos_token=eot,
        unk_token=eot,
        pad_token=eot,
        additional_special_tokens=specials,
    )


ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
    "cls_token": "<s>",
    "sep_token": "</s>",
}


def for_kind(kind: str, vocab_size: int) -> dict[str, bytes]:
    """The full-size tokenizer files for a benchmark model whose tiny-model tokenizer kind is `kind`."""
    if kind in ("bert-mlm", "distilbert", "sentence-transformers"):
        return wordpiece(vocab_size)
    if kind == "gpt2":
        eos = "<|endoftext|>"
        return byte_bpe(vocab_size, "GPT2TokenizerFast", [], [eos], bos_token=eos, eos_token=eos, unk_token=eos)
    if kind == "roberta":
        return byte_bpe(
            vocab_size, "RobertaTokenizerFast", ["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"], **ROBERTA_SPECIALS
        )
    if kind == "t5":  # 32000 pieces + 100 sentinels; the config's 32128 rows pad the embedding, as published
        return unigram()
    if kind == "whisper":
        return whisper(vocab_size)
    raise ValueError(f"no full-size tokenizer for kind {kind!r}")
