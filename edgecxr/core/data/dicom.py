"""DICOM to display pixels, the way a radiology viewer shows a projection radiograph.

Order, as in DICOM PS3.3 C.11 (the grayscale pipeline): stored values -> Modality LUT
(rescale slope/intercept or LUT) -> VOI LUT (table, or window centre/width) -> [0, 1],
inverted for MONOCHROME1 so that bone is bright as in MONOCHROME2. Without any VOI
information the full range of the image is shown, as viewers do.

Patient-identifying attributes are never read into the result: only the UIDs and
accession number that let a result be matched to its study. The attributes the intended-use
gate needs (species, age, view ...) are read into a separate dict handed to `screen`, never
into `meta`.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from edgecxr.core.data.decode import DecodedImage, collapse_gray
from edgecxr.core.defaults import DEFAULT_MODALITIES, with_synonyms
from edgecxr.core.errors import DecodeError
from edgecxr.core.optional import require

PROJECTION_MODALITIES = with_synonyms(DEFAULT_MODALITIES)  # CR, DX and DR: what a decode without a bundle accepts
IDENTIFIERS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "AccessionNumber",
               "Modality")
# The attributes the gate's tags stage reads (edgecxr.scope.tags.SCREEN_KEYWORDS, repeated here because
# data/ sits below scope/); sequences are read as lists of coded items.
SCREEN_KEYWORDS = (
    "Modality", "ViewPosition", "BodyPartExamined", "PhotometricInterpretation", "SamplesPerPixel",
    "PatientSpeciesDescription", "PatientSpeciesCodeSequence", "PatientBreedDescription",
    "PatientBreedCodeSequence", "BreedRegistrationSequence", "ResponsiblePersonRole", "PatientAge",
)
CODE_KEYWORDS = ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")
COLOUR_INTERPRETATIONS = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")


def decode_dicom(data: bytes, name: str, *, max_pixels: int,
                 modalities: tuple[str, ...] | None = None, part10: bool = True,
                 screen: Callable[[dict], None] | None = None) -> DecodedImage:
    """Read one DICOM; pydicom's warnings are logged with `name` and without their text (they quote values)."""
    from edgecxr.core.warning_log import reading

    with reading(name):
        return _decode_dicom(data, name, max_pixels=max_pixels, modalities=modalities, part10=part10, screen=screen)


def _decode_dicom(data: bytes, name: str, *, max_pixels: int, modalities: tuple[str, ...] | None,
                  part10: bool, screen: Callable[[dict], None] | None) -> DecodedImage:
    """`part10=False`: a bare data set (ACR-NEMA style, no preamble or meta header), read as dcmtk does.

    `screen` is called with `screen_tags(ds)` once the header is read and before any pixel is
    decoded (the gate's tags stage: it raises to refuse, e.g. `scope.verdict.GateRefused`, which
    passes through unchanged). `modalities` is the older modality filter, applied after it.
    """
    pydicom = require("pydicom", "reading DICOM files")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not part10)
        if not part10:
            _assume_transfer_syntax(ds)
        meta = {key: str(ds.get(key, "")) for key in IDENTIFIERS if ds.get(key) not in (None, "")}
    except Exception as exc:  # pydicom raises a dozen types (and its own) for a bad header
        raise DecodeError("not_dicom", f"not a readable DICOM file ({type(exc).__name__}: {exc})", path=name,
                          fix="check what wrote this file") from exc
    if len(ds) == 0:
        raise DecodeError("not_dicom", "a DICOM header with no data set after it", path=name,
                          fix="the sender stopped after the header: send the file again")
    if screen is not None:
        screen(screen_tags(ds))
    modality = meta.get("Modality", "").upper()
    if modalities is not None and modality not in modalities:
        raise DecodeError(
            "modality_refused",
            f"modality {modality or 'missing'} is not a projection radiograph "
            f"(classified: {', '.join(modalities)})",
            path=name, fix="send chest radiographs only, or widen --modality",
        )
    _check_geometry(ds, name, max_pixels)
    if "PhotometricInterpretation" not in ds and integer_attribute(ds, "SamplesPerPixel", name, default=1) == 1:
        ds.PhotometricInterpretation = "MONOCHROME2"  # missing (type 1, but seen): shown as viewers show it
        meta["PhotometricInterpretationAssumed"] = "MONOCHROME2"
    stored = _stored_pixels(ds, name)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    try:
        pixels = _display(stored, ds, photometric, name)
    except DecodeError:
        raise
    except Exception as exc:  # lazily parsed attributes fail here with pydicom's own types
        raise DecodeError("bad_attribute", f"the display attributes (modality/VOI LUT) cannot be applied "
                          f"({type(exc).__name__}: {exc})", path=name,
                          fix="check the modality's DICOM configuration") from exc
    meta["PhotometricInterpretation"] = photometric
    return DecodedImage(pixels=np.ascontiguousarray(pixels, dtype=np.float32),
                        source_format="dicom", meta=meta)


