"""Wrap a grayscale image as a single-frame DICOM object, for tests, demos and integration checks.

Scanner integrations need DICOM test objects with known content; this writes a
projection radiograph (DX by default) from any [0, 1] image, optionally MONOCHROME1,
windowed, rescaled or compressed (JPEG 2000 lossless, or 8-bit JPEG baseline).
Patient attributes are filled with obviously fake values so tests can prove they never
reach a result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecxr.core.optional import require


def write_dx_dicom(pixels: np.ndarray, path: Path, *, photometric: str = "MONOCHROME2",
                   bits: int = 12, window: tuple[float, float] | None = None,
                   modality: str = "DX", slope: float = 1.0, intercept: float = 0.0,
                   compress: str | None = None) -> Path:
    """Wrap a [0, 1] grayscale image as a single-frame DICOM object (DX by default)."""
    require("pydicom", "writing DICOM files")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        generate_uid,
    )

    if compress == "jpeg-baseline":
        bits = 8

    stored = np.round(pixels * (2**bits - 1)).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (2**bits - 1 - stored).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.AccessionNumber = "ACC0001"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-SECRET"
    ds.PatientBirthDate = "20200101"
    ds.Modality = modality
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = stored.tobytes()
    if compress == "jpeg2000":
        ds.compress(JPEG2000Lossless)
    elif compress == "jpeg-baseline":  # 8-bit JPEG made by Pillow, encapsulated
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(stored.astype(np.uint8), "L").save(buf, format="JPEG", quality=95)
        ds.BitsAllocated = 8
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
    elif compress is not None:
        raise ValueError(f"unknown compression {compress!r}")
    ds.save_as(path, enforce_file_format=True)
    return path
