"""`watch --send-commit` against a real Orthanc: an object counts as delivered only once the PACS commits
it (Storage Commitment push model; Orthanc answers by N-EVENT-REPORT on an association it opens to us)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgecxr.dicomnet.commit_outbox import CommitOptions
from edgecxr.dicomnet.commitment import CommitmentReceiver
from edgecxr.dicomnet.destination import parse_destination
from edgecxr.dicomnet.outbox import DestinationBox, summary
from edgecxr.dicomnet.sender import SendOptions
from edgecxr.dicomnet.sink import DicomSendSink
from edgecxr.dicomnet.sr import sr_uid
from tests.dicom_net import dx_dataset
from tests.orthanc import Orthanc, free_port
from tests.test_dicom_audit import kind as audit_kind
from tests.test_dicom_audit import messages as audit_messages
from tests.test_dicom_delivery import MANIFEST, result_line, srs_in
from tests.tools import require_module, wait_for

require_module("pydicom")
require_module("highdicom")
require_module("pynetdicom")


def reporting_pacs(folder: Path, port: int) -> Orthanc:
    """Orthanc that knows EDGECXR at 127.0.0.1:`port`: it takes our C-STOREs and sends commitment results there."""
    pacs = Orthanc(folder)
    config = json.loads(pacs.config.read_text())
    config["DicomModalities"] = {"edgecxr": {"AET": "EDGECXR", "Host": "127.0.0.1", "Port": port}}
    pacs.config.write_text(json.dumps(config))
    return pacs


@pytest.fixture
def receiver():
    listening = CommitmentReceiver("EDGECXR", host="127.0.0.1")
    yield listening
    listening.stop()


def options(receiver: CommitmentReceiver, wait_s: float = 10.0, max_requests: int = 3) -> SendOptions:
    return SendOptions(first_retry_s=0.2, max_retry_s=0.5, timeout_s=10,
                       commit=CommitOptions(receiver, wait_s=wait_s, max_requests=max_requests))


def burst(inbox: Path, count: int) -> list[dict]:
    """`count` fresh DX inputs in the inbox and the result lines the watcher would write for them."""
    inbox.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        dx_dataset(inbox / f"img{i:03d}.dcm", seed=i)
    return [result_line(inbox, f"img{i:03d}.dcm") for i in range(count)]


def sent_lines(box: DestinationBox) -> list[dict]:
    return [json.loads(line) for line in box.sent_path.read_text().splitlines()]


def expected(records: list[dict]) -> list[str]:
    return sorted(sr_uid(r["dicom"]["SOPInstanceUID"], MANIFEST["checksum"]) for r in records)


def test_a_burst_is_sent_committed_and_listed_as_committed(tmp_path, receiver):
    pacs = reporting_pacs(tmp_path / "orthanc", receiver.port).start()
    records = burst(tmp_path / "inbox", 10)
    sink = DicomSendSink(tmp_path / "out", tmp_path / "inbox", [parse_destination(pacs.destination)], MANIFEST,
                         options=options(receiver), log=print)
    box = sink.outbox.boxes[0]
    try:
        for record in records:
            sink.accept(record, None, tmp_path / "inbox" / record["path"])
        done = wait_for(lambda: sink.status()["destinations"][0]["committed"] == 10, 90, poll=0.2)
        row = sink.status()["destinations"][0]
        assert done, row
        assert srs_in(pacs) == expected(records)
    finally:
        sink.close()
        pacs.discard()
    assert row["sent"] == 10 and row["awaiting_commitment"] == 0 and row["pending"] == 0 and row["failed"] == 0
    lines = sent_lines(box)
    assert sorted(line["sop_instance_uid"] for line in lines) == expected(records)
    assert all(line["committed_at"] and line["transaction_uid"].startswith("2.25.") and line["status"] == "0x0000"
               for line in lines), lines
    [listed] = summary(tmp_path / "out")  # what `edgecxr status --json` prints under "outbox"
    assert (listed["sent"], listed["committed"], listed["awaiting_commitment"]) == (10, 10, 0)


def test_a_commitment_never_answered_ends_in_failed_with_the_reason(tmp_path, receiver):
    pacs = reporting_pacs(tmp_path / "orthanc", free_port()).start()  # results go where nobody listens
    records = burst(tmp_path / "inbox", 1)
    sink = DicomSendSink(tmp_path / "out", tmp_path / "inbox", [parse_destination(pacs.destination)], MANIFEST,
                         options=options(receiver, wait_s=2, max_requests=2), log=print)
    box = sink.outbox.boxes[0]
    try:
        sink.accept(records[0], None, tmp_path / "inbox" / records[0]["path"])
        assert wait_for(lambda: list(box.failed_dir.glob("*.json")), 60, poll=0.2), sink.status()
        assert srs_in(pacs) == expected(records)  # stored, but not committed: not delivered
        row = sink.status()["destinations"][0]
    finally:
        sink.close()
        pacs.discard()
    [reason] = [json.loads(p.read_text())["reason"] for p in box.failed_dir.glob("*.json")]
    assert "sent no storage commitment result within 2 s" in reason and "asked 2 time(s)" in reason, reason
    assert (row["sent"], row["committed"], row["failed"], row["awaiting_commitment"]) == (0, 0, 1, 0)
    assert not box.sent_path.exists() or not box.sent_path.read_text()


def test_a_commitment_the_pacs_refuses_ends_in_failed_with_its_reason(tmp_path, receiver):
    """An object stored, then lost by the PACS (restored from an older backup) before it committed: after
    our restart it still awaits commitment, and the PACS answers "no such object instance"."""
    pacs = reporting_pacs(tmp_path / "orthanc", receiver.port).start()
    dest = parse_destination(pacs.destination)
    box = DestinationBox(tmp_path / "out" / "outbox", dest)
    ds = dx_dataset(tmp_path / "lost.dcm")
    shutil.copyfile(tmp_path / "lost.dcm", box.awaiting_dir / f"{ds.SOPInstanceUID}.dcm")
    (tmp_path / "inbox").mkdir()
    sink = DicomSendSink(tmp_path / "out", tmp_path / "inbox", [dest], MANIFEST, options=options(receiver),
                         log=print)
    try:
        assert wait_for(lambda: list(box.failed_dir.glob("*.json")), 60, poll=0.2), sink.status()
    finally:
        sink.close()
        pacs.discard()
    reason = json.loads((box.failed_dir / f"{ds.SOPInstanceUID}.json").read_text())["reason"]
    assert reason == f"{dest}: PACS did not commit: no such object instance (0x0112)"
    assert (box.failed_dir / f"{ds.SOPInstanceUID}.dcm").exists()  # kept for `edgecxr outbox retry`
    assert list(box.awaiting_dir.iterdir()) == []


def test_orthanc_restarted_mid_burst_loses_and_duplicates_nothing(tmp_path, receiver):
    pacs = reporting_pacs(tmp_path / "orthanc", receiver.port).start()
    records = burst(tmp_path / "inbox", 16)
    logs: list[str] = []
    sink = DicomSendSink(tmp_path / "out", tmp_path / "inbox", [parse_destination(pacs.destination)], MANIFEST,
                         options=options(receiver, wait_s=5), log=logs.append)
    box = sink.outbox.boxes[0]
    try:
        for record in records[:8]:
            sink.accept(record, None, tmp_path / "inbox" / record["path"])
        assert wait_for(lambda: box.committed >= 1, 60, poll=0.05), sink.status()
        pacs.stop()  # mid-burst: some committed, some stored or awaiting, the rest not yet sent or built
        before = box.committed
        for record in records[8:]:
            sink.accept(record, None, tmp_path / "inbox" / record["path"])
        assert wait_for(lambda: any("cannot deliver" in m for m in logs), 30, poll=0.2), logs
        pacs.start()
        done = wait_for(lambda: box.committed == 16, 150, poll=0.2)
        row = sink.status()["destinations"][0]
        assert done, (row, logs)
        stored = srs_in(pacs)
    finally:
        sink.close()
        pacs.discard()
    assert before < 16
    assert stored == expected(records)  # every one, each once
    lines = sent_lines(box)
    assert sorted(line["sop_instance_uid"] for line in lines) == expected(records)  # one line each
    assert all(line.get("committed_at") for line in lines)
    assert (row["failed"], row["pending"], row["awaiting_commitment"]) == (0, 0, 0)


def test_objects_awaiting_commitment_survive_our_restart_and_are_committed_once(tmp_path, receiver):
    port = free_port()
    pacs = reporting_pacs(tmp_path / "orthanc", port).start()  # first, nobody listens at `port`
    records = burst(tmp_path / "inbox", 3)
    dest = parse_destination(pacs.destination)
    first = DicomSendSink(tmp_path / "out", tmp_path / "inbox", [dest], MANIFEST,
                          options=options(receiver, wait_s=1, max_requests=50), log=print)
    box = first.outbox.boxes[0]
    try:
        for record in records:
            first.accept(record, None, tmp_path / "inbox" / record["path"])
        assert wait_for(lambda: len(box.awaiting()) == 3, 60, poll=0.2), first.status()
    finally:
        first.close()
    try:
        assert sorted(p.stem for p in box.awaiting()) == expected(records)  # durable: on disk, with its .json
        assert all(json.loads(p.with_suffix(".json").read_text())["status"] == "0x0000" for p in box.awaiting())
        listening = CommitmentReceiver("EDGECXR", host="127.0.0.1", port=port)  # the watcher starts again
        again = DicomSendSink(tmp_path / "out", tmp_path / "inbox", [dest], MANIFEST,
                              options=options(listening), log=print)
        try:
            for record in records:  # the watcher hands the same results again: nothing is queued twice
                again.accept(record, None, tmp_path / "inbox" / record["path"])
            assert again.outbox.queued() == []
            assert wait_for(lambda: again.outbox.boxes[0].committed == 3, 60, poll=0.2), again.status()
        finally:
            again.close()
        assert srs_in(pacs) == expected(records)
    finally:
        pacs.discard()
    assert sorted(line["sop_instance_uid"] for line in sent_lines(box)) == expected(records)


def test_watch_send_commit_end_to_end_and_edgecxr_status_lists_the_committed(tmp_path):
    from typer.testing import CliRunner

    from edgecxr.cli.app import app
    from tests.test_dicom_delivery import SAMPLES

    require_module("onnxruntime")
    port = free_port()
    pacs = reporting_pacs(tmp_path / "orthanc", port).start()
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    for path in sorted(SAMPLES.glob("*.dcm")):
        shutil.copyfile(path, inbox / path.name)
    try:
        result = CliRunner().invoke(app, [
            "watch", str(inbox), "--once", "--settle-seconds", "0", "--backend", "onnxruntime", "--out", str(out),
            "--send-sr", pacs.destination, "--send-commit", "--send-commit-listen", f"127.0.0.1:{port}",
            "--send-commit-wait", "10", "--send-echo-interval", "0", "--audit-log", str(tmp_path / "audit.log")])
        assert result.exit_code == 0, result.output
        stored = srs_in(pacs)
    finally:
        pacs.discard()
    trail = audit_messages(tmp_path / "audit.log")
    committed = [doc for doc in trail if audit_kind(doc) == ("110104", "COMMITTED", "0")]
    assert len(committed) >= 1  # the PACS's commitment answer is in the trail, valid against the schema
    assert sum(len(doc.findall("ParticipantObjectIdentification/ParticipantObjectDescription/SOPClass/Instance"))
               for doc in committed) == 3
    status = CliRunner().invoke(app, ["status", str(out)])
    assert f"PACS {pacs.destination}: pending 0, sent 3, failed 0 (committed 3, stored awaiting commitment 0)" \
        in status.output, status.output
    [row] = json.loads(CliRunner().invoke(app, ["status", str(out), "--json"]).output)["outbox"]
    assert (row["committed"], row["awaiting_commitment"]) == (3, 0) and len(stored) == 3


def test_send_commit_without_send_sr_is_refused_in_words(tmp_path):
    from typer.testing import CliRunner

    from edgecxr.cli.app import app

    require_module("onnxruntime")
    (tmp_path / "inbox").mkdir()
    result = CliRunner().invoke(app, ["watch", str(tmp_path / "inbox"), "--once", "--backend", "onnxruntime",
                                      "--send-commit"])
    assert result.exit_code != 0
    assert "--send-commit needs --send-sr AET@HOST:PORT" in result.output, result.output
