"""Tokenization from an artifact's tokenizer.json with the `tokenizers` library (no transformers)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpuxbuild.errors import GpuxError

# transformers writes this (int(1e30)) when a tokenizer has no length limit.
_NO_LIMIT = 1_000_000
_DEFAULT_MAX_LENGTH = 512
# Texts are cut to max_length * this many characters before tokenizing: tokens of real text span a few
# characters, so the kept tokens do not change, and a megabyte text costs no more than a short one.
CHARS_PER_TOKEN = 32

_CLEANUPS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


@dataclass
class Batch:
    """Tokenized texts as int64 arrays (padded to the longest) plus the per-text encodings."""

    arrays: dict[str, np.ndarray]
    encodings: list


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GpuxError(f"{path.name} is not valid JSON: {exc}", "rebuild the artifact with gpux build") from exc


def _token_text(value) -> str | None:
    # tokenizer_config stores special tokens either as strings or as AddedToken dicts.
    if isinstance(value, dict):
        return value.get("content")
    return value


class TextTokenizer:
    """A fast tokenizer plus the special-token facts the runtime needs (pad, mask, eos, max length)."""

    def __init__(self, folder: Path, max_length: int | None = None, model_config: dict | None = None):
        from tokenizers import Tokenizer

        path = folder / "tokenizer.json"
        if not path.is_file():
            raise GpuxError(f"{folder}: no tokenizer.json", "text inputs need a tokenizer; pass raw tensors instead")
        self.tok = Tokenizer.from_file(str(path))
        # The saved padding/truncation are whatever the exporter left; we set our own per call.
        self.tok.no_padding()
        self.tok.no_truncation()
        # encode() sets padding/truncation on the shared tokenizer for the length of a call: one call at a time
        # (the server counts tokens on its event loop while a worker thread runs a batch).
        self._lock = threading.Lock()
        self.config = {**_read_json(folder / "special_tokens_map.json"), **_read_json(folder / "tokenizer_config.json")}
        model_config = model_config or {}
        self.padding_side = self.config.get("padding_side", "right")
        self.clean_up_spaces = bool(self.config.get("clean_up_tokenization_spaces", False))
        self.pad_token_id = self._special_id("pad_token")
        if self.pad_token_id is None:
            self.pad_token_id = model_config.get("pad_token_id")
        if self.pad_token_id is None:
            self.pad_token_id = 0
        self.mask_token_id = self._special_id("mask_token")
        self.cls_token_id = self._special_id("cls_token")
        self.unk_token_id = self._special_id("unk_token")
        self.max_length = max_length or self._default_max_length(model_config)

    def _special_id(self, key: str) -> int | None:
        text = _token_text(self.config.get(key))
        return self.tok.token_to_id(text) if text else None

    def _default_max_length(self, model_config: dict) -> int:
        limit = self.config.get("model_max_length")
        if isinstance(limit, (int, float)) and 0 < limit < _NO_LIMIT:
            return int(limit)
        positions = model_config.get("max_position_embeddings") or model_config.get("n_positions")
        if isinstance(positions, int) and positions > 0:
            return positions
        return _DEFAULT_MAX_LENGTH

    def encode(
        self,
        texts: list[str],
        pairs: list[str] | None = None,
        *,
        truncation: str = "longest_first",
        add_special_tokens: bool = True,
        pad: bool = True,
    ) -> Batch:
        """Tokenize a batch, truncated to max_length and padded to the longest text with the pad id.

        Each text is first cut to max_length * CHARS_PER_TOKEN characters (a prefix: offsets stay valid)."""
        limit = self.max_length * CHARS_PER_TOKEN
        texts = [t[:limit] for t in texts]
        pairs = None if pairs is None else [t[:limit] for t in pairs]
        with self._lock:
            self.tok.enable_truncation(self.max_length, strategy=truncation)
            if pad:
                pad_text = self.tok.id_to_token(self.pad_token_id) or ""
                self.tok.enable_padding(direction=self.padding_side, pad_id=self.pad_token_id, pad_token=pad_text)
            try:
                items = list(zip(texts, pairs, strict=True)) if pairs is not None else list(texts)
                encodings = self.tok.encode_batch(items, add_special_tokens=add_special_tokens)
            except Exception as exc:  # tokenizers raises plain Exceptions for bad input types
                raise GpuxError(f"could not tokenize the input: {exc}", "pass text as strings") from exc
            finally:
                self.tok.no_padding()
                self.tok.no_truncation()
        arrays = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return Batch(arrays=arrays, encodings=encodings)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Ids back to text, with transformers' clean-up of spaces before punctuation when configured."""
        text = self.tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return self.clean_up(text) if self.clean_up_spaces else text

    @staticmethod
    def clean_up(text: str) -> str:
        """transformers' `clean_up_tokenization`: drop spaces before punctuation and contractions."""
        for old, new in _CLEANUPS:
            text = text.replace(old, new)
        return text

    def tokens_to_string(self, tokens: list[str]) -> str:
        """Join sub-word tokens into text the way the tokenizer's decoder does."""
        if self.tok.decoder is None:
            return " ".join(tokens)
        return self.tok.decoder.decode(tokens)

    def id_to_token(self, token_id: int) -> str:
        return self.tok.id_to_token(int(token_id))
