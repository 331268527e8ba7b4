"""Post-processing per task: graph outputs (numpy) -> JSON-ready results, matching transformers' pipelines."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gpuxbuild.errors import GpuxError
from gpuxbuild.tasks import SUPPORTED_TASKS as TASKS
from gpuxbuild.tasks import normalize_task as _normalize


def normalize_task(task: str) -> str:
    """Map an artifact's task ("text-generation-with-past", "sentence-similarity", ...) to a runtime task."""
    base = _normalize(task)
    if base is None:
        raise GpuxError(
            f"artifact.json task '{task}' is not supported by gpux run",
            f"supported tasks: {', '.join(TASKS)}; raw tensors still work with any graph",
        )
    return base


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _label(id2label: dict, index: int) -> str:
    return str(id2label.get(str(index), id2label.get(index, f"LABEL_{index}")))


def classify(
    logits: np.ndarray, id2label: dict, problem_type: str | None = None, top_k: int | None = None
) -> list[dict]:
    """Per row: {"label", "score", "labels": all labels sorted by score, desc}.

    Softmax for single-label models, sigmoid for multi-label ones (and for one-logit models), like the pipeline.
    """
    if problem_type == "multi_label_classification" or logits.shape[-1] == 1:
        scores = sigmoid(logits)
    elif problem_type == "regression":
        scores = logits.astype(np.float64)
    else:
        scores = softmax(logits)
    results = []
    for row in scores:
        order = np.argsort(-row, kind="stable")
        if top_k is not None:
            order = order[: int(top_k)]
        labels = [{"label": _label(id2label, int(i)), "score": float(row[i])} for i in order]
        results.append({"label": labels[0]["label"], "score": labels[0]["score"], "labels": labels})
    return results


DEFAULT_HYPOTHESIS = "This example is {}."  # the zero-shot-classification pipeline's default template


def candidate_labels(value: str | list[str]) -> list[str]:
    """The pipeline's parsing of candidate_labels: a list as is, a string split on commas."""
    return [label.strip() for label in value.split(",") if label.strip()] if isinstance(value, str) else list(value)


def entailment_id(label2id: dict) -> int | None:
    """The index of an NLI model's entailment label (the first whose name starts with "entail"), or None."""
    for label, index in label2id.items():
        if str(label).lower().startswith("entail"):
            return int(index)
    return None


def zero_shot(logits: np.ndarray, entailment: int, labels: list[str], multi_label: bool, sequence: str) -> dict:
    """The zero-shot-classification pipeline's answer from an NLI model's logits, one row per (text, hypothesis
    of a label): softmax of the entailment logits over the labels, or, with `multi_label` (or one label),
    entailment against contradiction per label. Labels sorted by score, likeliest first."""
    if multi_label or len(labels) == 1:
        contradiction = -1 if entailment == 0 else 0
        scores = softmax(logits[:, [contradiction, entailment]])[:, 1]
    else:
        scores = softmax(logits[:, entailment])
    order = list(reversed(scores.argsort()))  # as the pipeline orders (ties included)
    return {"labels": [labels[i] for i in order], "scores": [float(scores[i]) for i in order], "sequence": sequence}


CLIP_HYPOTHESIS = "This is a photo of {}."  # the zero-shot-image-classification pipeline's default template


def zero_shot_image(logits: np.ndarray, labels: list[str], top_k: int | None = None) -> dict:
    """One image's zero-shot answer from its row of CLIP's logits_per_image (one logit per label's hypothesis):
    {"label", "score", "labels": [{"label", "score"}]}, the softmax over the labels, likeliest first, ties in
    the labels' order (as the pipeline sorts)."""
    scores = softmax(logits)
    order = sorted(range(len(labels)), key=lambda i: -scores[i])[: top_k or None]
    ranked = [{"label": labels[i], "score": float(scores[i])} for i in order]
    return {"label": ranked[0]["label"], "score": ranked[0]["score"], "labels": ranked}


