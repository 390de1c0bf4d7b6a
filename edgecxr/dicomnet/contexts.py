"""What the listener accepts: Verification, the projection-radiograph storage classes, and every
transfer syntax this install can decode, compressed ones included, stored as received.

The transfer syntaxes are asked of pydicom at start: a syntax is offered only when a pixel
decoder for it is installed (`edgecxr[dicom]` brings the JPEG, JPEG-LS and JPEG 2000 ones),
so a scanner is never sent into a format the watcher would then refuse as undecodable.
"""

from __future__ import annotations

VERIFICATION = "1.2.840.10008.1.1"

# SOP Class UID -> name (DICOM PS3.4 B.5)
STORAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}

# Transfer Syntax UID -> name, in order of preference when a scanner proposes several
CANDIDATE_SYNTAXES = {
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian (retired)",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 & 4)",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless, Non-Hierarchical (Process 14)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless, Non-Hierarchical, First-Order Prediction (SV1)",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Lossy (Near-Lossless)",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 (Lossless Only)",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.201": "HTJ2K (Lossless Only)",
    "1.2.840.10008.1.2.4.202": "HTJ2K with RPCL Options (Lossless Only)",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
}


def decodable_syntaxes() -> list[str]:
    """The candidate transfer syntaxes whose pixel data this install can decode."""
    from pydicom.pixels import get_decoder

    usable = []
    for uid in CANDIDATE_SYNTAXES:
        try:
            if get_decoder(uid).is_available:
                usable.append(uid)
        except NotImplementedError:  # a pydicom without any decoder for this syntax
            continue
    return usable


def add_contexts(ae, syntaxes: list[str]) -> None:
    """Verification plus each storage class with every usable syntax, SCP role only."""
    ae.add_supported_context(VERIFICATION, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
    for sop_class in STORAGE_CLASSES:
        ae.add_supported_context(sop_class, syntaxes)
