"""Storage Commitment SCU against a real Orthanc (its SCP answers by N-EVENT-REPORT on its own association)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecxr.dicomnet.commitment import CommitmentReceiver, commit
from edgecxr.dicomnet.destination import parse_destination
from tests.dicom_net import dx_dataset
from tests.orthanc import Orthanc, free_port
from tests.tools import require_module

pydicom = require_module("pydicom")
require_module("pynetdicom")
DX = "1.2.840.10008.5.1.4.1.1.1.1"


def orthanc_reporting_to(folder: Path, port: int) -> Orthanc:
    """Orthanc that knows EDGECXR at 127.0.0.1:`port`, where it sends commitment results."""
    pacs = Orthanc(folder)
    config = json.loads(pacs.config.read_text())
    config["DicomModalities"] = {"edgecxr": {"AET": "EDGECXR", "Host": "127.0.0.1", "Port": port}}
    pacs.config.write_text(json.dumps(config))
    return pacs.start()


@pytest.fixture
def receiver():
    listening = CommitmentReceiver("EDGECXR", host="127.0.0.1")
    yield listening
    listening.stop()


def stored_instance(pacs: Orthanc, tmp_path: Path) -> tuple[str, str]:
    from edgecxr.dicomnet.sender import SENT, SendOptions, store

    ds = dx_dataset(tmp_path / "fresh.dcm")  # fresh UIDs: a new instance in this PACS
    [outcome] = store(parse_destination(pacs.destination), [tmp_path / "fresh.dcm"], SendOptions(timeout_s=10))
    assert outcome.result == SENT, outcome
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def test_stored_instances_are_committed_and_unknown_ones_fail_with_the_reason(tmp_path, receiver):
    pacs = orthanc_reporting_to(tmp_path / "orthanc", receiver.port)
    try:
        stored = stored_instance(pacs, tmp_path)
        missing = (DX, pydicom.uid.generate_uid())
        result = commit(parse_destination(pacs.destination), [stored, missing], receiver, calling_ae="EDGECXR",
                        wait_s=30)
    finally:
        pacs.discard()
    assert result.error is None, result
    assert result.committed == [stored[1]]
    assert result.failed == {missing[1]: "PACS did not commit: no such object instance (0x0112)"}


def test_a_pacs_that_never_answers_leaves_the_objects_uncommitted(tmp_path, receiver):
    pacs = orthanc_reporting_to(tmp_path / "orthanc", free_port())  # reports go to a port nobody listens on
    try:
        stored = stored_instance(pacs, tmp_path)
        result = commit(parse_destination(pacs.destination), [stored], receiver, calling_ae="EDGECXR", wait_s=3)
    finally:
        pacs.discard()
    assert result.committed == [] and result.failed == {}
    assert "sent no storage commitment result within 3 s" in result.error


def test_a_refused_request_says_why(tmp_path, receiver):
    pacs = orthanc_reporting_to(tmp_path / "orthanc", receiver.port)
    try:
        stored = stored_instance(pacs, tmp_path)
        wrong = parse_destination(f"NOTORTHANC@127.0.0.1:{pacs.dicom_port}")
        result = commit(wrong, [stored], receiver, calling_ae="EDGECXR", wait_s=3)
    finally:
        pacs.discard()
    # pynetdicom sometimes loses the A-ASSOCIATE-RJ when Orthanc closes right after it: either words will do
    assert result.committed == [] and ("rejected the association" in result.error or
                                       "accepted the connection, then closed" in result.error), result.error
    assert "NOTORTHANC" in result.error


def test_results_nobody_waits_for_are_kept_only_up_to_a_bound(receiver):
    """Late reports (a request given up on, or one from before a restart) must not pile up for ever."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, build_role

    from edgecxr.dicomnet.commitment import PUSH_MODEL, PUSH_MODEL_INSTANCE, UNCLAIMED

    ae = AE(ae_title="ORTHANC")
    ae.add_requested_context(PUSH_MODEL)
    role = build_role(PUSH_MODEL, scp_role=True)  # the PACS sends the N-EVENT-REPORT: it asks for the SCP role
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="EDGECXR", ext_neg=[role])
    assert assoc.is_established
    try:
        for i in range(UNCLAIMED + 20):
            ds = Dataset()
            ds.TransactionUID = f"2.25.{i + 1}"
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = DX, f"2.25.9{i}"
            ds.ReferencedSOPSequence = [item]
            status, _ = assoc.send_n_event_report(ds, 1, PUSH_MODEL, PUSH_MODEL_INSTANCE)
            assert status.Status == 0
    finally:
        assoc.release()
    assert len(receiver._results) == UNCLAIMED
    assert receiver.wait("2.25.1", 0) is None  # the oldest went
    assert receiver.wait(f"2.25.{UNCLAIMED + 20}", 0).committed == [f"2.25.9{UNCLAIMED + 19}"]
