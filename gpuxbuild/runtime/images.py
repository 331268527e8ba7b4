"""Images in, pixel_values out: decoding with Pillow and the model's image processor redone in numpy.

`ImageProcessor` follows an artifact's preprocessor_config.json step for step as transformers' (slow) image
processors do: RGB conversion (as the pipeline's `load_image`), resize with Pillow and the configured
resample filter (exact size, shortest edge, or ConvNeXt's crop_pct), center crop, rescale, normalize,
channels first. No torch or transformers at run time.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gpuxbuild.errors import GpuxError, MissingExtraError
from gpuxbuild.preprocessor import PREPROCESSOR_CONFIG, read_preprocessor_config

if TYPE_CHECKING:
    from PIL import Image

# Images over this many pixels are refused before they are decoded (Pillow's own decompression-bomb limit).
MAX_IMAGE_PIXELS = 89_478_485
# The image processors whose steps are reproduced here (all share resize -> crop -> rescale -> normalize).
KNOWN_PROCESSORS = frozenset(
    {
        "BeitImageProcessor",
        "BitImageProcessor",
        "CLIPImageProcessor",
        "ConvNextImageProcessor",
        "DeiTImageProcessor",
        "DetrImageProcessor",
        "MobileNetV1ImageProcessor",
        "MobileNetV2ImageProcessor",
        "SegformerImageProcessor",
        "ViTImageProcessor",
        "YolosImageProcessor",
    }
)


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise MissingExtraError("media", "reading images") from None
    return Image, ImageOps


def decode_image(data: bytes, label: str = "the image") -> Image.Image:
    """An RGB image from the bytes of a PNG, JPEG, WebP, ... file (EXIF orientation applied, like the pipeline).

    Unreadable data and images over MAX_IMAGE_PIXELS are usage errors, raised before any pixel is decoded.
    """
    image_mod, image_ops = _pil()
    try:
        with warnings.catch_warnings():  # over MAX_IMAGE_PIXELS Pillow only warns; refused just below
            warnings.simplefilter("ignore", image_mod.DecompressionBombWarning)
            image = image_mod.open(io.BytesIO(data))
    except image_mod.DecompressionBombError:
        image = None
    except Exception as exc:  # Pillow raises UnidentifiedImageError, SyntaxError, ValueError ... for bad files
        raise GpuxError(
            f"{label} is not a readable image ({type(exc).__name__})",
            "send a PNG, JPEG, WebP, GIF, BMP or TIFF file",
            exit_code=2,
        ) from None
    if image is None or image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:  # Pillow refuses twice the limit itself
        raise GpuxError(
            f"{label} is too large to decode (over {MAX_IMAGE_PIXELS:,} pixels)",
            "scale the image down first (e.g. to 4096x4096 or less)",
            exit_code=2,
        )
    try:
        image.load()
        return image_ops.exif_transpose(image).convert("RGB")
    except Exception as exc:  # truncated or corrupt pixel data
        raise GpuxError(
            f"{label} is damaged: {str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__}",
            "send the complete image file",
            exit_code=2,
        ) from None


def _size(value, key: str) -> tuple[int, int] | None:
    """(height, width) of a size dict ({"height", "width"}), or None when it holds another form."""
    if isinstance(value, dict) and {"height", "width"} <= set(value):
        return int(value["height"]), int(value["width"])
    if isinstance(value, int) and key == "crop_size":
        return value, value
    return None


@dataclass(frozen=True)
class ImageProcessor:
    """The parts of an image processor's preprocessor_config.json that shape pixel_values."""

    kind: str
    do_resize: bool
    size: dict
    resample: int
    do_center_crop: bool
    crop_size: tuple[int, int] | None
    crop_pct: float | None
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_dict(cls, data: dict, where: str = PREPROCESSOR_CONFIG) -> ImageProcessor:
        kind = str(data.get("image_processor_type") or data.get("feature_extractor_type") or "")
        kind = kind.removesuffix("Fast")
        if kind.endswith("FeatureExtractor"):  # older repos: ViTFeatureExtractor and friends
            kind = kind.removesuffix("FeatureExtractor") + "ImageProcessor"
        if kind not in KNOWN_PROCESSORS:
            raise GpuxError(
                f"{where}: image processor {kind or '(none)'} is not one gpux run reproduces",
                f"gpux run knows {', '.join(sorted(KNOWN_PROCESSORS))}; pass pixel_values as raw tensors instead",
            )
        size = data.get("size")
        if isinstance(size, int):  # old configs: one number, a square unless the processor keeps the aspect
            keeps_aspect = kind in ("CLIPImageProcessor", "ConvNextImageProcessor")
            size = {"shortest_edge": size} if keeps_aspect else {"height": size, "width": size}
        if not isinstance(size, dict) or not ({"height", "width"} <= set(size) or "shortest_edge" in size):
            raise GpuxError(f"{where}: size {size!r} is not understood", "rebuild from a repo with a standard config")
        mean, std = data.get("image_mean") or [0.5] * 3, data.get("image_std") or [0.5] * 3
        return cls(
            kind=kind,
            do_resize=bool(data.get("do_resize", True)),
            size=dict(size),
            resample=int(data.get("resample", 2)),
            do_center_crop=bool(data.get("do_center_crop", False)),
            crop_size=_size(data.get("crop_size"), "crop_size"),
            crop_pct=data.get("crop_pct"),
            do_rescale=bool(data.get("do_rescale", True)),
            rescale_factor=float(data.get("rescale_factor", 1 / 255)),
            do_normalize=bool(data.get("do_normalize", True)),
            mean=tuple(float(m) for m in (mean if isinstance(mean, list) else [mean] * 3)),
            std=tuple(float(s) for s in (std if isinstance(std, list) else [std] * 3)),
        )

    @classmethod
    def from_folder(cls, folder: Path) -> ImageProcessor:
        path, data = read_preprocessor_config(folder, "vision models")
        return cls.from_dict(data, str(path))

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        """pixel_values [batch, 3, height, width] float32 for RGB images."""
        return np.stack([self._one(image) for image in images])

    def _one(self, image: Image.Image) -> np.ndarray:
        array = np.asarray(image)  # HWC uint8
        if self.do_resize:
            array = self._resize(image)
        if self.do_center_crop and self.crop_size:
            array = center_crop(array, self.crop_size)
        pixels = array.astype(np.float32)
        if self.do_rescale:
            pixels = (array.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            mean, std = np.array(self.mean, dtype=pixels.dtype), np.array(self.std, dtype=pixels.dtype)
            pixels = (pixels - mean) / std
        return np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)

    def _resize(self, image: Image.Image) -> np.ndarray:
        exact = _size(self.size, "size")
        if exact is not None:
            return _pil_resize(image, exact, self.resample)
        edge = int(self.size["shortest_edge"])
        if self.kind in ("DetrImageProcessor", "YolosImageProcessor"):
            yolos = self.kind == "YolosImageProcessor"
            size = detection_size((image.height, image.width), edge, self.size.get("longest_edge"), yolos=yolos)
            return _pil_resize(image, size, self.resample)
        if self.kind == "ConvNextImageProcessor":
            crop_pct = self.crop_pct if self.crop_pct is not None else 224 / 256
            if edge >= 384:  # ConvNeXt warps large sizes to a square, without a crop
                return _pil_resize(image, (edge, edge), self.resample)
            resized = _pil_resize(image, shortest_edge_size(image.size, int(edge / crop_pct)), self.resample)
            return center_crop(resized, (edge, edge))
        return _pil_resize(image, shortest_edge_size(image.size, edge), self.resample)


