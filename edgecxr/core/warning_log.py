"""Third-party warnings without their text: pydicom, highdicom and Pillow quote the values they warn about.

`The string "DOE JOHN" is unlikely to represent the intended person name`, or a Patient's Age
that is not valid AS: printed as is, the patient's data would land in stderr, which is the
journal under systemd. So, once installed, every warning raised while a file is being read or
its SR built (inside `reading(name)`), and every warning or log record from those packages
anywhere, becomes one line that names the file, the package and the kind (category or log
level), never the text. Each kind is said once per file.

Process-wide and thread-safe: `warnings.showwarning` is replaced once (never per call, since
`warnings.catch_warnings` is not thread-safe), and the file being read is per thread.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PACKAGES = ("pydicom", "highdicom", "PIL")  # read patient files; their messages quote values
_local = threading.local()
_lock = threading.Lock()
_installed = False
_original_show = warnings.showwarning
_default_log: Callable[[str], None] | None = None
_said_outside: set[tuple[str, str]] = set()  # outside any file: each package and kind once per process


def set_default_log(log: Callable[[str], None]) -> None:
    """Where the lines go when `reading()` is given no log (the command's logger: text or JSON)."""
    global _default_log
    _default_log = log
    install()


@contextmanager
def reading(name: str | Path, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Inside, every warning on this thread is logged as `name` + package + kind, without its text."""
    install()
    stack = _stack()
    stack.append((str(name), log, set()))
    try:
        yield
    finally:
        stack.pop()


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        warnings.showwarning = _show
        for package in PACKAGES:
            logger = logging.getLogger(package)
            logger.addHandler(_Withheld(logging.WARNING))
            logger.propagate = False  # a root handler configured by someone else would print the text
        _installed = True


def _stack() -> list:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    package = _package(filename)
    if not _stack() and package not in PACKAGES:
        _original_show(message, category, filename, lineno, file, line)  # ours, numpy's, torch's: no patient data
        return
    _report(package, category.__name__)


class _Withheld(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _report(record.name.split(".")[0], f"logged {record.levelname.lower()}")


def _report(package: str, kind: str) -> None:
    stack = _stack()
    if stack:
        name, log, said = stack[-1]
        if package in said:  # pydicom both warns and logs the same message: one line
            return
        said.add(package)
        where = f"while reading {name}"
    else:
        log, where = None, "outside any file"
        with _lock:
            if (package, kind) in _said_outside:
                return
            _said_outside.add((package, kind))
    line = f"warning: {package} {kind} {where} (its text is not logged: it may quote patient data)"
    (log or _default_log or _stderr)(line)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _package(filename: str) -> str:
    """The top-level package a warning came from: `.../site-packages/pydicom/valuerep.py` -> `pydicom`."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts[:-1]:
            return parts[parts.index(marker) + 1].removesuffix(".py")
    return Path(filename).stem
