from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tools import require_module

HERE = Path(__file__).parent
MINI = HERE / "data" / "kermany-mini"

# Nothing may reach a model hub from the tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# pytest-xdist's workers (make test runs two) set COLUMNS=80; without it the CLI writes to a pipe at
# 160 columns, the width the tests' assertions on its tables and messages are written for
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)

# A worker that dies of a fatal signal (a crash in native code) writes its Python stack to a file of
# its own: xdist does not forward a worker's stderr, so pytest's own faulthandler dump would be lost.
# The controller names a folder for its run (workers inherit it through the environment, so two runs
# in one checkout keep apart) and prints any dump at the end, beside xdist's "worker gwN crashed while
# running <test>" (make test runs with --max-worker-restart=0).
CRASH_DUMPS = Path(__file__).parents[1] / ".pytest_cache" / "crash-dumps"
DUMPS_ENV = "EDGECXR_TEST_CRASH_DUMPS"


def pytest_sessionstart(session):
    worker, folder = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get(DUMPS_ENV)
    if worker and folder:
        import faulthandler

        session.config._crash_dump = open(Path(folder) / f"{worker}.log", "w")  # noqa: SIM115 (open until exit)
        faulthandler.enable(session.config._crash_dump, all_threads=True)
    elif not worker:  # the controller, before xdist starts its workers (its hook runs last)
        folder = CRASH_DUMPS / f"run-{os.getpid()}"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[DUMPS_ENV] = str(folder)


def pytest_terminal_summary(terminalreporter):
    folder = os.environ.get(DUMPS_ENV)
    if os.environ.get("PYTEST_XDIST_WORKER") or not folder or not Path(folder).is_dir():
        return
    crashed = False
    for dump in sorted(Path(folder).glob("*.log")):
        text = dump.read_text(errors="replace").strip()
        if text:
            crashed = True
            terminalreporter.section(f"worker {dump.stem} died of a fatal signal: its Python stack", red=True)
            terminalreporter.write_line(text)
    if not crashed:  # nothing to keep: the folder goes
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def dicom_inbox(tmp_path) -> Path:
    """An empty inbox for the DICOM listener tests (which need pynetdicom)."""
    from tests.tools import require_module

    require_module("pynetdicom")
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def inbox(tmp_path) -> Path:
    """An inbox holding copies of the bundled sample DICOMs (real DX files, fake patient data)."""
    import shutil

    samples = Path(__file__).parents[1] / "edgecxr" / "samples" / "chest-xrays"
    folder = tmp_path / "inbox"
    folder.mkdir()
    for path in sorted(samples.glob("*.dcm")):
        shutil.copyfile(path, folder / path.name)
    return folder


@pytest.fixture
def pacs(tmp_path):
    """A real PACS (Orthanc on loopback, its own storage under tmp_path); call .start() in the test."""
    from tests.orthanc import Orthanc

    server = Orthanc(tmp_path / "orthanc")
    yield server
    server.discard()  # its storage goes with tmp_path: no graceful stop to wait for


@pytest.fixture(autouse=True, scope="session")
def _own_qualification_dir(tmp_path_factory):
    """Engine choice in tests reads this session's parity verdicts, never the developer's own."""
    os.environ["EDGECXR_QUALIFICATION_DIR"] = str(tmp_path_factory.mktemp("qualification"))


@pytest.fixture(scope="session")
def mini() -> Path:
    return MINI


@pytest.fixture(scope="session")
def mini_test_images(mini) -> list[Path]:
    return sorted((mini / "test").rglob("*.jpeg"))


@pytest.fixture(scope="session")
def trained_run(mini, tmp_path_factory):
    """A tiny Swin-V2 (0.2 M parameters, 64 px) fine-tuned one epoch on the sample: big enough
    that INT8 weights outweigh the quantization metadata."""
    require_module("torch")
    from typer.testing import CliRunner

    from edgecxr.cli.app import app
    from tests.helpers import tiny_swinv2_checkpoint

    base = tiny_swinv2_checkpoint(tmp_path_factory.mktemp("base") / "base", embed_dim=48, depths=(2, 2),
                                  num_heads=(2, 4))
    out = tmp_path_factory.mktemp("exp") / "tiny"
    args = ["train", mini, "--out", out, "--epochs", 1, "--base", base, "--lr", 1e-4, "--batch-size", 8,
            "--workers", 0, "--val-fraction", 0.25]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def bundle_dir(trained_run, mini, tmp_path_factory):
    """The tiny model exported with --int8 (calibrated on the sample's train split)."""
    require_module("onnx")
    from typer.testing import CliRunner

    from edgecxr.cli.app import app

    out = tmp_path_factory.mktemp("bundles") / "tiny-bundle"
    args = ["export", trained_run, "--out", out, "--int8", "--calib-data", mini / "train", "--calib-size", 10,
            "--calib-candidates", 1,
            "--targets", "onnxruntime,openvino,tensorrt"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def onnx_bundle(trained_run, tmp_path_factory):
    """The tiny model exported for ONNX Runtime FP32 only, without the gate, at the operating point
    sensitivity=0.9 (with its fitted temperature): the decision and temperature tests read it. Read
    only: a test that changes a bundle copies it first."""
    require_module("onnx")
    require_module("onnxruntime")
    from typer.testing import CliRunner

    from edgecxr.cli.app import app

    out = tmp_path_factory.mktemp("bundles") / "onnx-fp32"
    args = ["export", trained_run, "--out", out, "--targets", "onnxruntime", "--no-gate",
            "--operating-point", "sensitivity=0.9"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return out
