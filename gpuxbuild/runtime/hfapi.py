"""The Hugging Face Inference API's payloads and answers: `{"inputs": ..., "parameters": {...}}` in, the
pipeline's per-task shapes out (what `huggingface_hub.InferenceClient(model=URL)` sends and parses).

`parse_request` turns a payload into what `Model.predict` takes; `answer` turns its result into the API's shape.
Image and audio tasks take the file as base64 text in "inputs", or its raw bytes as the whole request body.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gpuxbuild.errors import GpuxError
from gpuxbuild.runtime.inputs import OPTION_KEYS, TEXT_KEYS, validate_options
from gpuxbuild.tasks import IMAGE_TEXT_TASKS

# Payload keys besides inputs/parameters: "options" (the API's wait_for_model/use_cache: nothing to wait for
# here), "stream" (false only: token streaming is the OpenAI endpoints'), "model" (selects a served model).
_PAYLOAD_KEYS = ("inputs", "model", "options", "parameters", "stream")
# Parameters understood here rather than by `Model.predict`.
_OWN_PARAMETERS = ("normalize", "return_full_text", "truncate", "truncation")
_GENERATION = ("text-generation", "text2text-generation")
# text2text artifacts built for these tasks answer with the task's key (what InferenceClient parses).
_TEXT_KEYS = {"summarization": "summary_text", "translation": "translation_text"}
# Encoder-decoder architectures that only translate.
_TRANSLATION_ARCHITECTURES = ("FSMTForConditionalGeneration", "M2M100ForConditionalGeneration", "MarianMTModel")


@dataclass(frozen=True)
class HFRequest:
    """One Inference API payload, parsed: `inputs`/`options` go to `Model.predict`, the rest shapes the answer."""

    inputs: object
    options: dict = field(default_factory=dict)
    return_full_text: bool = True
    normalize: bool = False
    similarity: bool = False  # sentence-similarity: {"source_sentence", "sentences"} -> list of scores


def is_hf_payload(data) -> bool:
    """An Inference API payload: a JSON object with an "inputs" key."""
    return isinstance(data, dict) and "inputs" in data


def _bad(message: str, hint: str) -> GpuxError:
    return GpuxError(message, hint, exit_code=2)


def _parameters(parameters, task: str | None) -> tuple[dict, dict]:
    """(options for Model.predict, parameters handled here); an unsupported parameter that asks for something
    (not null/false/0) is refused in the words huggingface_hub's client understands (it retries without it)."""
    if parameters is None:
        return {}, {}
    if not isinstance(parameters, dict):
        raise _bad('"parameters" must be a JSON object', 'e.g. {"inputs": "...", "parameters": {"top_k": 2}}')
    options = {k: v for k, v in parameters.items() if k in OPTION_KEYS}
    own = {k: v for k, v in parameters.items() if k in _OWN_PARAMETERS}
    unused = sorted(k for k, v in parameters.items() if k not in options and k not in own and v)
    if unused:
        raise _bad(
            f"The following `model_kwargs` are not used by the model: {unused}",
            f"parameters gpux serves: {sorted(OPTION_KEYS + _OWN_PARAMETERS)}",
        )
    for key in ("return_full_text", "normalize"):
        if key in own and not isinstance(own[key], bool):
            raise _bad(f"parameter {key} must be true or false, got {own[key]!r}"[:120], f"pass {key}: true or false")
    if task is not None and task not in _GENERATION and "return_full_text" in own:
        raise _bad("The following `model_kwargs` are not used by the model: ['return_full_text']", "leave it out")
    return validate_options(options), own


