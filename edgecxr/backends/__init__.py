"""Inference engines behind one small interface (see `base.Runner`).

One folder per backend, each imported only when that backend is asked for, so the
runtime needs none of the vendor libraries it does not use (Polygraphy's layout).
"""

from __future__ import annotations

import importlib

from edgecxr.backends.base import Runner, RunnerOptions
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.optional import BACKEND_PACKAGES, available

BACKENDS = ("tensorrt", "openvino", "onnxruntime")
_MODULES = {name: f"edgecxr.backends.{name}.runner" for name in BACKENDS}


def backend_installed(name: str) -> bool:
    return available(BACKEND_PACKAGES[name][0])


def open_runner(backend: str, path, options: RunnerOptions | None = None) -> Runner:
    """Load the engine file at `path` in `backend`'s runtime."""
    if backend not in _MODULES:
        raise EdgecxrError(f"unknown backend {backend!r}", fix=f"choose one of {', '.join(BACKENDS)}")
    module = importlib.import_module(_MODULES[backend])
    return module.open_runner(path, options or RunnerOptions())


__all__ = ["BACKENDS", "Runner", "RunnerOptions", "backend_installed", "open_runner"]
