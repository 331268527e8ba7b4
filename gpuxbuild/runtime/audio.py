"""Sound in, input_values out: decoding with soundfile, resampling with soxr, the feature extractor in numpy,
and CTC decoding of the character vocabulary. No torch or transformers at run time.

`FeatureExtractor` follows an artifact's preprocessor_config.json as transformers' Wav2Vec2FeatureExtractor
does (mono float32 at the model's sampling rate, zero mean and unit variance when do_normalize),
WhisperFeatureExtractor (the log-mel spectrogram of the sound padded to chunk_length seconds) and
ASTFeatureExtractor (Kaldi-style log-mel filter banks, max_length frames, normalized by the dataset's mean and std).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from gpuxbuild.errors import GpuxError, MissingExtraError
from gpuxbuild.preprocessor import read_preprocessor_config

# Longer sound is refused before it is decoded: attention memory grows with the square of the length.
MAX_AUDIO_SECONDS = 60
KNOWN_EXTRACTORS = frozenset({"ASTFeatureExtractor", "Wav2Vec2FeatureExtractor", "WhisperFeatureExtractor"})
WHISPER_DEFAULTS = {"feature_size": 80, "n_fft": 400, "hop_length": 160, "chunk_length": 30}
# ASTFeatureExtractor's defaults: its sizes, and AudioSet's mean and standard deviation of the log-mel values.
AST_SIZES = {"num_mel_bins": 128, "max_length": 1024}
AST_STATS = {"mean": -4.2677393, "std": 4.5689974}
# Kaldi's filter-bank frames at 16 kHz: 25 ms every 10 ms, a 512-point FFT; the log's floor (float32's epsilon).
FBANK_FRAME, FBANK_HOP, FBANK_FFT, FBANK_FLOOR = 400, 160, 512, 1.192092955078125e-07


def _soundfile():
    try:
        import soundfile
    except (ImportError, OSError):  # OSError: the libsndfile library is missing
        raise MissingExtraError("media", "reading audio") from None
    return soundfile


def decode_audio(
    data: bytes, sampling_rate: int, label: str = "the audio", max_seconds: int = MAX_AUDIO_SECONDS
) -> np.ndarray:
    """Mono float32 samples at `sampling_rate` from the bytes of a WAV, FLAC, OGG/Vorbis, ... file.

    Channels are averaged; another rate is resampled with soxr (high quality). Unreadable, empty and
    over-long (`max_seconds`) sound are usage errors, found before the samples are decoded.
    """
    soundfile = _soundfile()
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            frames, rate = sound.frames, sound.samplerate
            if rate <= 0 or frames > max_seconds * rate:
                raise GpuxError(
                    f"{label} is {frames / max(rate, 1):.0f} s long, over the limit of {max_seconds} s",
                    f"split it into pieces of at most {max_seconds} s",
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
    do_normalize: bool = True
    # Whisper's log-mel spectrogram
    feature_size: int = WHISPER_DEFAULTS["feature_size"]
    n_fft: int = WHISPER_DEFAULTS["n_fft"]
    hop_length: int = WHISPER_DEFAULTS["hop_length"]
    chunk_length: int = WHISPER_DEFAULTS["chunk_length"]
    # AST's filter banks
    num_mel_bins: int = AST_SIZES["num_mel_bins"]
    max_length: int = AST_SIZES["max_length"]
    mean: float = AST_STATS["mean"]
    std: float = AST_STATS["std"]

    @classmethod
    def from_folder(cls, folder: Path) -> FeatureExtractor:
        path, data = read_preprocessor_config(folder, "audio models")
        kind = str(data.get("feature_extractor_type") or "")
        if kind not in KNOWN_EXTRACTORS:
            raise GpuxError(
                f"{path}: feature extractor {kind or '(none)'} is not one gpux run reproduces",
                f"gpux run knows {', '.join(sorted(KNOWN_EXTRACTORS))}; pass input_values as raw tensors instead",
            )
        rate = data.get("sampling_rate", 16000)
        if not isinstance(rate, int) or rate <= 0:
            raise GpuxError(f"{path}: sampling_rate {rate!r} is not a positive integer", "rebuild the artifact")
        if kind == "WhisperFeatureExtractor":
            sizes = {k: data.get(k, default) for k, default in WHISPER_DEFAULTS.items()}
            if not all(isinstance(v, int) and v > 0 for v in sizes.values()):
                raise GpuxError(f"{path}: {sizes} are not all positive integers", "rebuild the artifact")
            return cls(kind=kind, sampling_rate=rate, **sizes)
        if kind == "ASTFeatureExtractor":
            return cls._ast(path, data, rate)
        return cls(kind=kind, sampling_rate=rate, do_normalize=bool(data.get("do_normalize", True)))

    @classmethod
    def _ast(cls, path: Path, data: dict, rate: int) -> FeatureExtractor:
        values = {k: data.get(k, default) for k, default in (AST_SIZES | AST_STATS).items()}
        sizes_ok = all(isinstance(values[k], int) and values[k] > 0 for k in AST_SIZES)
        stats_ok = all(isinstance(values[k], (int, float)) and not isinstance(values[k], bool) for k in AST_STATS)
        if not (sizes_ok and stats_ok) or values["std"] == 0:
            raise GpuxError(f"{path}: {values} are not valid filter-bank settings", "rebuild the artifact")
        return cls(
            kind="ASTFeatureExtractor", sampling_rate=rate, do_normalize=bool(data.get("do_normalize", True)), **values
        )

    @property
    def max_seconds(self) -> int:
        """The longest sound the model takes at once: Whisper's window; MAX_AUDIO_SECONDS for the others."""
        return self.chunk_length if self.kind == "WhisperFeatureExtractor" else MAX_AUDIO_SECONDS

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """input_values [1, samples] float32 for one sound (the pipeline runs sounds one at a time); for Whisper
        input_features [1, feature_size, frames]."""
        if self.kind == "WhisperFeatureExtractor":
            return self._log_mel(samples)[None]
        if self.kind == "ASTFeatureExtractor":
            return self._filter_banks(samples)[None]
        values = samples.astype(np.float32)
        if self.do_normalize:
            values = (values - values.mean()) / np.sqrt(values.var() + 1e-7)
        return values[None, :].astype(np.float32)

    def _log_mel(self, samples: np.ndarray) -> np.ndarray:
        """Whisper's features as WhisperFeatureExtractor computes them: the sound padded with silence (or cut) to
        chunk_length seconds, a centred (reflect-padded) STFT with a periodic Hann window, the power spectrum
        through a Slaney mel filter bank up to 8 kHz, log10 (floor 1e-10), the last frame dropped, values
        clipped to 8 below the maximum, then (x + 4) / 4."""
        n_samples = self.chunk_length * self.sampling_rate
        wave = np.zeros(n_samples, dtype=np.float64)
        wave[: min(samples.size, n_samples)] = samples[:n_samples]
        half = self.n_fft // 2
        padded = np.pad(wave, (half, half), mode="reflect")
        frames = 1 + (padded.size - self.n_fft) // self.hop_length
        window = np.hanning(self.n_fft + 1)[:-1]
        index = np.arange(self.n_fft)[None, :] + self.hop_length * np.arange(frames)[:, None]
        power = np.abs(np.fft.rfft(padded[index] * window, n=self.n_fft)) ** 2  # [frames, n_fft // 2 + 1]
        mel = mel_filter_bank(self.n_fft // 2 + 1, self.feature_size, 0.0, 8000.0, self.sampling_rate)
        log_spec = np.log10(np.maximum(power @ mel, 1e-10)).T[:, :-1]
        log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0).astype(np.float32)

    def _filter_banks(self, samples: np.ndarray) -> np.ndarray:
        """AST's input_values [max_length, num_mel_bins] as ASTFeatureExtractor computes them without torchaudio
        (transformers' numpy path): 25 ms frames every 10 ms from the first sample (no padding), each with its
        mean removed, pre-emphasis 0.97 and a symmetric Hann window, a 512-point power spectrum (the spectrum
        rounded to complex64 on the way, as transformers stores it) through triangular filters on Kaldi's mel
        scale from 20 Hz to half the sampling rate, the natural log (floored at float32's epsilon); frames cut
        or zero-padded to max_length; then (x - mean) / (2 std) when do_normalize."""
        wave = samples.astype(np.float64)
        frames = max(0, 1 + (wave.size - FBANK_FRAME) // FBANK_HOP)
        index = np.arange(FBANK_FRAME)[None, :] + FBANK_HOP * np.arange(frames)[:, None]
        chunks = wave[index]
        chunks -= chunks.mean(axis=1, keepdims=True)
        chunks[:, 1:] -= 0.97 * chunks[:, :-1]
        chunks[:, 0] *= 1 - 0.97
        spectrum = np.fft.rfft(chunks * np.hanning(FBANK_FRAME), n=FBANK_FFT).astype(np.complex64)
        power = np.abs(spectrum, dtype=np.float64) ** 2  # [frames, FBANK_FFT // 2 + 1]
        bank = kaldi_mel_filter_bank(
            FBANK_FFT // 2 + 1, self.num_mel_bins, 20.0, self.sampling_rate // 2, self.sampling_rate
        )
        fbank = np.log(np.maximum(FBANK_FLOOR, power @ bank)).astype(np.float32)
        features = np.zeros((self.max_length, self.num_mel_bins), dtype=np.float32)
        features[: min(frames, self.max_length)] = fbank[: self.max_length]
        if self.do_normalize:
            features = (features - self.mean) / (self.std * 2)
        return features.astype(np.float32)


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


def _hertz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hertz(mels: np.ndarray) -> np.ndarray:
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    freq[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_region] - 15.0))
    return freq