def screen_tags(ds) -> dict:
    """The attributes the gate's tag rules read, as plain values (text, or lists of dicts for coded
    sequences); an attribute pydicom cannot parse is given as its raw bytes, one it cannot reach is left out.
    Holds patient data (age, species): for the gate only, never for result lines or logs."""
    tags: dict = {}
    for keyword in SCREEN_KEYWORDS:
        try:
            if keyword not in ds:
                continue
            value = ds[keyword].value
        except Exception:  # a lazily parsed value pydicom cannot convert: keep what was written
            value = _raw_value(ds, keyword)
        if value is None:
            continue
        tags[keyword] = _coded_items(value) if _is_sequence(value) else value
    return tags


def _raw_value(ds, keyword: str):
    from pydicom.datadict import tag_for_keyword

    try:
        element = ds.get_item(tag_for_keyword(keyword))
        return None if element is None else bytes(element.value or b"")
    except Exception:  # nothing readable: the rule treats it as absent
        return None


def _is_sequence(value) -> bool:
    from pydicom.sequence import Sequence

    return isinstance(value, Sequence)


def _coded_items(sequence) -> list[dict]:
    items = []
    for item in sequence:
        code = {}
        for key in CODE_KEYWORDS:
            try:
                code[key] = str(item.get(key, "") or "")
            except Exception:  # one unreadable code field leaves the item, with what could be read
                code[key] = ""
        items.append(code)
    return items


def _assume_transfer_syntax(ds) -> None:
    """A bare data set has no meta header: decode its pixels in the encoding it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if "PixelData" not in ds:
        return
    implicit, little = ds.original_encoding
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                  ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    ds.file_meta = meta


def _check_geometry(ds, name: str, max_pixels: int) -> None:
    """Refuse, with the attribute named, what would otherwise fail deep inside numpy or pydicom."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", None) or "this object"
        raise DecodeError("no_pixel_data", f"{kind} has no pixel data", path=name,
                          fix="only image objects can be classified")
    frames = integer_attribute(ds, "NumberOfFrames", name, default=1)
    if frames > 1:
        raise DecodeError("multi_frame", f"multi-frame image ({frames} frames) is not classified",
                          path=name, fix="send each radiograph as a single-frame object")
    rows = integer_attribute(ds, "Rows", name, default=0)
    cols = integer_attribute(ds, "Columns", name, default=0)
    if rows <= 0 or cols <= 0:
        raise DecodeError("bad_attribute", f"Rows x Columns is {rows} x {cols}: no picture", path=name,
                          fix="check the modality's DICOM configuration")
    if rows * cols > max_pixels:
        raise DecodeError("too_large", f"the image has {cols}x{rows} = {rows * cols} pixels, over the limit "
                          f"of {max_pixels}", path=name, fix="raise --max-pixels if such images are expected")
    for keyword in ("BitsAllocated", "BitsStored", "SamplesPerPixel", "PixelRepresentation"):
        integer_attribute(ds, keyword, name, default=0)


