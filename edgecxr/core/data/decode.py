"""One decoder for every image edgecxr reads, in training and on the device.

Output is always a float32 array in [0, 1], shaped (H, W) for grayscale content or
(H, W, 3) for colour, so preprocessing never needs to know where pixels came from.
Scaling is by the range of the stored type (8-bit / 255, 16-bit / 65535), so the same
picture stored at either depth gives the same values. DICOM goes through the display
pipeline a radiology viewer uses (see `edgecxr.core.data.dicom`).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgecxr.core.errors import DecodeError

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
SUPPORTED_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES

DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
# A JPEG at least twice this long on its long side is decoded at the smallest DCT scale (1/2, 1/4,
# 1/8: Pillow's draft mode) that keeps the long side at least this long: 4x any model input here
# and the gate's 256-pixel statistics, at a fraction of the memory (an 81-megapixel JPEG decodes
# to 1,125 x 1,125 instead of 9,000 x 9,000 floats). Smaller JPEGs, PNGs and DICOMs decode whole.
JPEG_DRAFT_SIDE = 1024


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


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# The first tags of a data set written without the Part 10 header (ACR-NEMA style): group 0008
# (identification) as little-endian, implicit or explicit VR. Group 0000 is ACR-NEMA's command group.
ACR_NEMA_GROUPS = (b"\x08\x00", b"\x00\x00")


def sniff(data: bytes, name: str = "") -> str:
    """What a file holds, by its content first (scanners and export nodes often write no suffix).

    "dicom" (Part 10 preamble + DICM), "png", "jpeg", "acr-nema" (a bare data set), or "other"
    (left to Pillow, which names the format or refuses it). A `.dcm` name with neither is read
    as Part 10 and refused as `not_dicom`.
    """
    if looks_like_dicom(data):
        return "dicom"
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 8 and data[:2] in ACR_NEMA_GROUPS and data[2:4] != b"\xff\xff":
        return "acr-nema"
    if Path(name).suffix.lower() in DICOM_SUFFIXES:
        return "dicom"  # read strictly: refused as not_dicom unless it has the Part 10 header
    return "other"


def decode_bytes(
    data: bytes,
    name: str = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    modalities: tuple[str, ...] | None = None,
    screen: Callable[[dict], None] | None = None,
) -> DecodedImage:
    """Decode an image file's bytes. `name` is only used in error messages.

    `screen` (DICOM only) sees the header's gate attributes before any pixel is decoded and may
    raise to refuse the file (see `edgecxr.core.data.dicom.decode_dicom`); PNG and JPEG have no header for it.
    """
    if not data:
        raise DecodeError("empty", "the file is empty (0 bytes)", path=name,
                          fix="wait until the sender has written it, or remove it")
    kind = sniff(data, name)
    if kind in ("dicom", "acr-nema"):
        from edgecxr.core.data.dicom import decode_dicom

        decoded = decode_dicom(data, name, max_pixels=max_pixels, modalities=modalities,
                               part10=kind == "dicom", screen=screen)
    else:
        decoded = _decode_raster(data, name, max_pixels=max_pixels)
    return _checked(decoded, name)


def _checked(decoded: DecodedImage, name: str) -> DecodedImage:
    """Only (H, W) or (H, W, 3) pictures with at least one pixel go on to preprocessing."""
    shape = decoded.pixels.shape
    if decoded.pixels.ndim not in (2, 3) or (decoded.pixels.ndim == 3 and shape[2] != 3) or 0 in shape:
        raise DecodeError("unsupported_shape", f"decoded pixels have shape {shape}, not one grayscale or RGB "
                          "picture", path=name, fix="send single-frame grayscale or RGB images")
    return decoded


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
    set_pillow_limit(max_pixels)
    try:
        img = Image.open(io.BytesIO(data))
        fmt = (img.format or "").lower()
        width, height = img.size
        if width * height > max_pixels:
            raise DecodeError(
                "too_large",
                f"the image has {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
                path=name, fix="raise --max-pixels if such images are expected",
            )
        if fmt not in ("png", "jpeg", "mpo"):
            raise DecodeError("unsupported_format", f"{fmt.upper() or 'this'} images are not read",
                              path=name, fix="convert it to PNG, JPEG or DICOM")
        if fmt in ("jpeg", "mpo") and max(width, height) >= 2 * JPEG_DRAFT_SIDE:
            img.draft(img.mode, _draft_size(width, height))
        img.load()
        upright = ImageOps.exif_transpose(img)  # a broken EXIF block is the file's fault, refused as corrupt
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's limit is twice ours: only headers far beyond it
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{claimed.group(1)} pixels" if claimed else "more pixels than twice the limit"
        raise DecodeError("too_large", f"the image header claims {size}, over the limit of {max_pixels} "
                          "(a decompression bomb?)", path=name,
                          fix="raise --max-pixels if such images are expected") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError("not_an_image", "not a PNG, JPEG or DICOM file", path=name,
                          fix="check what wrote this file; only PNG, JPEG and DICOM are read") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, ZeroDivisionError, KeyError,
            IndexError, TypeError) as exc:
        raise DecodeError("corrupt", f"the image cannot be decoded ({type(exc).__name__}: {exc})", path=name,
                          fix="the file is truncated or damaged: send it again") from exc
    return DecodedImage(pixels=pil_to_unit_float(upright, name), source_format="jpeg" if fmt == "mpo" else fmt)


def _draft_size(width: int, height: int) -> tuple[int, int]:
    """The size Pillow's JPEG draft mode must at least keep: the long side JPEG_DRAFT_SIDE."""
    scale = JPEG_DRAFT_SIDE / max(width, height)
    return max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale)))


def set_pillow_limit(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb limit follow --max-pixels, so ours is the one that decides.

    Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; with it set to our limit the
    explicit size check above refuses first, and the warning (which would print Pillow's raw
    text to the service log) is silenced: every image over the limit is refused as `too_large`.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels


warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


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