def mel_filter_bank(bins: int, filters: int, low: float, high: float, sampling_rate: int) -> np.ndarray:
    """[bins, filters] triangular filters evenly spaced on Slaney's mel scale, Slaney-normalized (equal area),
    as transformers' mel_filter_bank(norm="slaney", mel_scale="slaney")."""
    low_mel, high_mel = _hertz_to_mel(np.array([low, high], dtype=np.float64))
    mel_edges = np.linspace(low_mel, high_mel, filters + 2)
    edges = _mel_to_hertz(mel_edges)
    bank = _triangles(np.linspace(0, sampling_rate // 2, bins), edges)
    return bank * (2.0 / (edges[2 : filters + 2] - edges[:filters]))[None, :]


def _kaldi_mel(freq: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def kaldi_mel_filter_bank(bins: int, filters: int, low: float, high: float, sampling_rate: int) -> np.ndarray:
    """[bins, filters] triangular filters evenly spaced on Kaldi's mel scale and triangular in mel (not in Hz),
    unnormalized, as transformers' mel_filter_bank(norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)."""
    mel_edges = np.linspace(_kaldi_mel(low), _kaldi_mel(high), filters + 2)
    bin_mels = _kaldi_mel(sampling_rate / ((bins - 1) * 2) * np.arange(bins))
    return _triangles(bin_mels, mel_edges)


def _triangles(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[points, len(edges) - 2] triangles rising from edges[i] to edges[i + 1] and falling to edges[i + 2]."""
    widths = np.diff(edges)
    slopes = edges[None, :] - points[:, None]
    down, up = -slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(down, up))
