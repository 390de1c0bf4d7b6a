"""Real external tools the tests drive (dcmtk, dciodvfy, Orthanc, Chromium, qemu, Prometheus).

Outside CI a missing tool skips the test with the command that installs it; under CI=true
(`.ci/run` installs them first) a missing tool is a failure, so CI never skips silently.
Every skip in the suite goes through this file (tests/test_suite_rules.py checks it): a missing
install through require_tool/require_module, a test that cannot apply to this machine through
not_applicable.
"""

from __future__ import annotations

import importlib
import os
import shutil
import time
from typing import NoReturn

import pytest

INSTALL_HINT = "sudo bash .ci/install-tools"


def require_tool(name: str) -> str:
    """The absolute path of executable `name`, or skip (fail under CI) when it is absent."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed; run `{INSTALL_HINT}` (Debian packages)"
    _skip_or_fail(message)


def require_module(name: str):
    """Import `name` and return it (a dotted name returns the submodule, as importorskip does), or
    skip (fail under CI) when it is not installed. Works at module level and inside a test."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _skip_or_fail(f"python module {name} is not installed; run `make test` (it installs the [dev] extras)")


def not_applicable(reason: str) -> None:
    """Skip a test that cannot apply to this machine whatever is installed (a CPU feature it lacks,
    the other test environment). Never for something an install would fix: use require_*."""
    pytest.skip(reason, allow_module_level=True)


def _skip_or_fail(message: str) -> NoReturn:
    # allow_module_level: the suite calls these at the top of a test file, where a plain skip
    # would be a collection error; under CI the failure stops collection of that file loudly.
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


def wait_for(predicate, seconds: float = 30.0, poll: float = 0.05):
    """Poll `predicate` until it returns something truthy, at most `seconds`; return that value,
    or the predicate's last answer (falsy) when the deadline passes. Tests wait on a condition
    with a deadline this way instead of sleeping."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    return predicate()


def stop_process(proc, grace: float = 30.0) -> None:
    """SIGTERM a child (a watcher, a listener), as systemd would, and wait for it; SIGKILL after `grace` s."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
