"""Real external tools the tests drive (dcmtk, dciodvfy, Orthanc, Chromium, qemu, Prometheus).

Outside CI a missing tool skips the test with the command that installs it; under CI=true
(`.ci/run` installs them first) a missing tool is a failure, so CI never skips silently.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

INSTALL_HINT = "sudo bash .ci/install-tools"


def require_tool(name: str) -> str:
    """The absolute path of executable `name`, or skip (fail under CI) when it is absent."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed; run `{INSTALL_HINT}` (Debian packages)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_module(name: str):
    """Import `name`, or skip (fail under CI) when it is not installed."""
    try:
        return __import__(name)
    except ImportError:
        message = f"python module {name} is not installed; run `make test` (it installs the [dev] extras)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


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
