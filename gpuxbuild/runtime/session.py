"""Load an artifact folder and run it: `load(folder) -> Model`, `Model.predict(inputs) -> dict`, `benchmark`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gpuxbuild.errors import GpuxError, InferenceError, shorten
from gpuxbuild.runtime import generate, tasks
from gpuxbuild.runtime.inputs import ParsedInputs, parse_inputs, validate_options
from gpuxbuild.runtime.providers import ProviderChoice, select_providers
from gpuxbuild.runtime.tokenize import TextTokenizer
from gpuxbuild.store.artifacts import ARTIFACT_MANIFEST, ArtifactManifest
from gpuxbuild.tasks import IMAGE_TASKS, IMAGE_TEXT_TASKS

if TYPE_CHECKING:
    from gpuxbuild.runtime.audio import CTCVocabulary, FeatureExtractor
    from gpuxbuild.runtime.images import ImageProcessor

_HINT_REBUILD = "rebuild it with gpux build, or point at an artifact folder"


@dataclass(frozen=True)
class RuntimeConfig:
    """The parts of gpux.yml the runtime honours."""

    backend: str | None = None
    memory: str | None = None
    max_length: int | None = None


def _read_json(path: Path, required: bool = False) -> dict:
    if not path.is_file():
        if required:
            raise GpuxError(f"{path} does not exist", _HINT_REBUILD)
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GpuxError(f"{path} is not valid JSON: {exc}", _HINT_REBUILD) from exc


def read_runtime_config(folder: Path) -> RuntimeConfig:
    """runtime.gpu.backend, runtime.gpu.memory and preprocessing.max_length from gpux.yml (all optional)."""
    path = Path(folder) / "gpux.yml"
    if not path.is_file():
        return RuntimeConfig()
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise GpuxError(f"{path} is not valid YAML: {exc}".splitlines()[0], "fix or regenerate gpux.yml") from exc
    if not isinstance(data, dict):
        raise GpuxError(f"{path} is not a mapping", "fix or regenerate gpux.yml")
    gpu = (data.get("runtime") or {}).get("gpu") or {}
    max_length = (data.get("preprocessing") or {}).get("max_length")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise GpuxError(f"{path}: preprocessing.max_length must be a positive integer", "fix gpux.yml")
    return RuntimeConfig(backend=gpu.get("backend"), memory=gpu.get("memory"), max_length=max_length)


def _sentence_transformers(folder: Path) -> tuple[str, bool] | None:
    """(pooling mode, normalize) of a sentence-transformers folder, or None when it is not one."""
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list) or not modules:
        return None
    mode, normalize = "mean", False
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            pooling = _read_json(folder / module.get("path", "1_Pooling") / "config.json")
            if isinstance(pooling.get("pooling_mode"), str):
                mode = pooling["pooling_mode"]
            else:
                flags = {
                    "cls": "pooling_mode_cls_token",
                    "max": "pooling_mode_max_tokens",
                    "lasttoken": "pooling_mode_lasttoken",
                    "mean": "pooling_mode_mean_tokens",
                    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                }
                chosen = [name for name, key in flags.items() if pooling.get(key)]
                mode = chosen[0] if chosen else "mean"
        elif kind.endswith("Normalize"):
            normalize = True
    return mode, normalize


def _create_session(path: Path, choice: ProviderChoice, spin: bool = True):
    try:
        import onnxruntime
    except ImportError as exc:
        raise GpuxError("onnxruntime is not installed", "pip install onnxruntime (see `gpux help gpus`)") from exc
    if not path.is_file():
        raise GpuxError(f"graph {path} does not exist", _HINT_REBUILD)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # ORT's warnings are about graph internals the user cannot act on
    if not spin:  # idle threads sleep rather than spin: a server's event loop needs the cores between runs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=list(zip(choice.providers, choice.options, strict=True))
        )
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/RuntimeException types
        raise GpuxError(
            f"onnxruntime could not load {path.name}: {str(exc).splitlines()[0]}",
            "check the provider with gpux doctor, or rebuild the artifact",
        ) from exc


class Model:
    """An artifact folder ready to run. Create it with `load()`."""

    def __init__(self, folder: Path, provider: str | None = "auto", device_id: int = 0, *, spin: bool = True):
        self.folder = Path(folder)
        path = self.folder / ARTIFACT_MANIFEST
        manifest = ArtifactManifest.from_dict(_read_json(path, required=True))
        if not manifest.graphs:
            raise GpuxError(f"{path} has no 'graphs'", _HINT_REBUILD)
        self.raw_task = str(manifest.task or "")
        self.task = tasks.normalize_task(self.raw_task)
        self.graphs = {k: str(v) for k, v in manifest.graphs.items()}
        self.config = _read_json(self.folder / "config.json")
        self.generation_config = _read_json(self.folder / "generation_config.json")
        self.runtime_config = read_runtime_config(self.folder)
        self.sentence_transformers = _sentence_transformers(self.folder)

        import onnxruntime

        self.choice = select_providers(
            onnxruntime.get_available_providers(),
            provider,
            self.runtime_config.backend,
            device_id,
            self.runtime_config.memory,
        )
        self.notice = self.choice.notice
        self.sessions = {}
        if self.task == "text2text-generation":
            for key in ("encoder", "decoder"):
                if key not in self.graphs:
                    raise GpuxError(f"{ARTIFACT_MANIFEST} graphs lacks '{key}' for a seq2seq model", _HINT_REBUILD)
        for key, rel in sorted(self.graphs.items()):
            self.sessions[key] = _create_session(self.folder / rel, self.choice, spin)
        self.main = self.sessions.get("model") or self.sessions.get("encoder") or next(iter(self.sessions.values()))
        self.providers = list(self.main.get_providers())
        if self.choice.primary not in self.providers:
            message = f"{self.choice.primary} failed to initialise; onnxruntime would run on {self.providers[0]}"
            if self.choice.requested != "auto":
                raise GpuxError(message, "check the GPU driver and CUDA/cuDNN libraries with gpux doctor")
            self.notice = message
        self.input_types = {i.name: i.type for i in self.main.get_inputs()}
        self.output_names = [o.name for o in self.main.get_outputs()]
        self._tokenizer: TextTokenizer | None = None
        self._image_processor: ImageProcessor | None = None
        self._feature_extractor: FeatureExtractor | None = None
        self._vocabulary: CTCVocabulary | None = None

    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            self._tokenizer = TextTokenizer(self.folder, self.runtime_config.max_length, self.config)
        return self._tokenizer

    def info(self) -> dict:
        """What /info and `gpux run --info` show: task, graphs, inputs/outputs, providers."""
        return {
            "folder": self.folder.name,
            "graphs": dict(self.graphs),
            "inputs": [
                {"name": i.name, "shape": [str(d) for d in i.shape], "type": i.type} for i in self.main.get_inputs()
            ],
            "notice": self.notice,
            "outputs": [
                {"name": o.name, "shape": [str(d) for d in o.shape], "type": o.type} for o in self.main.get_outputs()
            ],
            "providers": self.providers,
            "task": self.task,
        }

    def run(
        self, feed: dict[str, np.ndarray], graph: str | None = None, *, caller_tensors: bool = False
    ) -> dict[str, np.ndarray]:
        """Run one graph (the main one by default) on numpy inputs; returns outputs by name.

        onnxruntime refusing the feed (wrong names, ranks, dtypes), or failing on tensors the caller made
        (`caller_tensors`: an id out of range, say), is the caller's error (exit 2); failing on inputs our
        tokenizer made is an InferenceError (the artifact's or the provider's fault)."""
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        session = self.sessions[graph] if graph else self.main
        try:
            values = session.run(None, feed)
        except Exception as exc:  # ORT raises its own InvalidArgument/Fail/RuntimeException/EPFail types
            first = shorten(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 300)
            if caller_tensors or isinstance(exc, (InvalidArgument, ValueError, TypeError)):
                raise GpuxError(
                    f"onnxruntime rejected the inputs: {first}", f"the model takes {self.input_types}", exit_code=2
                ) from exc
            rel = self.graphs.get(graph or "model") or next(iter(self.graphs.values()))
            raise InferenceError(
                f"onnxruntime failed while running {rel}: {first}",
                "the inputs were accepted: the artifact or the execution provider failed; try --provider cpu, "
                "or rebuild the artifact",
            ) from exc
        return dict(zip([o.name for o in session.get_outputs()], values, strict=True))

    def feed(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The subset of `arrays` the main graph takes (e.g. no token_type_ids for DistilBERT); error if one is missing."""
        missing = [n for n in self.input_types if n not in arrays]
        if missing:
            raise GpuxError(
                f"the graph needs inputs {missing} that text tokenization does not give",
                f"pass raw tensors for {sorted(self.input_types)}",
                exit_code=2,
            )
        return {n: arrays[n] for n in self.input_types}

    def _encode(self, parsed: ParsedInputs, truncation: str = "longest_first"):
        batch = self.tokenizer.encode(parsed.texts, parsed.pairs, truncation=truncation)
        return batch, self.run(self.feed(batch.arrays))

    def embed(self, texts: list[str]) -> np.ndarray:
        """Sentence embeddings [len(texts), dim] (pooled; L2-normalized for sentence-transformers models)."""
        batch, outputs = self._encode(ParsedInputs(texts=list(texts)))
        mode, normalize = self.sentence_transformers or ("mean", False)
        return tasks.embeddings(outputs, batch.arrays["attention_mask"], mode, normalize)

    def similarity(self, text_a: str, text_b: str) -> float:
        """Cosine similarity of two texts' embeddings."""
        if self.task != "feature-extraction":
            raise GpuxError(
                f"similarity needs a feature-extraction model, this one is {self.task}",
                "use a sentence-transformers or feature-extraction artifact",
                exit_code=2,
            )
        a, b = self.embed([text_a, text_b])
        return tasks.cosine(a, b)

    def predict(
        self, inputs, on_token: Callable[[int | None, str], None] | None = None, **options
    ) -> dict | list[dict]:
        """Run the model on JSON-like inputs and return a JSON-ready dict.

        One input gives the task's result dict (question-answering with top_k > 1: a list of them); a batch gives
        {"results": [...]}; raw tensors give the graph's outputs by name as nested lists. `on_token(token_id, text)`
        streams generated tokens (token_id None: the rest of the text held back while it might have begun a stop
        sequence).
        """
        parsed = parse_inputs(inputs, self.input_types, self.task, options)
        if parsed.tensors is not None:
            return {
                name: value.tolist() for name, value in self.run(self.feed(parsed.tensors), caller_tensors=True).items()
            }
        if self.task in IMAGE_TEXT_TASKS:
            answers = self._predict_image_text(parsed)
            return {"results": answers} if parsed.batched else answers[0]
        if parsed.files is not None:
            answers = self._predict_files(parsed.files, parsed.options)
            return {"results": answers} if parsed.batched else answers[0]
        results = self._predict_texts(parsed, on_token)
        return {"results": results} if parsed.batched else results[0]

    def _predict_files(self, files: list[bytes], opts: dict) -> list[dict]:
        """Image classification: all images in one run; detection and audio: one file per run, as the
        pipelines run them (their sizes differ)."""
        labels = [f"file {i + 1} of {len(files)}" if len(files) > 1 else "the file" for i in range(len(files))]
        if self.task in IMAGE_TASKS:
            from gpuxbuild.runtime.images import ImageProcessor, decode_image

            if self._image_processor is None:
                self._image_processor = ImageProcessor.from_folder(self.folder)
            decoded = [decode_image(data, label) for data, label in zip(files, labels, strict=True)]
            if self.task == "object-detection":  # one image per run, as the pipeline: their sizes differ
                id2label = self.config.get("id2label") or {}
                found = []
                for image in decoded:
                    outputs = self.run(self.feed({"pixel_values": self._image_processor([image])}))
                    logits, boxes = outputs["logits"][0], outputs["pred_boxes"][0]
                    threshold = float(opts.get("threshold", 0.5))
                    found.append(tasks.detect(logits, boxes, id2label, (image.height, image.width), threshold))
                return found
            if self.task == "image-segmentation":
                return [self._segment(image) for image in decoded]
            logits = self.run(self.feed({"pixel_values": self._image_processor(decoded)}))["logits"]
            return self._classify(logits, opts)
        from gpuxbuild.runtime.audio import CTCVocabulary, FeatureExtractor, decode_audio

        if self._feature_extractor is None:
            self._feature_extractor = FeatureExtractor.from_folder(self.folder)
        extractor = self._feature_extractor
        seq2seq = "encoder" in self.graphs  # Whisper
        if self.task == "automatic-speech-recognition" and not seq2seq and self._vocabulary is None:
            self._vocabulary = CTCVocabulary.from_folder(self.folder)
        results: list[dict] = []
        for data, label in zip(files, labels, strict=True):
            values = extractor(decode_audio(data, extractor.sampling_rate, label, extractor.max_seconds))
            if seq2seq:
                results.append({"text": self._transcribe(values, opts)})
                continue
            logits = self.run(self.feed({"input_values": values}))["logits"]
            if self._vocabulary is not None:
                results.append({"text": self._vocabulary.decode(logits[0])})
            else:
                results += self._classify(logits, opts)
        return results

    def _segment(self, image) -> dict:
        """One image's segments (one run per image, as the pipeline), the class map at the image's own size."""
        from gpuxbuild.runtime.images import png_base64

        if self._image_processor is None:  # never: _predict_files made it
            raise ValueError("segmenting without an image processor")
        logits = self.run(self.feed({"pixel_values": self._image_processor([image])}))["logits"]
        if logits.ndim != 4:
            raise GpuxError(
                f"the model's logits have shape {list(logits.shape)}, not [batch, labels, height, width]",
                "gpux run segments images with semantic segmentation models (SegFormer); pass raw tensors instead",
            )
        classes = tasks.semantic_map(logits[0], (image.height, image.width))
        return tasks.segment(classes, self.config.get("id2label") or {}, png_base64)

    def _transcribe(self, features: np.ndarray, opts: dict) -> str:
        """Whisper: encode the log-mel features, then decode greedily after the prompt transformers builds
        (`whisper_prompt`), with the generation config's suppressed tokens, up to its max_length (or fewer
        `max_new_tokens`); the text leaves out special and timestamp tokens, as the pipeline's."""
        gen = {**self.config, **self.generation_config}
        hidden = self.run({"input_features": features}, "encoder")["last_hidden_state"]
        decoder = self.sessions["decoder"]
        prefix = generate.whisper_prompt(
            gen, opts.get("language"), lambda ids: generate.decoder_logits(decoder, hidden, ids)
        )
        no_timestamps = gen.get("no_timestamps_token_id")
        options = generate.GenerationOptions.from_configs(self.config, self.generation_config, {})
        limit = int(self.config.get("max_target_positions", 448))
        options.max_new_tokens = max(1, min(int(gen.get("max_length", limit)), limit) - len(prefix))
        if "max_new_tokens" in opts:
            options.max_new_tokens = min(options.max_new_tokens, int(opts["max_new_tokens"]))
        out = generate.decode_with_encoder(decoder, hidden, None, prefix, options)
        first_timestamp = int(no_timestamps) + 1 if no_timestamps is not None else None
        text_ids = [t for t in out.token_ids if first_timestamp is None or t < first_timestamp]
        return self.tokenizer.decode(text_ids)

    def _classify(self, logits: np.ndarray, opts: dict) -> list[dict]:
        """Labels with scores, the top 5 unless top_k says otherwise (the vision and audio pipelines' default)."""
        id2label = self.config.get("id2label") or {}
        return tasks.classify(logits, id2label, self.config.get("problem_type"), opts.get("top_k", 5))

    def predict_texts(self, texts: list[str], pairs: list[str] | None, options: dict) -> list[dict | list[dict]]:
        """One result per text (with its pair): `predict` without the input parsing, for batches built elsewhere."""
        return list(self._predict_texts(ParsedInputs(texts=texts, pairs=pairs, options=options), None))

    def _predict_texts(self, parsed: ParsedInputs, on_token) -> Sequence[dict | list[dict]]:
        opts = parsed.options
        task = self.task
        if opts.get("candidate_labels") is not None:
            return [self._zero_shot(text, opts) for text in self._zero_shot_texts(parsed)]
        if task in ("text-generation", "text2text-generation"):
            return [self._generate(text, opts, on_token) for text in parsed.texts]
        if task == "feature-extraction":
            if parsed.pairs is not None:
                return [{"similarity": self.similarity(a, b)} for a, b in zip(parsed.texts, parsed.pairs, strict=True)]
            return [{"embedding": v.tolist()} for v in self.embed(parsed.texts)]
        if task == "question-answering":
            contexts = parsed.pairs
            if contexts is None:  # never: parse_inputs gives question-answering one context per question
                raise ValueError("question-answering without contexts")
            batch, outputs = self._encode(parsed, truncation="only_second")
            return [
                tasks.question_answering(
                    outputs["start_logits"][i],
                    outputs["end_logits"][i],
                    enc,
                    contexts[i],
                    self.tokenizer,
                    int(opts.get("top_k", 1)),
                    int(opts.get("max_answer_len", 15)),
                )
                for i, enc in enumerate(batch.encodings)
            ]
        batch, outputs = self._encode(parsed)
        logits = outputs.get("logits", next(iter(outputs.values())))
        id2label = self.config.get("id2label") or {}
        if task == "text-classification":
            return tasks.classify(logits, id2label, self.config.get("problem_type"), opts.get("top_k"))
        if task == "fill-mask":
            return tasks.fill_mask(logits, batch.arrays["input_ids"], self.tokenizer, int(opts.get("top_k", 5)))
        return tasks.token_classification(
            logits, batch.encodings, id2label, self.tokenizer, str(opts.get("aggregation_strategy", "simple"))
        )

    def _zero_shot_texts(self, parsed: ParsedInputs) -> list[str]:
        """The texts of a zero-shot request, once the model is known to be an NLI classifier."""
        if self.task != "text-classification" or parsed.pairs is not None:
            raise GpuxError(
                f"candidate_labels asks for zero-shot classification of single texts, by an NLI text-classification "
                f"model; this is a {self.task} model" + (" and the input has text pairs" if parsed.pairs else ""),
                "leave candidate_labels out, or use an NLI model (labels entailment, contradiction, ...)",
                exit_code=2,
            )
        if tasks.entailment_id(self.config.get("label2id") or {}) is None:
            labels = sorted((self.config.get("label2id") or {}).keys())
            raise GpuxError(
                f"zero-shot classification needs an NLI model, with an entailment label; this model's labels are {labels}",
                "use an NLI model (e.g. one fine-tuned on MNLI), or leave candidate_labels out",
            )
        return parsed.texts

    def _zero_shot(self, text: str, opts: dict) -> dict:
        labels = tasks.candidate_labels(opts["candidate_labels"])
        template = opts.get("hypothesis_template") or tasks.DEFAULT_HYPOTHESIS
        hypotheses = [template.replace("{}", label) for label in labels]  # not str.format: no attribute lookups
        _, outputs = self._encode(ParsedInputs(texts=[text] * len(labels), pairs=hypotheses), truncation="only_first")
        logits = outputs.get("logits", next(iter(outputs.values())))
        entailment = tasks.entailment_id(self.config.get("label2id") or {})
        return tasks.zero_shot(logits, int(entailment or 0), labels, bool(opts.get("multi_label")), text)

    def _predict_image_text(self, parsed: ParsedInputs) -> list[dict]:
        """CLIP (an image and a text tower in one graph): per image, the zero-shot answer for candidate_labels,
        or the cosine similarity to each text, or (image-feature-extraction) its embedding; texts alone: their
        embeddings. Embeddings are CLIP's image_embeds / text_embeds, unit length."""
        opts = parsed.options
        labels = opts.get("candidate_labels")
        if parsed.files is None:  # texts alone
            if labels is not None:
                raise GpuxError(
                    "candidate_labels needs an image to classify", 'send {"image": BASE64} or --file', exit_code=2
                )
            return [{"embedding": v.tolist()} for v in self._image_text_run(None, parsed.texts)["text_embeds"]]
        if labels is not None:
            if parsed.texts:
                raise GpuxError(
                    "give candidate_labels or text, not both",
                    "candidate_labels scores the image against labels; text asks for similarities",
                    exit_code=2,
                )
            names = tasks.candidate_labels(labels)
            template = opts.get("hypothesis_template") or tasks.CLIP_HYPOTHESIS
            hypotheses = [template.replace("{}", label) for label in names]  # not str.format: no attribute lookups
            logits = self._image_text_run(parsed.files, hypotheses)["logits_per_image"]
            return [tasks.zero_shot_image(row, names, opts.get("top_k")) for row in logits]
        if parsed.texts:
            outputs = self._image_text_run(parsed.files, parsed.texts)
            scores = tasks.image_text_similarity(outputs["image_embeds"], outputs["text_embeds"])
            return [{"similarity": row.tolist() if parsed.texts_batched else float(row[0])} for row in scores]
        if self.task == "zero-shot-image-classification":
            raise GpuxError(
                "zero-shot-image-classification needs candidate_labels, the labels to score the image against",
                'pass e.g. --parameters \'{"candidate_labels": ["cat", "dog"]}\' (in a request: "parameters"); '
                "for the image's embedding, build the model with task: image-feature-extraction",
                exit_code=2,
            )
        return [{"embedding": v.tolist()} for v in self._image_text_run(parsed.files, [""])["image_embeds"]]

    def _image_text_run(self, files: list[bytes] | None, texts: list[str]) -> dict[str, np.ndarray]:
        """CLIP's graph on the images (None: one blank image, for texts alone: the graph needs both towers) and the
        texts (one empty text for images alone: a start and an end token)."""
        from gpuxbuild.runtime.images import ImageProcessor, decode_image

        if files is None:
            size = int((self.config.get("vision_config") or {}).get("image_size", 224))
            pixels = np.zeros((1, 3, size, size), dtype=np.float32)
        else:
            if self._image_processor is None:
                self._image_processor = ImageProcessor.from_folder(self.folder)
            labels = [f"file {i + 1} of {len(files)}" if len(files) > 1 else "the file" for i in range(len(files))]
            pixels = self._image_processor([decode_image(d, label) for d, label in zip(files, labels, strict=True)])
        batch = self.tokenizer.encode(texts)
        return self.run(self.feed({**batch.arrays, "pixel_values": pixels}))

    def generate(self, prompt: str, on_token=None, *, add_special_tokens: bool = True, **options) -> tuple[dict, int]:
        """(`predict`'s result, prompt tokens) for one prompt of a generation model; `add_special_tokens` False
        for prompts that hold them already (a rendered chat template)."""
        if self.task not in ("text-generation", "text2text-generation"):
            raise GpuxError(f"{self.task} models do not generate text", "use a text-generation model", exit_code=2)
        result = self._generate(prompt, validate_options(dict(options)), on_token, add_special_tokens)
        return result, len(self._prompt_ids(prompt, add_special_tokens))

    def _prompt_ids(self, text: str, add_special_tokens: bool = True) -> list[int]:
        batch = self.tokenizer.encode([text], pad=False, add_special_tokens=add_special_tokens)
        return [int(i) for i in batch.arrays["input_ids"][0]]

    def _generate(self, text: str, options: dict, on_token, add_special_tokens: bool = True) -> dict:
        prompt = self._prompt_ids(text, add_special_tokens)
        opts = generate.GenerationOptions.from_configs(self.config, self.generation_config, options)
        stops = [options["stop"]] if isinstance(options.get("stop"), str) else list(options.get("stop") or [])
        # With stop sequences, the last (longest stop - 1) characters are held back from streaming: they may
        # be the start of a stop sequence, which the answer must not contain.
        hold = max((len(s) for s in stops), default=1) - 1
        tokens: list[int] = []
        shown = [""]
        cut: list[int] = []

        def stream(token_id: int) -> bool:
            # Decode the whole completion each time: byte-level BPE pieces are not valid text alone.
            tokens.append(token_id)
            text_so_far = self.tokenizer.decode(tokens)
            hits = [text_so_far.find(s) for s in stops if s in text_so_far]
            if hits:
                cut.append(min(hits))
                text_so_far = text_so_far[: cut[0]]
            elif hold:
                text_so_far = text_so_far[: max(len(shown[0]), len(text_so_far) - hold)]
            if on_token is not None:
                on_token(token_id, text_so_far[len(shown[0]) :])
            shown[0] = text_so_far
            return bool(hits)

        callback = stream if (on_token is not None or stops) else None
        if self.task == "text-generation":
            limit = self.config.get("max_position_embeddings") or self.config.get("n_positions")
            if limit:
                room = int(limit) - len(prompt)
                if room < 1:
                    raise GpuxError(
                        f"the prompt has {len(prompt)} tokens, the model's limit is {limit}",
                        "shorten the prompt",
                        exit_code=2,
                    )
                opts.max_new_tokens = min(opts.max_new_tokens, room)
            out = generate.decode_causal(self.main, prompt, opts, callback)
        else:
            start = self.generation_config.get("decoder_start_token_id", self.config.get("decoder_start_token_id"))
            if start is None:
                start = self.config.get("pad_token_id", 0)
            out = generate.decode_seq2seq(
                self.sessions["encoder"], self.sessions["decoder"], prompt, int(start), opts, callback
            )
        completion = self.tokenizer.decode(out.token_ids)
        if cut:
            completion = completion[: cut[0]]
        if on_token is not None and hold and len(completion) > len(shown[0]):
            on_token(None, completion[len(shown[0]) :])  # the held-back tail: no stop sequence came
        result = {"finish_reason": out.finish_reason, "token_ids": out.token_ids}
        if self.task == "text-generation":
            return {**result, "completion": completion, "generated_text": text + completion}
        return {**result, "generated_text": completion}