def _stored_pixels(ds, name: str) -> np.ndarray:
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable pixel data
        ts = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        ts_name = getattr(ts, "name", ts) or "unknown transfer syntax"
        raise DecodeError(
            "undecodable_pixels", f"pixel data ({ts_name}) cannot be decoded: {exc}", path=name,
            fix="pip install 'edgecxr[dicom]' for the JPEG/JPEG-LS/JPEG 2000 decoders, "
                "or the file is damaged",
        ) from exc


def _display(stored: np.ndarray, ds, photometric: str, name: str) -> np.ndarray:
    if photometric in COLOUR_INTERPRETATIONS or stored.ndim == 3:
        return _colour_to_unit(stored, ds, name)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        pixels = _grayscale_to_unit(stored, ds, name)
        return 1.0 - pixels if photometric == "MONOCHROME1" else pixels
    raise DecodeError("unsupported_photometric", f"photometric interpretation {photometric} "
                      "is not supported", path=name,
                      fix="send MONOCHROME1, MONOCHROME2 or RGB images")


def _colour_to_unit(stored: np.ndarray, ds, name: str) -> np.ndarray:
    bits = integer_attribute(ds, "BitsStored", name, default=8) or 8
    arr = stored.astype(np.float32) / float(2 ** min(max(bits, 1), 32) - 1)
    return collapse_gray(np.clip(arr, 0.0, 1.0))


def _grayscale_to_unit(stored: np.ndarray, ds, name: str) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi

    if "ModalityLUTSequence" in ds:
        values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    else:  # rescale read here, so a malformed slope is named instead of failing inside numpy
        slope = number_attribute(ds, "RescaleSlope", name, default=1.0)
        intercept = number_attribute(ds, "RescaleIntercept", name, default=0.0)
        values = stored.astype(np.float64) * slope + intercept
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        lut = ds.VOILUTSequence[0]
        out_bits = int(lut.LUTDescriptor[2]) or 16
        out = np.asarray(apply_voi(values, ds, index=0), dtype=np.float64)
        return np.clip(out / float(2**out_bits - 1), 0.0, 1.0)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = number_attribute(ds, "WindowCenter", name, default=0.0)
        width = number_attribute(ds, "WindowWidth", name, default=0.0)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        if width > 0:
            return window(values, center, width, function)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def number_attribute(ds, keyword: str, name: str, *, default: float) -> float:
    """A numeric attribute's (first) value, or a refusal naming the attribute and what it holds.

    Badly configured modalities write DS values such as `1,5`; pydicom keeps them as text,
    which would otherwise surface as a numpy error far from its cause.
    """
    try:
        value = ds.get(keyword)
    except Exception as exc:  # pydicom converts lazily and raises on bytes it cannot parse
        raise _bad_attribute(keyword, f"cannot be parsed ({exc})", name) from exc
    if value is None or value == "":
        return default
    if not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__len__"):
        if len(value) == 0:
            return default
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise _bad_attribute(keyword, f"holds {value!r}, not a number", name) from exc
    if not np.isfinite(number):
        raise _bad_attribute(keyword, f"holds {value!r}, not a finite number", name)
    return number


def integer_attribute(ds, keyword: str, name: str, *, default: int) -> int:
    number = number_attribute(ds, keyword, name, default=float(default))
    if number != int(number) or abs(number) > 2**31:
        raise _bad_attribute(keyword, f"holds {number!r}, not a whole number", name)
    return int(number)


def _bad_attribute(keyword: str, what: str, name: str) -> DecodeError:
    return DecodeError("bad_attribute", f"{keyword} {what}", path=name,
                       fix="the modality wrote a malformed attribute: correct its DICOM configuration")


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
