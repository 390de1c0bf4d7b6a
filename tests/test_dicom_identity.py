"""edgecxr's Implementation Class UID and Version Name, as real peers (dcmtk) and real files show them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from edgecxr.dicomnet.identity import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    UID_ROOT,
    implementation_version_name,
)
from tests.dicom_net import SAMPLES, run_dcmtk, start_listener
from tests.orthanc import free_port
from tests.storescp import StoreSCP
from tests.tools import require_module

pydicom = require_module("pydicom")
require_module("pynetdicom")


def test_identity_is_a_valid_uid_under_the_stated_root():
    assert IMPLEMENTATION_CLASS_UID.startswith(UID_ROOT + ".") and UID_ROOT.startswith("2.25.")
    assert re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*", IMPLEMENTATION_CLASS_UID)
    assert len(IMPLEMENTATION_CLASS_UID) <= 64
    assert IMPLEMENTATION_VERSION_NAME.startswith("EDGECXR_") and len(IMPLEMENTATION_VERSION_NAME) <= 16
    assert implementation_version_name("1.2.3.dev45+g0123abc") == "EDGECXR_1.2.3.de"  # cut to 16, no '+'
    assert implementation_version_name("0.1.0+local") == "EDGECXR_0.1.0_lo"


def meta_of(path: Path):
    return pydicom.dcmread(path, stop_before_pixels=True).file_meta


def test_sent_sr_carries_our_identity_in_its_meta_and_on_the_association(tmp_path):
    require_module("onnxruntime")
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    for path in SAMPLES[:1]:
        shutil.copyfile(path, inbox / path.name)
    nobody = f"PACS@127.0.0.1:{free_port()}"  # nothing listens: the SR stays in pending/, where we can read it
    result = CliRunner().invoke(app(), ["watch", str(inbox), "--once", "--settle-seconds", "0", "--backend",
                                        "onnxruntime", "--out", str(out), "--send-sr", nobody, "--send-sc"])
    assert result.exit_code == 0, result.output
    pending = sorted((out / "outbox").glob("*/pending/*.dcm"))
    assert len(pending) == 2  # SR and SC
    for path in pending:
        meta = meta_of(path)
        assert (meta.ImplementationClassUID, meta.ImplementationVersionName) == (
            IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)

    from edgecxr.dicomnet.destination import parse_destination
    from edgecxr.dicomnet.sender import SENT, SendOptions, store

    scp = StoreSCP(tmp_path / "storescp").start()
    try:
        outcomes = store(parse_destination(scp.destination), pending, SendOptions(timeout_s=10))
    finally:
        scp.stop()
    assert [o.result for o in outcomes] == [SENT, SENT], outcomes
    log = scp.log()
    assert re.search(rf"Their Implementation Class UID:\s+{re.escape(IMPLEMENTATION_CLASS_UID)}\s", log), log[-3000:]
    assert re.search(rf"Their Implementation Version Name:\s+{re.escape(IMPLEMENTATION_VERSION_NAME)}\s", log)


def test_listener_announces_our_identity_and_writes_it_into_received_files(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    listener, port, _lines = start_listener(inbox)
    try:
        echo = run_dcmtk("echoscu", "-d", "-aec", "EDGECXR", "127.0.0.1", str(port))
        sent = run_dcmtk("storescu", "-aec", "EDGECXR", "127.0.0.1", str(port), str(SAMPLES[0]))
    finally:
        listener.stop()
    assert echo.returncode == 0, echo.stderr
    log = echo.stdout + echo.stderr
    assert re.search(rf"Their Implementation Class UID:\s+{re.escape(IMPLEMENTATION_CLASS_UID)}\s", log), log
    assert re.search(rf"Their Implementation Version Name:\s+{re.escape(IMPLEMENTATION_VERSION_NAME)}\s", log)
    assert sent.returncode == 0, sent.stderr
    received = sorted(inbox.rglob("*.dcm"))
    assert len(received) == 1
    dump = run_dcmtk("dcmdump", "-M", str(received[0])).stdout
    assert f"(0002,0012) UI [{IMPLEMENTATION_CLASS_UID}]" in dump, dump
    assert f"(0002,0013) SH [{IMPLEMENTATION_VERSION_NAME}]" in dump, dump
    assert "(0002,0016) AE [STORESCU]" in dump  # the sender is still named as the source


def app():
    from edgecxr.cli.app import app as typer_app

    return typer_app