def load(artifact_dir: str | Path, provider: str | None = "auto", device_id: int = 0, *, spin: bool = True) -> Model:
    """Load an artifact folder (see docs/architecture.md) onto the chosen execution provider. `spin` False: the
    onnxruntime threads sleep between runs instead of spinning (for servers, which need the cores then)."""
    folder = Path(artifact_dir)
    if not folder.is_dir():
        raise GpuxError(f"{folder} is not a folder", "pass the path of a built artifact (gpux build)")
    return Model(folder, provider, device_id, spin=spin)


def benchmark(model: Model, inputs, runs: int = 100, warmup: int = 10) -> dict:
    """Time `model.predict(inputs)`: latency percentiles in ms and throughput in items per second."""
    if runs < 1 or warmup < 0:
        raise GpuxError("benchmark needs runs >= 1 and warmup >= 0", "pass e.g. --runs 100 --warmup 10", exit_code=2)
    for _ in range(warmup):
        model.predict(inputs)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        result = model.predict(inputs)
        times[i] = time.perf_counter() - start
    items = len(result["results"]) if isinstance(result, dict) and "results" in result else 1
    ms = times * 1000.0
    return {
        "batch_size": items,
        "latency_ms": {
            "max": float(ms.max()),
            "mean": float(ms.mean()),
            "min": float(ms.min()),
            "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)),
        },
        "provider": model.providers[0],
        "runs": runs,
        "throughput_per_s": float(items * runs / times.sum()),
        "warmup": warmup,
    }
