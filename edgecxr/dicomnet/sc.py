"""A Secondary Capture of the radiograph with the result burned into a banner above it.

For PACS viewers that do not render SR: the radiologist sees the image as the model saw it
(the display pipeline of edgecxr's decoder: modality LUT, VOI window, MONOCHROME1 inverted)
with the finding, the probability, the algorithm and "NOT FOR DIAGNOSTIC USE" on a black
band above it. Same study, its own series, UID derived like the SR's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgecxr import __version__
from edgecxr.core.optional import require
from edgecxr.dicomnet.copying import checked_header
from edgecxr.dicomnet.finding import Finding
from edgecxr.dicomnet.sr import (
    EXTRA_COPIED,
    MANUFACTURER,
    SERIES_DESCRIPTION,
    Algorithm,
    copy_patient_and_study,
    derived_uid,
)

SC_SERIES_NUMBER = 9902
MAX_SIDE = 2048  # a preview, not a diagnostic copy: keep it small for the PACS
MIN_WIDTH = 768  # small inputs are enlarged so the banner stays legible


def sc_uid(source_sop_uid: str, checksum: str) -> str:
    return derived_uid("SC", source_sop_uid, checksum)


def banner_lines(finding: Finding, algorithm: Algorithm) -> list[str]:
    return [f"AI RESULT: {finding.headline()}",
            f"rule: {finding.decision}",
            f"edgecxr {__version__} {algorithm.bundle} ({algorithm.engine})",
            "NOT FOR DIAGNOSTIC USE"]


def with_banner(pixels: np.ndarray, lines: list[str]) -> np.ndarray:
    """[0, 1] grayscale image -> uint8 image with a black text band on top."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8), "L")
    scale = min(MAX_SIDE / max(image.size), max(1.0, MIN_WIDTH / image.width))  # readable text, bounded size
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    size, font = _fitting_font(lines, image.width)
    line_h = int(size * 1.3)
    band = line_h * len(lines) + size
    canvas = Image.new("L", (image.width, image.height + band), 0)
    canvas.paste(image, (0, band))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((size // 2, size // 2 + i * line_h), line, fill=255, font=font)
    return np.asarray(canvas)


def _fitting_font(lines: list[str], width: int):
    """The largest default font (up to width/40) in which the longest line fits the image width."""
    from PIL import Image, ImageDraw, ImageFont

    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    size = max(10, width // 40)
    while True:
        try:
            font = ImageFont.load_default(size=size)
        except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
            return 11, ImageFont.load_default()
        if size <= 10 or max(measure.textlength(line, font=font) for line in lines) <= width - size:
            return size, font
        size -= 1


def build_sc(source, pixels: np.ndarray, finding: Finding, algorithm: Algorithm,
             log: Callable[[str], None] | None = None):
    """`source` the input's header; `pixels` its display image in [0, 1]. Patient and study attributes
    are checked as for the SR, and the source's Specific Character Set travels with them."""
    hd = require("highdicom", "building DICOM Secondary Capture results")
    from pydicom.uid import ExplicitVRLittleEndian

    source = checked_header(source, EXTRA_COPIED, log)

    image = with_banner(pixels, banner_lines(finding, algorithm))
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=image, photometric_interpretation="MONOCHROME2", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=derived_uid("SC series", str(source.StudyInstanceUID),
                                                                     algorithm.checksum),
        series_number=SC_SERIES_NUMBER, sop_instance_uid=sc_uid(str(source.SOPInstanceUID), algorithm.checksum),
        instance_number=int(source.get("InstanceNumber") or 1), manufacturer=MANUFACTURER,
        patient_orientation=_orientation(source), transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=SERIES_DESCRIPTION, manufacturer_model_name=algorithm.bundle[:64],
        software_versions=f"edgecxr {__version__}")
    sc.BurnedInAnnotation = "YES"
    sc.Laterality = source.get("Laterality") or source.get("ImageLaterality") or None  # Type 2C: chest is unpaired
    sc.ImageComments = "AI result burned in; not for diagnostic use"
    if "SpecificCharacterSet" in source:  # the copied names and descriptions are in it
        sc.SpecificCharacterSet = source.SpecificCharacterSet
    copy_patient_and_study(source, sc)
    return sc


def _orientation(source) -> tuple[str, str]:
    value = source.get("PatientOrientation")
    if value and len(value) == 2 and all(value):
        return str(value[0]), str(value[1])
    return ("L", "F")  # a frontal chest radiograph as usually displayed (rows to the patient's left, columns down)
