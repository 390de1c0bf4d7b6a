"""A corpus of malformed and unusual inputs, built from real images with pydicom and Pillow.

Each builder writes one file into a folder and the corpus maps its relative path to the
refusal code the watcher must give it ("ok" when it must be classified). Used by the live
watcher test and the boundary tests; the list is what the docs' robustness table reports.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.dicom_write import write_dx_dicom


def _gray(source: Path, size: int = 64) -> np.ndarray:
    return np.asarray(Image.open(source).convert("L").resize((size, size)), dtype=np.float64) / 255.0


def _edit(path: Path, change) -> None:
    """Rewrite a DICOM file after `change(ds)`; raw elements keep malformed values as they are."""
    import pydicom

    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def _raw(ds, keyword: str, vr: str, text: bytes) -> None:
    """Store `text` as the attribute's value bytes, as a badly configured modality would."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement

    if len(text) % 2:
        text += b" "
    tag = tag_for_keyword(keyword)
    if tag in ds:
        del ds[tag]
    ds[tag] = RawDataElement(tag, vr, len(text), text, 0, False, True)


def dicom_corpus(folder: Path, source: Path) -> dict[str, str]:
    """Malformed DICOMs (bad DS/IS values, short pixel data, odd geometry and encodings)."""
    from pydicom.uid import UID

    gray = _gray(source)
    expected: dict[str, str] = {}

    def dx(name: str, code: str, change=None, **kw) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_dx_dicom(gray, path, **kw)
        if change is not None:
            _edit(path, change)
        expected[name] = code

    dx("dx-rescale-slope-comma.dcm", "bad_attribute", lambda ds: _raw(ds, "RescaleSlope", "DS", b"1,5"))
    dx("dx-rescale-intercept-text.dcm", "bad_attribute", lambda ds: _raw(ds, "RescaleIntercept", "DS", b"-1O24"))
    dx("dx-window-center-text.dcm", "bad_attribute", lambda ds: _raw(ds, "WindowCenter", "DS", b"center"),
       window=(2048, 4096))
    dx("dx-window-width-comma.dcm", "bad_attribute", lambda ds: _raw(ds, "WindowWidth", "DS", b"40,96"),
       window=(2048, 4096))
    dx("dx-frames-text.dcm", "bad_attribute", lambda ds: _raw(ds, "NumberOfFrames", "IS", b"one"))
    dx("dx-instance-number-text.dcm", "ok", lambda ds: _raw(ds, "InstanceNumber", "IS", b"1A"))
    dx("dx-short-pixel-data.dcm", "undecodable_pixels",
       lambda ds: setattr(ds, "PixelData", ds.PixelData[: len(ds.PixelData) // 3]))

    def huge(ds):
        ds.Rows, ds.Columns = 65535, 65535
        ds.PixelData = ds.PixelData[:64]

    dx("dx-rows-columns-65535.dcm", "too_large", huge)
    dx("dx-bits-allocated-12.dcm", "undecodable_pixels", lambda ds: setattr(ds, "BitsAllocated", 12))
    dx("dx-no-pixel-data.dcm", "no_pixel_data", lambda ds: delattr(ds, "PixelData"))
    dx("dx-no-photometric.dcm", "ok", lambda ds: delattr(ds, "PhotometricInterpretation"))

    def rgb(ds):
        stored = np.round(gray * 255).astype(np.uint8)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = np.stack([stored, stored // 2, stored], axis=-1).tobytes()

    dx("dx-rgb.dcm", "ok", rgb)

    def signed(ds):
        ds.PixelRepresentation = 1
        ds.PixelData = (ds.pixel_array.astype(np.int32) - 2048).astype(np.int16).tobytes()

    dx("dx-signed-pixels.dcm", "ok", signed)

    def frames(ds):
        ds.NumberOfFrames = 3
        ds.PixelData = ds.PixelData * 3

    dx("dx-multi-frame.dcm", "multi_frame", frames)
    dx("dx-unknown-transfer-syntax.dcm", "undecodable_pixels",
       lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", UID("1.2.3.4.5.6.7")))
    (folder / "preamble-only.dcm").write_bytes(b"\0" * 128 + b"DICM")
    expected["preamble-only.dcm"] = "not_dicom"
    # a bare data set without preamble or meta header, as an old export node writes, in study/series/
    dx("study1/series1/IMG0001", "ok")
    _strip_to_acr_nema(folder / "study1/series1/IMG0001")
    return expected


def _strip_to_acr_nema(path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.file_meta
    ds.preamble = None
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)


def raster_corpus(folder: Path, source: Path) -> dict[str, str]:
    """Odd but valid rasters (all classified) and a PNG whose header claims 200000 x 200000."""
    folder.mkdir(parents=True, exist_ok=True)
    img = Image.open(source).convert("L").resize((96, 80))
    expected: dict[str, str] = {}

    def save(name: str, picture: Image.Image, fmt: str, code: str = "ok", **kw) -> None:
        picture.save(folder / name, format=fmt, **kw)
        expected[name] = code

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: shown upright after exif_transpose
    save("exif-rotated.jpeg", img, "JPEG", exif=exif.tobytes())
    save("cmyk.jpeg", img.convert("CMYK"), "JPEG")
    save("sixteen-bit.png", Image.fromarray(np.asarray(img, dtype=np.uint16) * 257), "PNG")
    save("rgba.png", img.convert("RGBA"), "PNG")
    save("palette.png", img.convert("P"), "PNG")
    save("progressive.jpeg", img, "JPEG", progressive=True)
    save("really-a-png.jpeg", img, "PNG")
    save("Röntgen-снимок-胸部 ñ.jpeg", img, "JPEG")
    (folder / "bomb-200000x200000.png").write_bytes(png_header_only(200_000, 200_000))
    expected["bomb-200000x200000.png"] = "too_large"
    return expected


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size and holds a few bytes of data: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def odd_names(folder: Path, source: Path) -> dict[str, str]:
    """A file name that is not UTF-8 (written by an old SMB client): recorded with its byte escaped."""
    import os

    name = os.fsencode(folder) + b"/latin1-r\xf6ntgen.jpeg"
    with open(name, "wb") as handle:
        handle.write(source.read_bytes())
    return {"latin1-r\\xf6ntgen.jpeg": "ok"}


def build_corpus(folder: Path, source: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return {**dicom_corpus(folder, source), **raster_corpus(folder, source), **odd_names(folder, source)}


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()
