"""DICOM to display pixels, the way a radiology viewer shows a projection radiograph.

Order, as in DICOM PS3.3 C.11 (the grayscale pipeline): stored values -> Modality LUT
(rescale slope/intercept or LUT) -> VOI LUT (table, or window centre/width) -> [0, 1],
inverted for MONOCHROME1 so that bone is bright as in MONOCHROME2. Without any VOI
information the full range of the image is shown, as viewers do.

Patient-identifying attributes are never read into the result: only the UIDs and
accession number that let a result be matched to its study.
"""

from __future__ import annotations

import io

import numpy as np

from edgecxr.data.decode import DecodedImage, collapse_gray
from edgecxr.errors import DecodeError
from edgecxr.optional import require

PROJECTION_MODALITIES = ("CR", "DX", "DR")
IDENTIFIERS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "AccessionNumber",
               "Modality")
COLOUR_INTERPRETATIONS = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")


def decode_dicom(data: bytes, name: str, *, max_pixels: int,
                 modalities: tuple[str, ...] | None = None) -> DecodedImage:
    pydicom = require("pydicom", "reading DICOM files")
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError) as exc:
        raise DecodeError("not_dicom", f"not a readable DICOM file ({exc})", path=name,
                          fix="check what wrote this file") from exc
    meta = {key: str(ds.get(key, "")) for key in IDENTIFIERS if ds.get(key) not in (None, "")}
    modality = str(ds.get("Modality", "")).upper()
    if modalities is not None and modality not in modalities:
        raise DecodeError(
            "modality_refused",
            f"modality {modality or 'missing'} is not a projection radiograph "
            f"(classified: {', '.join(modalities)})",
            path=name, fix="send chest radiographs only, or widen --modality",
        )
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", None) or "this object"
        raise DecodeError("no_pixel_data", f"{kind} has no pixel data", path=name,
                          fix="only image objects can be classified")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DecodeError("multi_frame", f"multi-frame image ({frames} frames) is not classified",
                          path=name, fix="send each radiograph as a single-frame object")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > max_pixels:
        raise DecodeError("too_large", f"the image has {cols}x{rows} pixels, over the limit of "
                          f"{max_pixels}", path=name, fix="raise the pixel limit")
    try:
        stored = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable pixel data
        ts = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        ts_name = getattr(ts, "name", ts) or "unknown transfer syntax"
        raise DecodeError(
            "undecodable_pixels", f"pixel data ({ts_name}) cannot be decoded: {exc}", path=name,
            fix="pip install 'edgecxr[dicom]' for the JPEG/JPEG-LS/JPEG 2000 decoders, "
                "or the file is damaged",
        ) from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric in COLOUR_INTERPRETATIONS or stored.ndim == 3:
        pixels = _colour_to_unit(stored, ds)
    elif photometric in ("MONOCHROME1", "MONOCHROME2"):
        pixels = _grayscale_to_unit(stored, ds)
        if photometric == "MONOCHROME1":
            pixels = 1.0 - pixels
    else:
        raise DecodeError("unsupported_photometric", f"photometric interpretation {photometric} "
                          "is not supported", path=name,
                          fix="send MONOCHROME1, MONOCHROME2 or RGB images")
    meta["PhotometricInterpretation"] = photometric
    return DecodedImage(pixels=np.ascontiguousarray(pixels, dtype=np.float32),
                        source_format="dicom", meta=meta)


def _colour_to_unit(stored: np.ndarray, ds) -> np.ndarray:
    bits = int(ds.get("BitsStored", 8) or 8)
    arr = stored.astype(np.float32) / float(2**bits - 1)
    return collapse_gray(np.clip(arr, 0.0, 1.0))


def _grayscale_to_unit(stored: np.ndarray, ds) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi

    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        lut = ds.VOILUTSequence[0]
        out_bits = int(lut.LUTDescriptor[2]) or 16
        out = np.asarray(apply_voi(values, ds, index=0), dtype=np.float64)
        return np.clip(out / float(2**out_bits - 1), 0.0, 1.0)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = _first(ds.WindowCenter)
        width = _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        if width > 0:
            return window(values, center, width, function)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """VOI windowing to [0, 1] (DICOM PS3.3 C.11.2.1.2)."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width < 1:
        width = 1.0
    if width == 1:
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _first(value) -> float:
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)
