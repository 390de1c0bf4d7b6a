from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
MINI = HERE / "data" / "kermany-mini"

# Nothing may reach a model hub from the tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def mini() -> Path:
    return MINI


@pytest.fixture(scope="session")
def mini_test_images(mini) -> list[Path]:
    return sorted((mini / "test").rglob("*.jpeg"))
