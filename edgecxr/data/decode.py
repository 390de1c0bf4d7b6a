"""One decoder for every image edgecxr reads, in training and on the device.

Output is always a float32 array in [0, 1], shaped (H, W) for grayscale content or
(H, W, 3) for colour, so preprocessing never needs to know where pixels came from.
Scaling is by the range of the stored type (8-bit / 255, 16-bit / 65535), so the same
picture stored at either depth gives the same values. DICOM goes through the display
pipeline a radiology viewer uses (see `edgecxr.data.dicom`).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgecxr.errors import DecodeError

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
SUPPORTED_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES

DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


@dataclass
class DecodedImage:
    """Pixels in [0, 1] plus what the source said about itself (DICOM identifiers)."""

    pixels: np.ndarray
    source_format: str  # "png", "jpeg", "dicom"
    meta: dict = field(default_factory=dict)


def is_supported(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUPPORTED_SUFFIXES


def looks_like_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def decode_bytes(
    data: bytes,
    name: str = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    modalities: tuple[str, ...] | None = None,
) -> DecodedImage:
    """Decode an image file's bytes. `name` is only used in error messages."""
    if not data:
        raise DecodeError("empty", "the file is empty (0 bytes)", path=name,
                          fix="wait until the sender has written it, or remove it")
    suffix = Path(name).suffix.lower()
    if looks_like_dicom(data) or suffix in DICOM_SUFFIXES:
        from edgecxr.data.dicom import decode_dicom

        return decode_dicom(data, name, max_pixels=max_pixels, modalities=modalities)
    return _decode_raster(data, name, max_pixels=max_pixels)


def decode_file(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    modalities: tuple[str, ...] | None = None,
) -> DecodedImage:
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise DecodeError("too_large", f"the file has {size} bytes, over the limit of {max_bytes}",
                          path=path, fix="raise the byte limit if this file is expected")
    return decode_bytes(path.read_bytes(), str(path), max_pixels=max_pixels,
                        modalities=modalities)


def _decode_raster(data: bytes, name: str, *, max_pixels: int) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = (img.format or "").lower()
            width, height = img.size
            if width * height > max_pixels:
                raise DecodeError(
                    "too_large",
                    f"the image has {width}x{height} = {width * height} pixels, over the limit "
                    f"of {max_pixels}",
                    path=name, fix="raise the pixel limit if such images are expected",
                )
            img.load()
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError("too_large", f"refused as a decompression bomb ({exc})", path=name) from exc
    except UnidentifiedImageError as exc:
        raise DecodeError("not_an_image", "not a PNG, JPEG or DICOM file", path=name,
                          fix="check what wrote this file; only PNG, JPEG and DICOM are read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError("corrupt", f"the image cannot be decoded ({exc})", path=name,
                          fix="the file is truncated or damaged: send it again") from exc
    if fmt not in ("png", "jpeg", "mpo"):
        raise DecodeError("unsupported_format", f"{fmt.upper() or 'this'} images are not read",
                          path=name, fix="convert it to PNG, JPEG or DICOM")
    upright = ImageOps.exif_transpose(img)
    return DecodedImage(pixels=pil_to_unit_float(upright, name), source_format="jpeg" if fmt == "mpo" else fmt)


def pil_to_unit_float(img: Image.Image, name: str = "<image>") -> np.ndarray:
    """Pillow image of any mode -> float32 in [0, 1], (H, W) or (H, W, 3)."""
    mode = img.mode
    if mode in ("1", "L"):
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    elif mode == "LA":
        arr = np.asarray(img.getchannel("L"), dtype=np.float32) / 255.0
    elif mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.float32) / 65535.0
    elif mode == "I":
        # Pillow opens 16-bit grayscale PNGs as "I" on some versions: values are 0..65535.
        arr = np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0.0, 1.0)
    elif mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    elif mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    else:
        raise DecodeError("unsupported_mode", f"pixel mode {mode} is not supported", path=name,
                          fix="convert the image to 8- or 16-bit grayscale or RGB")
    return collapse_gray(arr)


def collapse_gray(arr: np.ndarray) -> np.ndarray:
    """RGB whose three channels are equal is grayscale: keep one channel.

    Most chest X-ray JPEGs are grayscale stored as RGB; treating them as (H, W) makes
    resizing three times cheaper and gives exactly the same model input.
    """
    if arr.ndim == 3 and arr.shape[2] == 3:
        r = arr[..., 0]
        if np.array_equal(r, arr[..., 1]) and np.array_equal(r, arr[..., 2]):
            return np.ascontiguousarray(r)
    return arr
