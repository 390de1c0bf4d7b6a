"""When and with what a record was made: the timestamp and library versions reports, bundles and status carry."""

from __future__ import annotations

import platform
from datetime import datetime, timezone

from edgecxr import __version__
from edgecxr.core.optional import version_of


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def library_versions(*dists: str) -> dict:
    names = dists or ("numpy", "pillow", "torch", "transformers", "accelerate", "onnx",
                      "onnxruntime", "openvino", "nncf", "pydicom")
    versions = {"python": platform.python_version(), "edgecxr": __version__}
    for name in names:
        v = version_of(name)
        if v:
            versions[name] = v
    return versions
