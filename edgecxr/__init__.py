"""edgecxr: from a fine-tuned Swin-V2 chest X-ray classifier to a box beside the scanner.

The package root imports nothing heavy: the on-device runtime must start without torch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgecxr")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
