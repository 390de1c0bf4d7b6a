"""Keep third-party chatter (prints, INFO logs) out of edgecxr's own progress output."""

from __future__ import annotations

import contextlib
import io
import logging

NOISY_LOGGERS = ("nncf", "torch.onnx", "torch._dynamo", "torch.export", "onnxscript", "onnx_ir", "root")


@contextlib.contextmanager
def quiet():
    saved = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    for name in NOISY_LOGGERS:
        logging.getLogger(name if name != "root" else None).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name if name != "root" else None).setLevel(level)
