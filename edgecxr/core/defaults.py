"""Defaults that several commands share, each written once: a change here changes every command
that draws a sample, splits data or limits an input."""

from __future__ import annotations

DEFAULT_SEED = 1216  # every seeded draw: training split and order, calibration, held-out, gate fit, gate-check sets

# The modalities a bundle answers for when its intended use names none (scope.intended_use), and the
# codes some systems write for one of them: a DR image is a DX (digital radiograph) under another name.
DEFAULT_MODALITIES = ("CR", "DX")
MODALITY_SYNONYMS = {"DR": "DX"}


def with_synonyms(modalities: tuple[str, ...]) -> tuple[str, ...]:
    """The modalities with the codes that mean one of them (DX brings DR), for the decoder's check."""
    extra = tuple(code for code, canon in MODALITY_SYNONYMS.items() if canon in modalities)
    return tuple(dict.fromkeys(modalities + extra))
