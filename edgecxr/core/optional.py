"""Import optional libraries where they are used, with an install hint when missing.

The core install is the on-device runtime; torch, transformers, the engines and pydicom
are extras. A missing one is a user error (`MissingDependencyError`), never a bare
ImportError from deep inside a command.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from edgecxr.core.errors import MissingDependencyError

# inference backend -> the module it imports, the pip distributions that provide that module
# (any one will do), and the edgecxr extra that brings the first. The one table of backends'
# packages: backend_installed, `edgecxr info` and the install hints all read it.
BACKEND_PACKAGES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "onnxruntime": ("onnxruntime", ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"), "onnxruntime"),
    "openvino": ("openvino", ("openvino",), "openvino"),
    "tensorrt": ("tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"), "tensorrt"),
}

# module name -> (pip distribution, edgecxr extra that brings it)
_KNOWN = {
    "torch": ("torch", "train"),
    "transformers": ("transformers", "train"),
    "accelerate": ("accelerate", "train"),
    "safetensors": ("safetensors", "train"),
    "matplotlib": ("matplotlib", "plots"),
    "onnx": ("onnx", "export"),
    "onnxslim": ("onnxslim", "export"),
    "nncf": ("nncf", "export"),
    "pydicom": ("pydicom", "dicom"),
    "pynetdicom": ("pynetdicom", "dicom"),
    "highdicom": ("highdicom", "dicom"),
    **{module: (dists[0], extra) for module, dists, extra in BACKEND_PACKAGES.values()},
}


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` or raise an error that says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        dist, extra = _KNOWN.get(top, (top, None))
        fix = f"pip install 'edgecxr[{extra}]'" if extra else f"pip install {dist}"
        if top == "torch":
            fix += " (install the torch build for your machine first, e.g. pip install torch)"
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{dist}', which is not installed ({exc})",
            fix=fix,
        ) from exc


def available(module: str) -> bool:
    """True when `module` can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def version_of(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