def shortest_edge_size(size: tuple[int, int], edge: int) -> tuple[int, int]:
    """(height, width) with the shorter side `edge` and the aspect ratio kept, rounded as transformers does."""
    width, height = size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = edge, int(edge * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def detection_size(size: tuple[int, int], edge: int, longest: int | None, *, yolos: bool) -> tuple[int, int]:
    """(height, width) as DetrImageProcessor and YolosImageProcessor resize (their get_size_with_aspect_ratio):
    the shorter side to `edge`, the longer at most `longest`, the aspect ratio kept; YOLOS rounds both down
    to a multiple of 16 and tests for an unchanged size after the portrait case, DETR before it."""
    height, width = size
    raw = None
    if longest is not None:
        short, long = float(min(height, width)), float(max(height, width))
        if long / short * edge > longest:
            raw = longest * short / long
            edge = round(raw)
    scale = raw if raw is not None else edge
    unchanged = (height <= width and height == edge) or (width <= height and width == edge)
    if unchanged and not (yolos and width < height):
        out_h, out_w = height, width
    elif width < height:
        out_w, out_h = edge, int(scale * height / width)
    else:
        out_h, out_w = edge, int(scale * width / height)
    return (out_h - out_h % 16, out_w - out_w % 16) if yolos else (out_h, out_w)


def _pil_resize(image: Image.Image, size: tuple[int, int], resample: int) -> np.ndarray:
    height, width = size
    return np.asarray(image.resize((width, height), resample=resample, reducing_gap=None))


def png_base64(array: np.ndarray) -> str:
    """A [height, width] uint8 (or uint16) array as base64 PNG text: how the Inference API sends masks."""
    image_mod, _ = _pil()
    out = io.BytesIO()
    image_mod.fromarray(array).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def center_crop(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The central (height, width) of an HWC array, zero-padded where the image is smaller (as transformers)."""
    orig_h, orig_w = array.shape[:2]
    crop_h, crop_w = size
    top, left = (orig_h - crop_h) // 2, (orig_w - crop_w) // 2
    if top >= 0 and left >= 0:
        return array[top : top + crop_h, left : left + crop_w]
    new_h, new_w = max(crop_h, orig_h), max(crop_w, orig_w)
    padded = np.zeros((new_h, new_w, *array.shape[2:]), dtype=array.dtype)
    top_pad, left_pad = math.ceil((new_h - orig_h) / 2), math.ceil((new_w - orig_w) / 2)
    padded[top_pad : top_pad + orig_h, left_pad : left_pad + orig_w] = array
    top, left = top + top_pad, left + left_pad
    return padded[max(0, top) : min(new_h, top + crop_h), max(0, left) : min(new_w, left + crop_w)]
