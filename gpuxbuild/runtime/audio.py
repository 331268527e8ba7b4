"""Sound in, input_values out: decoding with soundfile, resampling with soxr, the feature extractor in numpy,
and CTC decoding of the character vocabulary. No torch or transformers at run time.

`FeatureExtractor` follows an artifact's preprocessor_config.json as transformers' Wav2Vec2FeatureExtractor
does (mono float32 at the model's sampling rate, zero mean and unit variance when do_normalize).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from gpuxbuild.errors import GpuxError, MissingExtraError

PREPROCESSOR_CONFIG = "preprocessor_config.json"
# Longer sound is refused before it is decoded: attention memory grows with the square of the length.
MAX_AUDIO_SECONDS = 60
KNOWN_EXTRACTORS = frozenset({"Wav2Vec2FeatureExtractor"})


def _soundfile():
    try:
        import soundfile
    except (ImportError, OSError):  # OSError: the libsndfile library is missing
        raise MissingExtraError("media", "reading audio") from None
    return soundfile


def decode_audio(data: bytes, sampling_rate: int, label: str = "the audio") -> np.ndarray:
    """Mono float32 samples at `sampling_rate` from the bytes of a WAV, FLAC, OGG/Vorbis, ... file.

    Channels are averaged; another rate is resampled with soxr (high quality). Unreadable, empty and
    over-long (MAX_AUDIO_SECONDS) sound are usage errors, found before the samples are decoded.
    """
    soundfile = _soundfile()
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            frames, rate = sound.frames, sound.samplerate
            if rate <= 0 or frames > MAX_AUDIO_SECONDS * rate:
                raise GpuxError(
                    f"{label} is {frames / max(rate, 1):.0f} s long, over the limit of {MAX_AUDIO_SECONDS} s",
                    f"split it into pieces of at most {MAX_AUDIO_SECONDS} s",
                    exit_code=2,
                )
            samples = sound.read(dtype="float32", always_2d=True)
    except GpuxError:
        raise
    except Exception as exc:  # soundfile.LibsndfileError, RuntimeError, EOFError ... for bad files
        detail = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        raise GpuxError(
            f"{label} is not readable audio: {detail}",
            "send a complete WAV, FLAC, OGG or MP3 file",
            exit_code=2,
        ) from None
    if samples.shape[0] == 0:
        raise GpuxError(f"{label} holds no samples", "send a sound at least a fraction of a second long", exit_code=2)
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return resample(mono, rate, sampling_rate)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """`samples` (mono float32) from `rate` to `target` Hz with soxr's high-quality filter."""
    if rate == target:
        return np.ascontiguousarray(samples, dtype=np.float32)
    try:
        import soxr
    except ImportError:
        raise MissingExtraError("media", f"resampling audio from {rate} Hz to {target} Hz") from None
    return np.asarray(soxr.resample(samples, rate, target, quality="HQ"), dtype=np.float32)


@dataclass(frozen=True)
class FeatureExtractor:
    """The parts of an audio model's preprocessor_config.json that shape input_values."""

    kind: str
    sampling_rate: int
    do_normalize: bool

    @classmethod
    def from_folder(cls, folder: Path) -> FeatureExtractor:
        path = Path(folder) / PREPROCESSOR_CONFIG
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GpuxError(
                f"{path} does not exist", "rebuild the artifact: audio models carry their preprocessor config"
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise GpuxError(f"{path} is not valid JSON: {exc}", "rebuild the artifact") from None
        data = data if isinstance(data, dict) else {}
        kind = str(data.get("feature_extractor_type") or "")
        if kind not in KNOWN_EXTRACTORS:
            raise GpuxError(
                f"{path}: feature extractor {kind or '(none)'} is not one gpux run reproduces",
                f"gpux run knows {', '.join(sorted(KNOWN_EXTRACTORS))}; pass input_values as raw tensors instead",
            )
        rate = data.get("sampling_rate", 16000)
        if not isinstance(rate, int) or rate <= 0:
            raise GpuxError(f"{path}: sampling_rate {rate!r} is not a positive integer", "rebuild the artifact")
        return cls(kind=kind, sampling_rate=rate, do_normalize=bool(data.get("do_normalize", True)))

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """input_values [1, samples] float32 for one sound (the pipeline runs sounds one at a time)."""
        values = samples.astype(np.float32)
        if self.do_normalize:
            values = (values - values.mean()) / np.sqrt(values.var() + 1e-7)
        return values[None, :].astype(np.float32)


@dataclass(frozen=True)
class CTCVocabulary:
    """A CTC model's characters (vocab.json) and the tokens its decoding treats specially."""

    tokens: dict[int, str]
    pad_token: str
    word_delimiter: str
    lowercase: bool

    @classmethod
    def from_folder(cls, folder: Path) -> CTCVocabulary:
        folder = Path(folder)
        try:
            vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GpuxError(f"{folder / 'vocab.json'} does not exist", "rebuild the artifact") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise GpuxError(f"{folder / 'vocab.json'} is not valid JSON: {exc}", "rebuild the artifact") from None
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        if vocab and all(isinstance(v, dict) for v in vocab.values()):  # multilingual vocabs: one per language
            language = config.get("target_lang") or sorted(vocab)[0]
            vocab = vocab[language]
        return cls(
            tokens={int(i): str(token) for token, i in vocab.items()},
            pad_token=str(_token(config.get("pad_token"), "<pad>")),
            word_delimiter=str(_token(config.get("word_delimiter_token"), "|")),
            lowercase=bool(config.get("do_lower_case", False)),
        )

    def decode(self, logits: np.ndarray) -> str:
        """Greedy CTC: the best token per frame, repeats merged, blanks dropped, word delimiters as spaces
        (as the pipeline decodes, special tokens included)."""
        ids = logits.argmax(axis=-1).tolist()
        chars = [self.tokens.get(int(i), "") for i, _ in groupby(ids)]
        text = "".join(" " if c == self.word_delimiter else c for c in chars if c != self.pad_token).strip()
        return text.lower() if self.lowercase else text


def _token(value, default: str) -> str:
    """A special token from tokenizer_config.json: a string, or an AddedToken's {"content": ...}."""
    if isinstance(value, dict):
        return str(value.get("content", default))
    return default if value is None else str(value)
