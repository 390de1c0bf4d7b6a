"""A small, attributed sample of real chest X-rays shipped with edgecxr for the demo and for `bench`."""

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "chest-xrays"