def image_text_similarity(image_embeds: np.ndarray, text_embeds: np.ndarray) -> np.ndarray:
    """[images, texts] cosine similarities of CLIP's image and text embeddings (logits_per_image without the
    model's logit scale)."""
    return l2_normalize(image_embeds.astype(np.float64)) @ l2_normalize(text_embeds.astype(np.float64)).T


def detect(logits: np.ndarray, boxes: np.ndarray, id2label: dict, size: tuple[int, int], threshold: float) -> dict:
    """One image's {"objects": [{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}]}, as the object
    detection pipeline: the best class but the last ("no object") per query, kept above `threshold`, in query
    order; boxes from (center, size) fractions to pixels of the original (height, width), truncated to ints."""
    probs = softmax(logits)[..., :-1]
    scores, labels = probs.max(axis=-1), probs.argmax(axis=-1)
    cx, cy, w, h = boxes.astype(np.float32).T
    corners = np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)
    height, width = size
    corners = corners * np.array([width, height, width, height], dtype=np.float32)
    objects = []
    for score, label, box in zip(scores, labels, corners.astype(np.int32), strict=True):
        if score > threshold:
            xmin, ymin, xmax, ymax = (int(v) for v in box)
            objects.append(
                {
                    "score": float(score),
                    "label": _label(id2label, int(label)),
                    "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
                }
            )
    return {"objects": objects}


# Logits resized at once for a segmentation map: a band of rows at most this many values (bounded memory).
_RESIZE_BAND_VALUES = 1 << 22


