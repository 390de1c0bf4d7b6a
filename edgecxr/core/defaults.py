"""Defaults that several commands share, each written once: a change here changes every command
that draws a sample, splits data or limits an input."""

from __future__ import annotations

DEFAULT_SEED = 1216  # every seeded draw: training split and order, calibration, held-out, gate fit, gate-check sets