def parse_request(data: dict, task: str | None) -> HFRequest:
    """Check an Inference API payload for a model of `task` (None: before the model is known) and translate it;
    bad payloads are usage errors."""
    unknown = sorted(str(k)[:40] for k in data if k not in _PAYLOAD_KEYS)
    if unknown:
        raise _bad(f"unknown payload keys {unknown[:5]}", f"an Inference API payload has {list(_PAYLOAD_KEYS)}")
    if data.get("stream"):
        raise _bad(
            "stream is not served on the Inference API paths",
            "stream tokens from POST /v1/completions or /v1/chat/completions with stream: true",
        )
    options, own = _parameters(data.get("parameters"), task)
    inputs = data["inputs"]
    similarity = False
    if isinstance(inputs, dict) and {"source_sentence", "sentences"} <= set(inputs):
        source, sentences = inputs["source_sentence"], inputs["sentences"]
        if not isinstance(source, str) or not isinstance(sentences, list) or not sentences:
            raise _bad(
                "sentence-similarity needs a source_sentence string and a non-empty list of sentences",
                'e.g. {"inputs": {"source_sentence": "a", "sentences": ["b", "c"]}}',
            )
        inputs, similarity = {"text": [source] * len(sentences), "text_pair": sentences}, True
    elif not isinstance(inputs, (str, list, dict)):
        raise _bad(
            '"inputs" must be a string, a list of strings or an object',
            'e.g. {"inputs": "I love this"} or {"inputs": {"question": "...", "context": "..."}}',
        )
    elif isinstance(inputs, dict) and not set(inputs) <= set(TEXT_KEYS):
        raise _bad(
            f"unknown keys {sorted(str(k)[:40] for k in set(inputs) - set(TEXT_KEYS))[:5]} in inputs",
            f"an inputs object has {list(TEXT_KEYS)} (options go in parameters; raw tensors are POSTed bare)",
        )
    return HFRequest(
        inputs=inputs,
        options=options,
        return_full_text=own.get("return_full_text", True),
        normalize=own.get("normalize", False),
        similarity=similarity,
    )


def text_key(raw_task: str, config: dict | None) -> str:
    """The answer key of a text2text model: `summary_text` / `translation_text` for an artifact built for
    summarization / translation, or whose config.json says it does only that (a translation architecture, or
    `task_specific_params` for one of the two tasks alone), else `generated_text`."""
    if raw_task in _TEXT_KEYS:
        return _TEXT_KEYS[raw_task]
    config = config or {}
    if any(a in _TRANSLATION_ARCHITECTURES for a in config.get("architectures") or []):
        return _TEXT_KEYS["translation"]
    params = config.get("task_specific_params")
    kinds = {t for key in params for t in _TEXT_KEYS if str(key).startswith(t)} if isinstance(params, dict) else set()
    return _TEXT_KEYS[kinds.pop()] if len(kinds) == 1 else "generated_text"


def _image_text(result: dict):
    """CLIP's answers: zero-shot [{label, score}], an embedding's floats, or the similarities to the texts."""
    if "labels" in result:
        return [{"label": x["label"], "score": x["score"]} for x in result["labels"]]
    return result["embedding"] if "embedding" in result else result["similarity"]


def _one(result: dict, request: HFRequest, task: str, raw_task: str, config: dict | None):
    if task in IMAGE_TEXT_TASKS:
        return _image_text(result)
    if task == "text-classification" and "sequence" in result:  # zero-shot: {sequence, labels, scores}
        return result
    if task in ("text-classification", "image-classification", "audio-classification"):
        return [{"label": x["label"], "score": x["score"]} for x in result["labels"]]
    if task == "token-classification":
        return result["entities"]
    if task == "fill-mask":
        masks = result["masks"]
        return masks[0] if len(masks) == 1 else masks
    if task == "feature-extraction":
        vector = np.asarray(result["embedding"], dtype=np.float32)
        if request.normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return vector.tolist()
    if task == "text-generation":
        return [{"generated_text": result["generated_text"] if request.return_full_text else result["completion"]}]
    if task == "text2text-generation":
        return [{text_key(raw_task, config): result["generated_text"]}]
    if task == "object-detection":
        return result["objects"]
    if task == "image-segmentation":
        return [{"score": s["score"], "label": s["label"], "mask": s["mask"]} for s in result["segments"]]
    return result  # question-answering: {answer, score, start, end} (a list with top_k > 1); speech: {text}


def answer(result, request: HFRequest, task: str, raw_task: str = "", config: dict | None = None):
    """`Model.predict`'s result for `request` in the Inference API's shape for `task` (raw_task: the artifact's
    own task name, e.g. "summarization", and config: its config.json, pick a text2text answer's key)."""
    if request.similarity:
        return [item["similarity"] for item in result["results"]]
    if isinstance(result, dict) and set(result) == {"results"}:
        return [_one(item, request, task, raw_task, config) for item in result["results"]]
    one = _one(result, request, task, raw_task, config)
    if task in ("text-classification", "feature-extraction") and "sequence" not in result:
        return [one]  # a batch of one: [[{label, score}, ...]] and [[floats]], as the API answers a single text
    return one