def _bilinear_axis(out: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis of torch's bilinear resize (align_corners=False) from `size` to `out` samples: the two source
    indices and weights of each output sample (half-pixel centres, clamped at 0; the position is rounded to float32
    once, as torch's fused multiply-add)."""
    scale = np.float32(size) / np.float32(out)
    src = np.maximum((np.float64(scale) * (np.arange(out) + 0.5) - 0.5).astype(np.float32), np.float32(0))
    low = src.astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    weight = src - low.astype(np.float32)
    return low, high, np.float32(1) - weight, weight


def semantic_map(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The class of each pixel [height, width] of an image of `size` (height, width) from a semantic segmentation
    model's logits [labels, h, w]: resized bilinearly, then the best class, as SegformerImageProcessor's
    post_process_semantic_segmentation; a band of rows at a time, so a large image never holds all labels' planes."""
    height, width = size
    labels = logits.shape[0]
    logits = logits.astype(np.float32)
    top, bottom, top_w, bottom_w = _bilinear_axis(height, logits.shape[1])
    left, right, left_w, right_w = _bilinear_axis(width, logits.shape[2])
    classes = np.empty((height, width), dtype=np.uint8 if labels <= 256 else np.uint16)  # PNG's pixel depths
    band = max(1, _RESIZE_BAND_VALUES // max(1, labels * width))
    for start in range(0, height, band):
        rows = slice(start, min(height, start + band))
        upper, lower = logits[:, top[rows]], logits[:, bottom[rows]]
        upper = upper[:, :, left] * left_w + upper[:, :, right] * right_w
        lower = lower[:, :, left] * left_w + lower[:, :, right] * right_w
        resized = top_w[rows, None] * upper + bottom_w[rows, None] * lower
        classes[rows] = resized.argmax(axis=0)
    return classes


def segment(classes: np.ndarray, id2label: dict, encode: Callable[[np.ndarray], str]) -> dict:
    """One image's {"segments": [{"score": None, "label", "mask", "id", "share"}], "label_map"} from its class map,
    as the image-segmentation pipeline answers for semantic models: a segment per class present, in class order,
    its mask 255 on the class's pixels and 0 elsewhere; `share` is the fraction of the image's pixels; masks and
    the class map (pixel value = class id) are PNG images `encode`d (base64)."""
    ids, counts = np.unique(classes, return_counts=True)
    segments = [
        {
            "score": None,
            "label": _label(id2label, int(i)),
            "mask": encode(np.where(classes == i, 255, 0).astype(np.uint8)),
            "id": int(i),
            "share": float(count / classes.size),
        }
        for i, count in zip(ids, counts, strict=True)
    ]
    return {"segments": segments, "label_map": encode(classes)}


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str = "mean") -> np.ndarray:
    """Sentence vectors from token vectors [batch, seq, dim] with the attention mask (mean, cls, max, lasttoken)."""
    mask_f = mask[..., None].astype(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return np.where(mask_f > 0, hidden, -1e9).max(axis=1)
    if mode == "lasttoken":
        last = mask.sum(axis=1) - 1
        return hidden[np.arange(hidden.shape[0]), last]
    if mode != "mean":
        raise GpuxError(
            f"1_Pooling/config.json asks for pooling '{mode}', which gpux run does not implement",
            "use a model with mean, cls, max or lasttoken pooling",
        )
    return (hidden * mask_f).sum(axis=1) / np.clip(mask_f.sum(axis=1), 1e-9, None)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def embeddings(
    outputs: dict[str, np.ndarray], mask: np.ndarray, pooling: str = "mean", normalize: bool = False
) -> np.ndarray:
    """Sentence embeddings: the graph's `sentence_embedding` if it has one, else pooled `last_hidden_state`."""
    if "sentence_embedding" in outputs:
        vectors = outputs["sentence_embedding"]
    else:
        hidden = outputs.get("last_hidden_state")
        if hidden is None:
            hidden = next(v for v in outputs.values() if v.ndim == 3)
        vectors = pool(hidden, mask, pooling)
    vectors = vectors.astype(np.float32)
    return l2_normalize(vectors) if normalize else vectors


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def fill_mask(logits: np.ndarray, input_ids: np.ndarray, tokenizer, top_k: int = 5) -> list[dict]:
    """Per row: {"masks": [[{"score", "token", "token_str", "sequence"}, ...top_k] per mask token]}."""
    if tokenizer.mask_token_id is None:
        raise GpuxError("this tokenizer has no mask token", "fill-mask needs a model trained with one")
    results = []
    for row_logits, ids in zip(logits, input_ids, strict=True):
        positions = np.nonzero(ids == tokenizer.mask_token_id)[0]
        if positions.size == 0:
            mask_text = tokenizer.id_to_token(tokenizer.mask_token_id)
            raise GpuxError(
                f"no {mask_text} token in the text", f"put {mask_text} where a word should be predicted", exit_code=2
            )
        single = positions.size == 1
        masks = []
        for pos in positions:
            probs = softmax(row_logits[pos])
            order = np.argsort(-probs, kind="stable")[: int(top_k)]
            candidates = []
            for token in order:
                filled = ids.copy()
                filled[pos] = token
                filled = filled[filled != tokenizer.pad_token_id]
                candidates.append(
                    {
                        "score": float(probs[token]),
                        "token": int(token),
                        "token_str": tokenizer.decode([token], skip_special_tokens=False),
                        "sequence": tokenizer.decode(filled, skip_special_tokens=single),
                    }
                )
            masks.append(candidates)
        results.append({"masks": masks})
    return results


def _tag(entity: str) -> tuple[str, str]:
    if entity.startswith(("B-", "I-")):
        return entity[0], entity[2:]
    return "I", entity


def _group(tokens: list[dict], tokenizer) -> dict:
    return {
        "entity_group": tokens[0]["entity"].split("-", 1)[-1],
        "score": float(np.nanmean([t["score"] for t in tokens])),
        "word": tokenizer.tokens_to_string([t["word"] for t in tokens]),
        "start": tokens[0]["start"],
        "end": tokens[-1]["end"],
    }


def token_classification(
    logits: np.ndarray,
    encodings: list,
    id2label: dict,
    tokenizer,
    aggregation_strategy: str = "simple",
    ignore_labels=("O",),
) -> list[dict]:
    """Per row: {"entities": [...]}, character spans from the tokenizer's offsets.

    "none" gives one entry per token; "simple" groups adjacent tokens with the same entity type
    (a new B- tag starts a new group), like the pipeline's aggregation_strategy="simple".
    """
    if aggregation_strategy not in ("none", "simple"):
        raise GpuxError(
            f"aggregation_strategy '{aggregation_strategy}' is not supported", "use 'simple' or 'none'", exit_code=2
        )
    results = []
    for row_logits, enc in zip(logits, encodings, strict=True):
        probs = softmax(row_logits)
        tokens = []
        for index, (token_id, special, offsets) in enumerate(
            zip(enc.ids, enc.special_tokens_mask, enc.offsets, strict=True)
        ):
            if special or enc.attention_mask[index] == 0:
                continue
            best = int(probs[index].argmax())
            tokens.append(
                {
                    "entity": _label(id2label, best),
                    "score": float(probs[index][best]),
                    "index": index,
                    "word": tokenizer.id_to_token(token_id),
                    "start": int(offsets[0]),
                    "end": int(offsets[1]),
                }
            )
        if aggregation_strategy == "simple":
            groups: list[dict] = []
            current: list[dict] = []
            for token in tokens:
                if current:
                    bi, tag = _tag(token["entity"])
                    if not (tag == _tag(current[-1]["entity"])[1] and bi != "B"):
                        groups.append(_group(current, tokenizer))
                        current = []
                current.append(token)
            if current:
                groups.append(_group(current, tokenizer))
            entities = [g for g in groups if g["entity_group"] not in ignore_labels]
        else:
            entities = [t for t in tokens if t["entity"] not in ignore_labels]
        results.append({"entities": entities})
    return results


def question_answering(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    encoding,
    context: str,
    tokenizer,
    top_k: int = 1,
    max_answer_len: int = 15,
) -> dict | list[dict]:
    """Best answer span(s) in `context`: {"answer", "score", "start", "end"} (a list when top_k > 1).

    Like the pipeline: only context tokens (and CLS) may hold the answer, start/end probabilities are softmaxed
    separately, spans are aligned to whole words and equal answers add up their scores.
    """
    question_first = tokenizer.padding_side == "right"
    context_seq = 1 if question_first else 0
    seq_ids = encoding.sequence_ids
    allowed = np.array([1 if s == context_seq else 0 for s in seq_ids], dtype=np.int64)
    if tokenizer.cls_token_id is not None:
        allowed[np.array(encoding.ids) == tokenizer.cls_token_id] = 1
    allowed &= np.array(encoding.attention_mask, dtype=np.int64)
    start = softmax(np.where(allowed == 0, -10000.0, start_logits))
    end = softmax(np.where(allowed == 0, -10000.0, end_logits))
    start[0] = end[0] = 0.0

    candidates = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    flat = candidates.flatten()
    pre_k = int(top_k) * 2 + 10
    order = np.argsort(-flat, kind="stable")[:pre_k] if pre_k < flat.size else np.argsort(-flat, kind="stable")
    starts, ends = np.unravel_index(order, candidates.shape)
    ok_positions = np.nonzero(allowed)[0]
    keep = np.isin(starts, ok_positions) & np.isin(ends, ok_positions)

    answers: list[dict] = []
    for s, e in zip(starts[keep], ends[keep], strict=True):
        score = float(candidates[s, e])
        try:
            start_char = encoding.word_to_chars(encoding.token_to_word(int(s)), context_seq)[0]
            end_char = encoding.word_to_chars(encoding.token_to_word(int(e)), context_seq)[1]
        except Exception:  # tokenizers without word ids: keep to token offsets
            start_char, end_char = encoding.offsets[s][0], encoding.offsets[e][1]
        text = context[start_char:end_char]
        same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
        if same:
            same["score"] += score
        else:
            answers.append({"answer": text, "end": int(end_char), "score": score, "start": int(start_char)})
    answers = sorted(answers, key=lambda a: a["score"], reverse=True)[: int(top_k)]
    if not answers:
        return {"answer": "", "end": 0, "score": 0.0, "start": 0}
    return answers[0] if int(top_k) == 1 else answers
