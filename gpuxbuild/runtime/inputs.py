"""Parse what a user passes to `gpux run` / `POST /predict` into texts or raw tensors plus options."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

import numpy as np

from gpuxbuild.errors import GpuxError
from gpuxbuild.tasks import AUDIO_TASKS, IMAGE_TASKS, IMAGE_TEXT_TASKS, MEDIA_TASKS

TEXT_KEYS = ("text", "text_pair", "question", "context")
# Keys of an image's or a sound's file content (base64, or a data: URL) in JSON inputs.
MEDIA_KEYS = ("image", "audio")


_ONNX_DTYPES = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _integer(low: int):
    def check(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    return check


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Decoding and post-processing options that may ride along with the text:
# option -> (accepts the value?, what it must be). None stands for the default everywhere.
_OPTION_RULES = {
    "aggregation_strategy": (lambda v: v in ("none", "simple"), '"simple" or "none"'),
    "candidate_labels": (
        lambda v: (
            (isinstance(v, str) and v.strip(" ,") != "")
            or (isinstance(v, list) and v != [] and all(isinstance(s, str) and s for s in v))
        ),
        "a list of labels, or one string of comma-separated labels",
    ),
    "do_sample": (lambda v: isinstance(v, bool), "true or false"),
    "hypothesis_template": (lambda v: isinstance(v, str) and "{}" in v, 'a string with "{}" where the label goes'),
    "language": (lambda v: isinstance(v, str) and 0 < len(v) <= 20, 'a language code such as "en"'),
    "max_answer_len": (_integer(1), "an integer >= 1"),
    "max_new_tokens": (_integer(1), "an integer >= 1"),
    "multi_label": (lambda v: isinstance(v, bool), "true or false"),
    "seed": (_integer(0), "an integer >= 0"),
    "stop": (
        lambda v: (
            (isinstance(v, str) and v != "") or (isinstance(v, list) and all(isinstance(s, str) and s for s in v))
        ),
        "a non-empty string or a list of them",
    ),
    "temperature": (lambda v: _number(v) and v > 0, "a number > 0"),
    "threshold": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "top_k": (_integer(1), "an integer >= 1"),
    "top_p": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
}
OPTION_KEYS = tuple(_OPTION_RULES)


def validate_options(options: dict) -> dict:
    """`options` with None values dropped; a value of the wrong type or range is a usage error naming the option."""
    checked = {}
    for key, value in options.items():
        if value is None:
            continue
        if key not in _OPTION_RULES:
            raise GpuxError(f"unknown option {_short(key)}", f"options: {list(OPTION_KEYS)}", exit_code=2)
        accepts, expected = _OPTION_RULES[key]
        if not accepts(value):
            raise GpuxError(
                f"option {key} must be {expected}, got {_short(value)}",
                f"pass {key} as {expected}, or leave it out for the default",
                exit_code=2,
            )
        checked[key] = value
    return checked


@dataclass
class ParsedInputs:
    """Texts (with optional second texts), files (the bytes of images or sounds) or raw tensors; `batched` says
    whether to answer with a list."""

    texts: list[str] = field(default_factory=list)
    pairs: list[str] | None = None
    tensors: dict[str, np.ndarray] | None = None
    files: list[bytes] | None = None
    batched: bool = False
    options: dict = field(default_factory=dict)
    texts_batched: bool = False  # image-text models: the texts came as a list (answers list per text)

    @property
    def is_tensors(self) -> bool:
        return self.tensors is not None


def _expected(input_types: dict[str, str]) -> str:
    tensors = f"tensors {sorted(input_types)}" if input_types else "raw tensors named as the graph's inputs"
    return f'expected {{"text": ...}} (optionally text_pair, question, context), a list of strings, or {tensors}'


def _as_texts(value, key: str, input_types: dict[str, str]) -> tuple[list[str], bool]:
    if isinstance(value, str):
        return [value], False
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value), True
    raise GpuxError(
        f"input '{key}' must be a string or a non-empty list of strings", _expected(input_types), exit_code=2
    )


def _tensor(name: str, value, onnx_type: str) -> np.ndarray:
    dtype = _ONNX_DTYPES.get(onnx_type)
    try:
        array = np.asarray(value, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise GpuxError(
            f"tensor input '{name}' is not a rectangular {onnx_type}: {str(exc)[:80]}",
            "pass nested lists of numbers with equal lengths",
            exit_code=2,
        ) from exc
    if array.dtype == object:
        raise GpuxError(
            f"tensor input '{name}' is not rectangular", "pass nested lists with equal lengths", exit_code=2
        )
    return array


def _check_keys(data: dict, input_types: dict[str, str]) -> None:
    unknown = sorted(set(data) - set(TEXT_KEYS) - set(MEDIA_KEYS) - set(OPTION_KEYS))
    if unknown:
        raise GpuxError(
            f"unknown input keys {[str(k)[:40] for k in unknown[:5]]}",
            _expected(input_types) + f"; options: {list(OPTION_KEYS)}",
            exit_code=2,
        )


def check_inputs(data, options: dict | None = None) -> None:
    """The checks `parse_inputs` makes that need no model: run before loading one, so a typo fails at once.

    A dict with no text or option key may be raw tensors, whose names only the graph knows; tensor values
    are never strings, so a string value under an unknown key is already an error.
    """
    validate_options(dict(options or {}))
    if _are_files(data):
        return
    if isinstance(data, list):
        _as_texts(data, "inputs", {})
    elif isinstance(data, dict) and data:
        known = set(TEXT_KEYS) | set(MEDIA_KEYS) | set(OPTION_KEYS)
        if set(data) & known or any(isinstance(v, str) for v in data.values()):
            _check_keys(data, {})
            validate_options({k: data[k] for k in OPTION_KEYS if k in data})
            for key in TEXT_KEYS + MEDIA_KEYS:
                if key in data:
                    _as_texts(data[key], key, {})
    elif not isinstance(data, str):
        raise GpuxError("inputs must be a JSON object, a string or a list of strings", _expected({}), exit_code=2)


def parse_inputs(
    data, input_types: dict[str, str], task: str | None = None, options: dict | None = None
) -> ParsedInputs:
    """Turn JSON-like `data` into ParsedInputs.

    `input_types` maps the graph's input names to ONNX types (e.g. "tensor(int64)"); a dict whose keys are
    all graph input names is taken as raw tensors and bypasses the tokenizer (the GPUX runtime's format).
    """
    opts = validate_options(dict(options or {}))
    if task in IMAGE_TEXT_TASKS and isinstance(data, dict) and "text" in data and not set(data) <= set(input_types):
        return _parse_image_text(data, task, opts)
    if task in MEDIA_TASKS and not (isinstance(data, dict) and data and set(data) <= set(input_types)):
        return _parse_files(data, task, opts)
    if _are_files(data) or (isinstance(data, dict) and set(data) & set(MEDIA_KEYS)):
        raise GpuxError(
            f"this model takes text, not images or sound (its task is {task})",
            'send {"text": ...}, or use an image or audio model',
            exit_code=2,
        )
    if isinstance(data, str):
        return ParsedInputs(texts=[data], options=opts)
    if isinstance(data, list):
        texts, batched = _as_texts(data, "inputs", input_types)
        return ParsedInputs(texts=texts, batched=batched, options=opts)
    if not isinstance(data, dict) or not data:
        raise GpuxError(
            "inputs must be a JSON object, a string or a list of strings", _expected(input_types), exit_code=2
        )

    if set(data) <= set(input_types):
        tensors = {name: _tensor(name, value, input_types[name]) for name, value in data.items()}
        missing = sorted(set(input_types) - set(tensors))
        if missing:
            raise GpuxError(
                f"tensor inputs are missing {missing}", f"the model takes {sorted(input_types)}", exit_code=2
            )
        return ParsedInputs(tensors=tensors, batched=True, options=opts)

    _check_keys(data, input_types)
    opts.update(validate_options({k: data[k] for k in OPTION_KEYS if k in data}))

    if task == "question-answering":
        question = data.get("question", data.get("text"))
        context = data.get("context", data.get("text_pair"))
        if "question" in data and "context" not in data and "text_pair" not in data:
            context = data.get("text")
        if question is None or context is None:
            raise GpuxError(
                "question-answering needs a question and a context",
                'expected {"question": ..., "context": ...}',
                exit_code=2,
            )
        questions, q_batched = _as_texts(question, "question", input_types)
        contexts, c_batched = _as_texts(context, "context", input_types)
        if len(questions) != len(contexts):
            raise GpuxError(
                f"{len(questions)} questions but {len(contexts)} contexts", "pass one context per question", exit_code=2
            )
        return ParsedInputs(texts=questions, pairs=contexts, batched=q_batched or c_batched, options=opts)

    if "text" not in data:
        raise GpuxError(f"no 'text' in the inputs (got {sorted(data)})", _expected(input_types), exit_code=2)
    texts, batched = _as_texts(data["text"], "text", input_types)
    pair_value = next((data[k] for k in ("text_pair", "context", "question") if k in data), None)
    pairs = None
    if pair_value is not None:
        pairs, pair_batched = _as_texts(pair_value, "text_pair", input_types)
        if len(pairs) != len(texts):
            raise GpuxError(
                f"{len(texts)} texts but {len(pairs)} text pairs", "pass one text_pair per text", exit_code=2
            )
        batched = batched or pair_batched
    return ParsedInputs(texts=texts, pairs=pairs, batched=batched, options=opts)


def _are_files(data) -> bool:
    """Raw file content: the bytes of one file, or a list of them (`gpux run --file`, a request body)."""
    return isinstance(data, bytes) or (
        isinstance(data, list) and bool(data) and all(isinstance(v, bytes) for v in data)
    )


def _parse_files(data, task: str, opts: dict) -> ParsedInputs:
    """The files of an image or audio task: raw bytes, base64 text (or a data: URL), a list of them, or
    {"image"/"audio": one or a list}."""
    kind = "image" if task in IMAGE_TASKS else "audio" if task in AUDIO_TASKS else "file"
    expected = f'send the {kind} file itself, {{"{kind}": BASE64}} or a list of base64 strings'
    if isinstance(data, dict):
        _check_keys(data, {})
        opts = {**opts, **validate_options({k: data[k] for k in OPTION_KEYS if k in data})}
        if kind not in data:
            raise GpuxError(f"no '{kind}' in the inputs (got {sorted(data)[:5]})", expected, exit_code=2)
        data = data[kind]
    batched = isinstance(data, list)
    items = data if batched else [data]
    if not items or not all(isinstance(item, (bytes, str)) for item in items):
        raise GpuxError(f"{task} inputs must be {kind} files", expected, exit_code=2)
    files = [item if isinstance(item, bytes) else _base64(item, kind) for item in items]
    return ParsedInputs(files=files, batched=batched, options=opts)


def _parse_image_text(data: dict, task: str, opts: dict) -> ParsedInputs:
    """{"text": ..., "image": ...} for a model with an image and a text tower (CLIP): texts, with images or not;
    `batched` follows the images when there are some, else the texts."""
    _check_keys(data, {})
    extra = sorted(set(data) & set(TEXT_KEYS) - {"text"})
    if extra:
        raise GpuxError(
            f"{task} inputs take 'text' and 'image', not {extra}",
            'send {"image": BASE64, "text": ["a cat", "a dog"]}, or one of the two',
            exit_code=2,
        )
    opts = {**opts, **validate_options({k: data[k] for k in OPTION_KEYS if k in data})}
    texts, texts_batched = _as_texts(data["text"], "text", {})
    images = _parse_files({"image": data["image"]}, task, {}) if "image" in data else None
    return ParsedInputs(
        texts=texts,
        files=images.files if images else None,
        batched=images.batched if images else texts_batched,
        options=opts,
        texts_batched=texts_batched,
    )


def _base64(text: str, kind: str) -> bytes:
    """The bytes of base64 `text`, with or without a data: URL prefix; a usage error when it is not base64."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        raise GpuxError(
            f"the {kind} input is not base64 ({_short(text)})",
            f"send the {kind} file's bytes in base64, e.g. base64 -w0 FILE, or use gpux run --file",
            exit_code=2,
        )
    return data
