"""Vision and audio models end to end: tiny repos on the test Hub -> gpux lock -> build -> sync -> run / serve,
answers compared with transformers' pipelines on the same files.

Tolerance: label order equal and every score within SCORE_ATOL of the pipeline's (the same Pillow resize and
numpy arithmetic as the image processors; ONNX Runtime against PyTorch adds ~1e-7); transcripts equal
(Whisper: against the pipeline with greedy decoding, num_beams=1; its default is a 5-beam search); segmentation
masks equal but for at most MASK_PIXEL_TOLERANCE of the pixels (near-ties of two classes' logits at their border).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import check_exported_files, gpux, gpux_tty, read_lock, synced_project
from tinymodels import END_TO_END_MEDIA

from gpuxbuild.errors import GpuxError
from gpuxbuild.runtime import load

pytestmark = pytest.mark.convert  # exports with torch, or runs what it exported

PIL = pytest.importorskip("PIL")
soundfile = pytest.importorskip("soundfile")

SCORE_ATOL = 1e-4
MASK_PIXEL_TOLERANCE = 0.001
IMAGE_KINDS = ("vit", "convnext", "mobilenet-v2", "yolos", "detr", "segformer")
AUDIO_KINDS = ("wav2vec2-ctc", "wav2vec2-audio", "whisper", "ast")
IMAGE_TEXT_KINDS = ("clip",)
# Models of the project built from another one's repo with a task of their own: name -> (kind, task).
VARIANTS = {"clip-features": ("clip", "image-feature-extraction")}
# Only vit declares its task by a pipeline tag; the others are detected from config.json.
CARDS = {"vit": {"pipeline_tag": "image-classification"}}
TASKS = {
    "vit": "image-classification",
    "convnext": "image-classification",
    "mobilenet-v2": "image-classification",
    "yolos": "object-detection",
    "detr": "object-detection",
    "wav2vec2-ctc": "automatic-speech-recognition",
    "wav2vec2-audio": "audio-classification",
    "whisper": "automatic-speech-recognition",
    "clip": "zero-shot-image-classification",
    "segformer": "image-segmentation",
    "ast": "audio-classification",
}


@pytest.fixture(scope="module")
def media(tmp_path_factory, hub):
    """`media(kind) -> (source folder, synced artifact folder)`; all kinds locked, built and synced once."""
    from tinymodels import make_repo, repo_dir

    root = tmp_path_factory.mktemp("media")
    built: dict[str, tuple[Path, Path]] = {}

    def get(kind: str) -> tuple[Path, Path]:
        if not built:
            models = {}
            for name in END_TO_END_MEDIA:
                repo = f"media/{name}"
                hub.create_repo(repo, card=CARDS.get(name, {}))
                hub.commit(repo, make_repo(name), message=f"add {name}")
                models[name] = {"source": f"hf:{repo}"}
            for name, (base, task) in VARIANTS.items():
                models[name] = {"source": f"hf:media/{base}", "task": task}
            project = synced_project(root, models)
            for name in models:
                built[name] = (repo_dir(VARIANTS.get(name, (name,))[0]), project / ".gpux" / "models" / name)
            built["project"] = (project, project)
        return built[kind]

    return get


# --------------------------------------------------------------------------- files


def _image(width: int, height: int, mode: str = "RGB", seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    noisy = np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB").convert(mode)


def _image_bytes(image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[Path]:
    """A landscape PNG, a portrait JPEG, an RGBA WebP and a grayscale PNG (sizes that need resizing)."""
    folder = tmp_path_factory.mktemp("images")
    specs = [("wide.png", 64, 40, "RGB", "PNG"), ("tall.jpg", 30, 52, "RGB", "JPEG")]
    specs += [("alpha.webp", 45, 45, "RGBA", "WEBP"), ("gray.png", 33, 70, "L", "PNG")]
    paths = []
    for seed, (name, width, height, mode, fmt) in enumerate(specs):
        (folder / name).write_bytes(_image_bytes(_image(width, height, mode, seed), fmt))
        paths.append(folder / name)
    return paths


def _sound(seconds: float, rate: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (220 + 200 * t) * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([wave * (1 - 0.3 * c) for c in range(channels)], axis=-1).astype(np.float32)


def _sound_bytes(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


@pytest.fixture(scope="module")
def sound_files(tmp_path_factory) -> list[Path]:
    """A 16 kHz WAV and a 16 kHz FLAC (the models' rate, so the pipeline needs no resampler)."""
    folder = tmp_path_factory.mktemp("sounds")
    (folder / "one.wav").write_bytes(_sound_bytes(_sound(1.2, 16000, 0), 16000))
    (folder / "two.flac").write_bytes(_sound_bytes(_sound(0.7, 16000, 1), 16000, "FLAC"))
    return [folder / "one.wav", folder / "two.flac"]


def test_the_media_matrix_is_what_the_tests_below_run():
    assert sorted(END_TO_END_MEDIA) == sorted((*IMAGE_KINDS, *AUDIO_KINDS, *IMAGE_TEXT_KINDS))


@pytest.mark.parametrize("kind", END_TO_END_MEDIA)
def test_every_artifact_holds_its_graphs_and_runtime_files(media, kind):
    """The export checks of test_convert.py (which leaves these kinds to this module), on the built artifacts; their
    validation against PyTorch passed, or the build would have failed."""
    project, _ = media("project")
    _, artifact = media(kind)
    manifest = json.loads((artifact / "artifact.json").read_text())
    check_exported_files(kind, read_lock(project)["models"][kind]["task"], artifact, manifest["graphs"])


# --------------------------------------------------------------------------- references


def _pipeline(task: str, source: Path):
    import transformers

    return transformers.pipeline(task, model=str(source), device="cpu")


def _assert_same_labels(got: list[dict], want: list[dict]) -> None:
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert max(abs(g["score"] - w["score"]) for g, w in zip(got, want, strict=True)) < SCORE_ATOL


# --------------------------------------------------------------------------- image classification


@pytest.mark.parametrize("kind", [k for k in IMAGE_KINDS if TASKS[k] == "image-classification"])
def test_image_classification_matches_the_pipeline(kind, media, image_files):
    from PIL import Image

    source, artifact = media(kind)
    model = load(artifact)
    assert model.task == "image-classification"
    assert (artifact / "preprocessor_config.json").read_bytes() == (source / "preprocessor_config.json").read_bytes()
    reference = _pipeline("image-classification", source)
    want = [reference(Image.open(path), top_k=5) for path in image_files]
    got = model.predict([path.read_bytes() for path in image_files])["results"]
    for g, w in zip(got, want, strict=True):
        _assert_same_labels(g["labels"], w)
        assert g["label"] == w[0]["label"]


def test_gpux_yml_describes_preprocessing_and_loads_in_gpux(media):
    import yaml
    from gpux_runtime import load_with_gpux_runtime

    _, vit = media("vit")
    doc = yaml.safe_load((vit / "gpux.yml").read_text())
    assert doc["preprocessing"]["resize"] == [32, 32] and doc["preprocessing"]["normalize"] == "inception"
    assert doc["preprocessing"]["custom"]["resample"] == "bilinear"
    assert [(i["name"], i["type"], len(i["shape"])) for i in doc["inputs"]] == [("pixel_values", "float32", 4)]
    assert doc["outputs"][0]["labels"][:2] == ["tabby cat", "golden retriever"]
    _, convnext = media("convnext")
    convnext_doc = yaml.safe_load((convnext / "gpux.yml").read_text())["preprocessing"]
    assert convnext_doc["resize"] == [32, 32] and convnext_doc["normalize"] == "imagenet"
    _, ctc = media("wav2vec2-ctc")
    assert yaml.safe_load((ctc / "gpux.yml").read_text())["preprocessing"]["custom"]["sampling_rate"] == 16000
    for folder in (vit, convnext, ctc):
        load_with_gpux_runtime(folder / "gpux.yml")


def test_run_cli_files_batches_base64_and_top_k(media, image_files):
    project, _ = media("project")
    _, artifact = media("vit")
    want = load(artifact).predict(image_files[0].read_bytes(), top_k=2)
    one = json.loads(gpux("run", "vit", "--file", str(image_files[0]), "--top-k", "2", cwd=project).stdout)
    assert one == want and len(one["labels"]) == 2
    both = json.loads(
        gpux("run", "vit", "--file", str(image_files[0]), "--file", str(image_files[1]), cwd=project).stdout
    )
    assert both["results"][0]["labels"][:2] == want["labels"] and len(both["results"]) == 2
    encoded = base64.b64encode(image_files[0].read_bytes()).decode()
    inline = gpux("run", "vit", "--input", json.dumps({"image": encoded}), "--top-k", "2", cwd=project)
    assert json.loads(inline.stdout) == want
    data_url = json.dumps({"inputs": f"data:image/png;base64,{encoded}", "parameters": {"top_k": 2}})
    hf = json.loads(gpux("run", "vit", "--input", data_url, cwd=project).stdout)
    assert hf == [{"label": x["label"], "score": x["score"]} for x in want["labels"]]


@pytest.mark.parametrize("kind", ["yolos", "detr"])
def test_object_detection_matches_the_pipeline(kind, media, image_files):
    from PIL import Image

    source, artifact = media(kind)
    model = load(artifact)
    assert model.task == "object-detection"
    reference = _pipeline("object-detection", source)
    for threshold in (0.0, 0.2):
        got = model.predict([path.read_bytes() for path in image_files], threshold=threshold)["results"]
        for path, result in zip(image_files, got, strict=True):
            want = reference(Image.open(path), threshold=threshold)
            assert [(o["label"], o["box"]) for o in result["objects"]] == [(w["label"], w["box"]) for w in want]
            assert all(abs(o["score"] - w["score"]) < SCORE_ATOL for o, w in zip(result["objects"], want, strict=True))
    boxes = [o["box"] for o in model.predict(image_files[0].read_bytes(), threshold=0.0)["objects"]]
    assert boxes and max(b["xmax"] for b in boxes) > 32  # pixels of the 64x40 original, not of the model's input


def test_object_detection_on_the_inference_api(media, image_files):
    _, artifact = media("yolos")
    model = load(artifact)
    project, _ = media("project")
    hf = json.loads(
        gpux(
            "run",
            "yolos",
            "--input",
            json.dumps(
                {"inputs": base64.b64encode(image_files[0].read_bytes()).decode(), "parameters": {"threshold": 0.0}}
            ),
            cwd=project,
        ).stdout
    )
    assert hf == model.predict(image_files[0].read_bytes(), threshold=0.0)["objects"]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"GIF89a not really", "the file is not a readable image"),
        (_png_header(20000, 20000), "the file is too large to decode (over 89,478,485 pixels)"),
        (_png_header(10000, 10000), "the file is too large to decode (over 89,478,485 pixels)"),
        ("truncated", "the file is damaged"),
        ("base64", "the image input is not base64"),
    ],
)
def test_bad_images_are_one_line_errors(media, tmp_path, content, message):
    project, _ = media("project")
    if content == "truncated":
        content = _image_bytes(_image(64, 64), "PNG")[:300]
    if content == "base64":
        args = ["--input", '{"image": "not base64!"}']
    else:
        (tmp_path / "bad.png").write_bytes(content)
        args = ["--file", str(tmp_path / "bad.png")]
    r = gpux("run", "vit", *args, cwd=project, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert message in _error_line(r.stderr)


def _error_line(stderr: str) -> str:
    """The one error line (a CPU notice may come before it, the hint after it)."""
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    return line


# --------------------------------------------------------------------------- audio


def test_ctc_speech_recognition_matches_the_pipeline(media, sound_files):
    source, artifact = media("wav2vec2-ctc")
    model = load(artifact)
    assert model.task == "automatic-speech-recognition"
    reference = _pipeline("automatic-speech-recognition", source)
    got = model.predict([path.read_bytes() for path in sound_files])["results"]
    for path, result in zip(sound_files, got, strict=True):
        samples, rate = soundfile.read(path, dtype="float32")
        assert result == {"text": reference({"raw": samples, "sampling_rate": rate})["text"]}
    assert any(r["text"] for r in got)  # random weights still say something


def test_whisper_matches_the_greedy_pipeline(media, sound_files):
    source, artifact = media("whisper")
    model = load(artifact)
    assert model.task == "automatic-speech-recognition" and set(model.graphs) == {"encoder", "decoder"}
    reference = _pipeline("automatic-speech-recognition", source)
    texts = []
    for path in sound_files:
        samples, rate = soundfile.read(path, dtype="float32")
        for language in (None, "de"):
            kwargs = {"num_beams": 1} | ({"language": language} if language else {})
            want = reference({"raw": samples, "sampling_rate": rate}, generate_kwargs=kwargs)["text"]
            got = model.predict(path.read_bytes(), **({"language": language} if language else {}))
            assert got == {"text": want}
            texts.append(want)
    assert len(set(texts)) > 1  # what it transcribes depends on the sound
    short = model.predict(sound_files[0].read_bytes(), max_new_tokens=3)["text"]
    assert 0 < len(short) < len(model.predict(sound_files[0].read_bytes())["text"])
    with pytest.raises(GpuxError, match="language 'xx' is not one this model knows"):
        model.predict(sound_files[0].read_bytes(), language="xx")


def test_whisper_features_match_the_feature_extractor(media):
    import transformers

    from gpuxbuild.runtime.audio import FeatureExtractor

    source, artifact = media("whisper")
    samples = _sound(2.5, 16000, 3)[:, 0]
    want = transformers.WhisperFeatureExtractor.from_pretrained(source)(samples, sampling_rate=16000).input_features
    got = FeatureExtractor.from_folder(artifact)(samples)
    assert got.shape == (1, 80, 3000) and np.max(np.abs(got - want)) < 1e-4


@pytest.mark.parametrize("kind", ["wav2vec2-audio", "ast"])
def test_audio_classification_matches_the_pipeline(kind, media, sound_files):
    source, artifact = media(kind)
    model = load(artifact)
    assert model.task == "audio-classification"
    reference = _pipeline("audio-classification", source)
    for path in sound_files:
        samples, rate = soundfile.read(path, dtype="float32")
        want = reference({"raw": samples, "sampling_rate": rate}, top_k=5)
        _assert_same_labels(model.predict(path.read_bytes())["labels"], want)


def test_other_rates_and_stereo_are_resampled_to_the_models_rate(media):
    from gpuxbuild.runtime.audio import decode_audio

    rate = 8000
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo = np.stack([tone, tone], axis=-1)
    decoded = decode_audio(_sound_bytes(stereo, rate, "WAV", "FLOAT"), 16000)
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert decoded.shape == (16000,)
    assert np.max(np.abs(decoded[200:-200] - expected[200:-200])) < 1e-3  # away from the edges' filter ramp


@pytest.mark.parametrize(
    "case, message",
    [
        ("garbage", "the file is not readable audio"),
        ("truncated", "the file is not readable audio"),
        ("long", "the file is 61 s long, over the limit of 60 s"),
        ("empty", "the file holds no samples"),
    ],
)
def test_bad_audio_is_a_one_line_error(media, tmp_path, case, message):
    project, _ = media("project")
    if case == "garbage":
        content = b"RIFF\x10\x00\x00\x00WAVEjunk" + b"\x00" * 20
    elif case == "truncated":
        content = _sound_bytes(_sound(1.0, 16000), 16000, "FLAC")[:90]
    elif case == "long":  # refused from its header, before a sample is decoded
        content = _sound_bytes(np.zeros((61 * 8000, 1), dtype=np.float32), 8000, "WAV", "PCM_U8")
    else:
        content = _sound_bytes(np.zeros((0, 1), dtype=np.float32), 16000)
    (tmp_path / "bad.wav").write_bytes(content)
    r = gpux("run", "wav2vec2-ctc", "--file", str(tmp_path / "bad.wav"), cwd=project, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert message in _error_line(r.stderr)


def test_whisper_takes_at_most_30_seconds(media, tmp_path):
    project, _ = media("project")
    (tmp_path / "long.wav").write_bytes(_sound_bytes(np.zeros((31 * 8000, 1), dtype=np.float32), 8000, "WAV", "PCM_U8"))
    r = gpux("run", "whisper", "--file", str(tmp_path / "long.wav"), cwd=project, check=False)
    assert r.returncode == 2 and "the file is 31 s long, over the limit of 30 s" in _error_line(r.stderr)


def test_an_image_model_given_text(media):
    _, vit = media("vit")
    with pytest.raises(GpuxError, match="no 'image' in the inputs"):
        load(vit).predict({"text": "a cat"})


def test_running_media_models_never_imports_torch_or_transformers(media, image_files, sound_files):
    import subprocess
    import sys

    folders = {kind: str(media(kind)[1]) for kind in ("vit", "segformer", "wav2vec2-ctc", "whisper", "ast")}
    code = (
        "import sys\n"
        "from gpuxbuild.runtime import load\n"
        f"for folder in ({folders['vit']!r}, {folders['segformer']!r}):\n"
        f"    load(folder).predict(open({str(image_files[0])!r}, 'rb').read())\n"
        f"for folder in ({folders['wav2vec2-ctc']!r}, {folders['whisper']!r}, {folders['ast']!r}):\n"
        f"    load(folder).predict(open({str(sound_files[0])!r}, 'rb').read())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'optimum'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- serve


def test_serve_takes_raw_bytes_and_base64_payloads(media, image_files, sound_files):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from serving import serving

    _, vit = media("vit")
    _, ctc = media("wav2vec2-ctc")
    image, sound = image_files[0].read_bytes(), sound_files[0].read_bytes()
    want_labels = load(vit).predict(image)["labels"]
    want_text = load(ctc).predict(sound)["text"]
    with serving({"vit": vit, "asr": ctc}) as (base, _):
        raw = httpx.post(f"{base}/models/vit", content=image, headers={"content-type": "image/png"})
        assert raw.status_code == 200 and raw.json() == [
            {"label": x["label"], "score": x["score"]} for x in want_labels
        ]
        bare = httpx.post(f"{base}/models/vit", content=image)  # no Content-Type: still a file
        assert bare.json() == raw.json()
        payload = {"inputs": base64.b64encode(image).decode(), "parameters": {"top_k": 2}}
        assert httpx.post(f"{base}/models/vit", json=payload).json() == raw.json()[:2]
        speech = httpx.post(f"{base}/models/asr", content=sound, headers={"content-type": "audio/wav"})
        assert speech.status_code == 200 and speech.json() == {"text": want_text}
        bad = httpx.post(f"{base}/models/vit", content=b"\x89PNG broken", headers={"content-type": "image/png"})
        assert bad.status_code == 400 and "not a readable image" in bad.json()["error"]


def test_terminal_lines_list_the_labels_the_transcript_and_the_boxes():
    from gpuxbuild.cli.run_cmds import _readable

    labels = [{"label": "tabby cat", "score": 0.5}, {"label": "tiger", "score": 0.25}]
    assert _readable({"label": "tabby cat", "score": 0.5, "labels": labels}, True) == [
        "tabby cat (0.500), tiger (0.250)"
    ]
    assert _readable({"label": "tabby cat", "score": 0.5, "labels": labels}) == ["tabby cat (0.500)"]  # text models
    assert _readable({"results": [{"text": "HELLO"}, {"text": "WORLD"}]}) == ["HELLO", "WORLD"]
    box = {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40}
    assert _readable({"objects": [{"label": "cat", "score": 0.9, "box": box}]}) == ["cat (0.900) at [1, 2, 30, 40]"]
    assert _readable({"objects": []}) == ["no objects"]


# --------------------------------------------------------------------------- image and text (CLIP)

CLIP_LABELS = ["tabby cat", "golden retriever", "a bowl of soup"]


def test_clip_is_detected_and_keeps_its_tokenizer_and_processor(media):
    import yaml
    from gpux_runtime import load_with_gpux_runtime

    source, artifact = media("clip")
    project, _ = media("project")
    locked = {name: entry["task"] for name, entry in read_lock(project)["models"].items()}
    assert locked["clip"] == "zero-shot-image-classification"  # from config.json's CLIPModel
    assert locked["clip-features"] == "image-feature-extraction"
    for name in ("preprocessor_config.json", "tokenizer.json"):
        assert (artifact / name).read_bytes() == (source / name).read_bytes()
    doc = yaml.safe_load((artifact / "gpux.yml").read_text())
    assert {i["name"] for i in doc["inputs"]} == {"pixel_values", "input_ids", "attention_mask"}
    assert {o["name"] for o in doc["outputs"]} >= {"logits_per_image", "image_embeds", "text_embeds"}
    pre = doc["preprocessing"]
    assert (pre["tokenizer"], pre["max_length"], pre["resize"], pre["normalize"]) == (
        "tokenizer.json",
        77,
        [32, 32],
        "clip",
    )
    load_with_gpux_runtime(artifact / "gpux.yml")


def test_clip_zero_shot_matches_the_pipeline(media, image_files):
    from PIL import Image

    source, artifact = media("clip")
    model = load(artifact)
    assert model.task == "zero-shot-image-classification"
    reference = _pipeline("zero-shot-image-classification", source)
    for template in (None, "a picture of {}"):
        options = {"hypothesis_template": template} if template else {}
        got = model.predict([path.read_bytes() for path in image_files], candidate_labels=CLIP_LABELS, **options)
        for path, result in zip(image_files, got["results"], strict=True):
            want = reference(Image.open(path), candidate_labels=CLIP_LABELS, **options)
            _assert_same_labels(result["labels"], want)
    first = image_files[0].read_bytes()
    one = model.predict(first, candidate_labels=",".join(CLIP_LABELS), top_k=2)  # labels in one string, as the API
    assert one["labels"] == model.predict(first, candidate_labels=CLIP_LABELS)["labels"][:2]


def test_clip_features_and_similarity_match_the_towers(media, image_files):
    import torch
    import transformers
    from PIL import Image

    source, artifact = media("clip-features")
    model = load(artifact)
    assert model.task == "image-feature-extraction"
    reference = transformers.CLIPModel.from_pretrained(source).eval()
    processor = transformers.CLIPProcessor.from_pretrained(source)
    texts = ["a photo of a cat", "soup"]
    with torch.no_grad():
        images = processor(images=[Image.open(p) for p in image_files], return_tensors="pt")
        image_features = reference.get_image_features(**images).numpy()
        text_features = reference.get_text_features(**processor(text=texts, return_tensors="pt", padding=True)).numpy()
    image_features /= np.linalg.norm(image_features, axis=-1, keepdims=True)
    text_features /= np.linalg.norm(text_features, axis=-1, keepdims=True)
    got = np.array([r["embedding"] for r in model.predict([p.read_bytes() for p in image_files])["results"]])
    assert got.shape == image_features.shape and np.max(np.abs(got - image_features)) < SCORE_ATOL
    got_texts = np.array([r["embedding"] for r in model.predict({"text": texts})["results"]])
    assert np.max(np.abs(got_texts - text_features)) < SCORE_ATOL
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in image_files]
    similar = model.predict({"image": encoded, "text": texts})["results"]
    assert np.max(np.abs(np.array([r["similarity"] for r in similar]) - image_features @ text_features.T)) < SCORE_ATOL
    single = model.predict({"image": encoded[0], "text": texts[0]})
    assert abs(single["similarity"] - float(image_features[0] @ text_features[0])) < SCORE_ATOL
    # The zero-shot artifact answers the same similarities (one graph, two tasks).
    _, zero_shot = media("clip")
    assert load(zero_shot).predict({"image": encoded[0], "text": texts[0]}) == single


def test_clip_on_the_command_line(media, image_files):
    project, _ = media("project")
    _, artifact = media("clip")
    want = load(artifact).predict(image_files[0].read_bytes(), candidate_labels=CLIP_LABELS)
    labels = json.dumps({"candidate_labels": CLIP_LABELS})
    got = gpux("run", "clip", "--file", str(image_files[0]), "--parameters", labels, cwd=project)
    assert json.loads(got.stdout) == want
    line = ", ".join(f"{x['label']} ({x['score']:.3f})" for x in want["labels"])  # every label, on a terminal
    terminal = gpux_tty("run", "clip", "--file", str(image_files[0]), "--parameters", labels, cwd=project)
    assert terminal.returncode == 0 and terminal.output.strip().splitlines()[-1] == line, terminal.output
    encoded = base64.b64encode(image_files[0].read_bytes()).decode()
    hf = gpux(
        "run",
        "clip",
        "--input",
        json.dumps({"inputs": encoded, "parameters": {"candidate_labels": CLIP_LABELS}}),
        cwd=project,
    )
    assert json.loads(hf.stdout) == [{"label": x["label"], "score": x["score"]} for x in want["labels"]]
    text = json.loads(gpux("run", "clip-features", "a photo of a cat", cwd=project).stdout)
    assert len(text["embedding"]) == 16
    missing = gpux("run", "clip", "--file", str(image_files[0]), cwd=project, check=False)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "needs candidate_labels" in _error_line(missing.stderr)


def test_clip_on_the_inference_api(media, image_files):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from huggingface_hub import InferenceClient
    from serving import serving

    _, artifact = media("clip")
    image = image_files[1].read_bytes()
    want = load(artifact).predict(image, candidate_labels=CLIP_LABELS)["labels"]
    with serving({"clip": artifact}) as (base, _):
        got = InferenceClient(model=f"{base}/models/clip").zero_shot_image_classification(
            image, candidate_labels=CLIP_LABELS
        )
        assert [(x.label, x.score) for x in got] == [(x["label"], x["score"]) for x in want]
        raw = httpx.post(f"{base}/models/clip", content=image, headers={"content-type": "image/jpeg"})
        assert raw.status_code == 400 and "needs candidate_labels" in raw.json()["error"]


def test_running_clip_never_imports_torch_or_transformers(media, image_files):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from gpuxbuild.runtime import load\n"
        f"model = load({str(media('clip')[1])!r})\n"
        f"model.predict(open({str(image_files[0])!r}, 'rb').read(), candidate_labels=['a', 'b'])\n"
        "model.predict({'text': 'a cat'})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'optimum'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300)


def test_terminal_lines_of_similarities():
    from gpuxbuild.cli.run_cmds import _readable

    assert _readable({"similarity": 0.25}) == ["similarity 0.2500"]
    assert _readable({"results": [{"similarity": [0.25, -0.125]}]}) == ["similarity 0.2500, -0.1250"]


def test_openai_clip_processor_config_is_reproduced(image_files):
    """At its real size: the same pixel_values as transformers' CLIPImageProcessor (images up- and downscaled)."""
    import transformers
    from PIL import Image
    from tinymodels import OPENAI_CLIP_PREPROCESSOR

    from gpuxbuild.runtime.images import ImageProcessor, decode_image

    reference = transformers.CLIPImageProcessor(**OPENAI_CLIP_PREPROCESSOR)
    processor = ImageProcessor.from_dict(OPENAI_CLIP_PREPROCESSOR)
    large = _image_bytes(_image(500, 300, seed=7), "PNG")
    for data in [path.read_bytes() for path in image_files] + [large]:
        want = reference(Image.open(io.BytesIO(data)).convert("RGB"), return_tensors="np").pixel_values
        got = processor([decode_image(data)])
        assert got.shape == want.shape == (1, 3, 224, 224) and np.max(np.abs(got - want)) < 1e-5


# --------------------------------------------------------------------------- segmentation (SegFormer)


def _mask(encoded: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


def test_semantic_segmentation_matches_the_pipeline(media, image_files):
    from PIL import Image

    source, artifact = media("segformer")
    model = load(artifact)
    assert model.task == "image-segmentation"
    assert (artifact / "preprocessor_config.json").read_bytes() == (source / "preprocessor_config.json").read_bytes()
    reference = _pipeline("image-segmentation", source)
    got = model.predict([path.read_bytes() for path in image_files])["results"]
    labels_seen = set()
    for path, result in zip(image_files, got, strict=True):
        image = Image.open(path)
        want = reference(image)
        assert [(s["score"], s["label"]) for s in result["segments"]] == [(None, w["label"]) for w in want]
        classes = _mask(result["label_map"])
        assert classes.shape == (image.height, image.width)  # the original image's pixels, not the model's 32x32
        differ = 0
        for segment, w in zip(result["segments"], want, strict=True):
            mask = _mask(segment["mask"])
            assert set(np.unique(mask)) <= {0, 255} and np.array_equal(mask == 255, classes == segment["id"])
            assert segment["share"] == pytest.approx((mask == 255).mean())
            differ += int((mask != np.asarray(w["mask"])).sum())
        assert differ <= MASK_PIXEL_TOLERANCE * classes.size
        assert sum(s["share"] for s in result["segments"]) == pytest.approx(1.0)
        labels_seen |= {s["label"] for s in result["segments"]}
    assert len(labels_seen) > 1  # random weights still tell regions apart


def test_semantic_map_resizes_as_torch():
    """The upsampling alone, against torch's bilinear interpolation, over sizes up and down and a many-label map
    that is resized in bands of rows: the same classes but at exact ties."""
    torch = pytest.importorskip("torch")
    from gpuxbuild.runtime import tasks

    rng = np.random.default_rng(0)
    for labels, small, size in [
        (5, (8, 8), (40, 64)),
        (5, (8, 8), (70, 33)),
        (5, (16, 16), (5, 7)),
        (150, (32, 32), (600, 500)),
    ]:
        logits = rng.standard_normal((labels, *small), dtype=np.float32) * 3
        resized = torch.nn.functional.interpolate(
            torch.from_numpy(logits)[None], size=size, mode="bilinear", align_corners=False
        )
        assert np.array_equal(tasks.semantic_map(logits, size), resized[0].argmax(dim=0).numpy())


def test_segmentation_on_the_cli_the_inference_api_and_the_terminal(media, image_files):
    from gpuxbuild.cli.run_cmds import _readable

    project, _ = media("project")
    _, artifact = media("segformer")
    want = load(artifact).predict(image_files[0].read_bytes())
    assert json.loads(gpux("run", "segformer", "--file", str(image_files[0]), cwd=project).stdout) == want
    encoded = base64.b64encode(image_files[0].read_bytes()).decode()
    hf = json.loads(gpux("run", "segformer", "--input", json.dumps({"inputs": encoded}), cwd=project).stdout)
    assert hf == [{"score": None, "label": s["label"], "mask": s["mask"]} for s in want["segments"]]
    segments = [
        {"score": None, "label": "wall", "mask": "", "id": 0, "share": 0.25},
        {"score": None, "label": "sky", "mask": "", "id": 1, "share": 0.75},
    ]
    assert _readable({"segments": segments, "label_map": ""}) == ["sky 75.0%, wall 25.0%"]


# --------------------------------------------------------------------------- audio classification (AST)


def test_ast_features_match_the_feature_extractor(media, sound_files):
    """transformers' numpy filter banks (no torchaudio here), padded (0.7 s) and cut (1.2 s) to 100 frames."""
    import transformers

    from gpuxbuild.runtime.audio import FeatureExtractor

    source, artifact = media("ast")
    extractor = transformers.ASTFeatureExtractor.from_pretrained(source)
    ours = FeatureExtractor.from_folder(artifact)
    for path in sound_files:
        samples, _ = soundfile.read(path, dtype="float32")
        want = extractor(samples, sampling_rate=16000, return_tensors="np").input_values
        got = ours(samples)
        assert got.shape == (1, 100, 128) and np.max(np.abs(got - want)) < 1e-5


def test_gpux_yml_of_segformer_and_ast(media):
    import yaml
    from gpux_runtime import load_with_gpux_runtime

    _, segformer = media("segformer")
    doc = yaml.safe_load((segformer / "gpux.yml").read_text())
    assert doc["preprocessing"]["resize"] == [32, 32] and doc["preprocessing"]["normalize"] == "imagenet"
    assert doc["metadata"]["gpuxbuild"]["axes"]["logits"] == ["batch_size", "num_labels", "height", "width"]
    _, ast = media("ast")
    custom = yaml.safe_load((ast / "gpux.yml").read_text())["preprocessing"]["custom"]
    assert custom["feature_extractor_type"] == "ASTFeatureExtractor" and custom["sampling_rate"] == 16000
    assert (custom["num_mel_bins"], custom["max_length"]) == (128, 100)
    for folder in (segformer, ast):
        load_with_gpux_runtime(folder / "gpux.yml")


def test_inference_client_segments_images_and_classifies_sound(media, image_files, sound_files):
    pytest.importorskip("fastapi")
    from huggingface_hub import InferenceClient
    from serving import serving

    _, segformer = media("segformer")
    _, ast = media("ast")
    image, sound = image_files[1].read_bytes(), sound_files[0].read_bytes()
    want_segments = load(segformer).predict(image)["segments"]
    want_labels = load(ast).predict(sound)["labels"]
    with serving({"seg": segformer, "ast": ast}) as (base, _):
        segments = InferenceClient(model=f"{base}/models/seg").image_segmentation(image)
        assert [(s.label, s.score) for s in segments] == [(w["label"], None) for w in want_segments]
        for segment, want in zip(segments, want_segments, strict=True):
            assert np.array_equal(np.asarray(segment.mask), _mask(want["mask"]))
        labels = InferenceClient(model=f"{base}/models/ast").audio_classification(sound)
        assert [(x.label, x.score) for x in labels] == [(w["label"], w["score"]) for w in want_labels]


@pytest.mark.parametrize(
    "kind, content, message",
    [
        ("segformer", b"\x89PNG\r\n\x1a\n broken", "the file is not a readable image"),
        ("ast", b"fLaC truncated", "the file is not readable audio"),
    ],
)
def test_bad_files_for_segformer_and_ast_are_one_line_errors(media, tmp_path, kind, content, message):
    project, _ = media("project")
    (tmp_path / "bad").write_bytes(content)
    r = gpux("run", kind, "--file", str(tmp_path / "bad"), cwd=project, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert message in _error_line(r.stderr)
