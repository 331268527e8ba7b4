"""The task vocabulary shared by lock, build and run: Hugging Face pipeline tags -> optimum export tasks.

Pure Python: no heavy imports.
"""

from __future__ import annotations

SUPPORTED_TASKS = (
    "audio-classification",
    "automatic-speech-recognition",
    "feature-extraction",
    "fill-mask",
    "image-classification",
    "image-feature-extraction",
    "image-segmentation",
    "object-detection",
    "question-answering",
    "text-classification",
    "text-generation",
    "text2text-generation",
    "token-classification",
    "zero-shot-image-classification",
)

# Tasks of models with an image tower and a text tower (CLIP): images, texts, or both, in one graph.
IMAGE_TEXT_TASKS = ("image-feature-extraction", "zero-shot-image-classification")
# Tasks whose input is an image, or a sound, rather than text.
IMAGE_TASKS = ("image-classification", "image-segmentation", "object-detection", *IMAGE_TEXT_TASKS)
AUDIO_TASKS = ("audio-classification", "automatic-speech-recognition")
MEDIA_TASKS = IMAGE_TASKS + AUDIO_TASKS

# Tasks exported with their KV cache ("-with-past" in optimum's vocabulary).
GENERATIVE_TASKS = ("text-generation", "text2text-generation")

# Pipeline tags and optimum/transformers aliases -> the supported task they run as.
TASK_ALIASES = {
    "sentence-similarity": "feature-extraction",
    "default": "feature-extraction",
    "sequence-classification": "text-classification",
    "sentiment-analysis": "text-classification",
    "zero-shot-classification": "text-classification",
    "ner": "token-classification",
    "masked-lm": "fill-mask",
    "causal-lm": "text-generation",
    "seq2seq-lm": "text2text-generation",
    "summarization": "text2text-generation",
    "translation": "text2text-generation",
    "asr": "automatic-speech-recognition",
    "semantic-segmentation": "image-segmentation",
}

# config.json architecture name suffix -> task; the first matching suffix wins.
ARCHITECTURE_SUFFIXES = (
    ("ForImageClassification", "image-classification"),
    ("ForImageClassificationWithTeacher", "image-classification"),
    ("ForObjectDetection", "object-detection"),
    ("ForSemanticSegmentation", "image-segmentation"),
    ("ForCTC", "automatic-speech-recognition"),
    ("ForAudioClassification", "audio-classification"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("MTModel", "text2text-generation"),
    ("ForPreTraining", "feature-extraction"),
    ("Model", "feature-extraction"),
)


# Speech encoders whose heads share text models' suffixes (Wav2Vec2ForSequenceClassification classifies sound).
AUDIO_MODEL_TYPES = frozenset(
    {
        "audio-spectrogram-transformer",
        "data2vec-audio",
        "hubert",
        "sew",
        "sew-d",
        "unispeech",
        "unispeech-sat",
        "wav2vec2",
        "wav2vec2-conformer",
        "wavlm",
    }
)


# Speech-to-text encoder-decoders: their ForConditionalGeneration is not text2text (gpux runs Whisper only).
SPEECH_SEQ2SEQ_MODEL_TYPES = frozenset({"moonshine", "speech_to_text", "speecht5", "whisper"})
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")


# Models with an image and a text tower, by config.json's model_type: their `...Model` class is no text encoder.
IMAGE_TEXT_MODEL_TYPES = frozenset({"clip"})


def takes_text(task: str) -> bool:
    """Whether a task's model reads text, so its artifact carries a tokenizer (text models and CLIP's)."""
    return task not in MEDIA_TASKS or task in IMAGE_TEXT_TASKS


def _has_tokenizer(files: list[str]) -> bool:
    return any(name in files for name in _TOKENIZER_FILES)


def normalize_task(tag: str | None) -> str | None:
    """The supported task for a pipeline tag or optimum task name, or None when it has none."""
    if not tag:
        return None
    base = tag.strip().lower().removesuffix("-with-past")
    if base.startswith("translation_"):  # transformers' "translation_en_to_de"
        base = "translation"
    base = TASK_ALIASES.get(base, base)
    return base if base in SUPPORTED_TASKS else None


def pipeline_task(tag: str | None, config: dict | None) -> str | None:
    """The supported task a registry's pipeline tag names for the model of `config`, or None: the image-text
    tags name none for models without CLIP's two towers (DINOv2 and other backbones are tagged
    image-feature-extraction), which are then detected from config.json like untagged ones."""
    task = normalize_task(tag)
    if task in IMAGE_TEXT_TASKS and (config or {}).get("model_type") not in IMAGE_TEXT_MODEL_TYPES:
        return None
    return task


def infer_task(config: dict | None, files: list[str]) -> str | None:
    """The task of a repo from its files (sentence-transformers metadata) and config.json, or None."""
    if "modules.json" in files:
        return "feature-extraction"
    config = config or {}
    for arch in config.get("architectures") or []:
        for suffix, task in ARCHITECTURE_SUFFIXES:
            if arch.endswith(suffix):
                if task == "text-classification" and config.get("model_type") in AUDIO_MODEL_TYPES:
                    return "audio-classification"
                if task == "text2text-generation" and config.get("model_type") == "whisper":
                    return "automatic-speech-recognition"
                # Vision/speech models also end in ForConditionalGeneration; only text encoder-decoders qualify.
                if task == "text2text-generation" and (
                    not config.get("is_encoder_decoder") or config.get("model_type") in SPEECH_SEQ2SEQ_MODEL_TYPES
                ):
                    return None
                if task == "feature-extraction" and config.get("model_type") in IMAGE_TEXT_MODEL_TYPES:
                    return "zero-shot-image-classification"
                # A vision or audio backbone (an image processor, no tokenizer) is no text feature extractor.
                if task == "feature-extraction" and "preprocessor_config.json" in files and not _has_tokenizer(files):
                    return None
                return task
    return None


def is_seq2seq(task: str, config: dict) -> bool:
    """Whether the model runs as an encoder and a decoder with a KV cache (T5, BART; Whisper for speech)."""
    return task == "text2text-generation" or (
        task == "automatic-speech-recognition" and bool(config.get("is_encoder_decoder"))
    )


def optimum_task(task: str, config: dict | None = None) -> str:
    """The optimum exporter task for a supported task: generative tasks (and encoder-decoder speech recognition,
    given the model's config) are exported with their KV cache; CLIP's image features come from the same graph
    as its zero-shot scores, which optimum calls feature-extraction; image segmentation as optimum's
    semantic-segmentation (its logits keep dynamic height and width, and it is the semantic models' task)."""
    if task == "image-feature-extraction":
        return "feature-extraction"
    if task == "image-segmentation":
        return "semantic-segmentation"
    return f"{task}-with-past" if task in GENERATIVE_TASKS or is_seq2seq(task, config or {}) else task
