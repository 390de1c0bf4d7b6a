"""Retention of the outbox's sent records and failed objects (`watch --send-keep DAYS MB`): they shrink by
age and size, and a result whose sent line was rotated away is still never sent again."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from edgecxr.dicomnet.destination import parse_destination
from edgecxr.dicomnet.outbox import DestinationBox, summary
from edgecxr.dicomnet.retention import Retention, rotate
from edgecxr.dicomnet.sink import DicomSendSink
from edgecxr.dicomnet.sr import sr_uid
from tests.dicom_net import dx_dataset
from tests.orthanc import free_port
from tests.test_dicom_delivery import MANIFEST, result_line
from tests.tools import require_module

require_module("pydicom")
require_module("highdicom")
require_module("pynetdicom")
DAY = 86400.0


def iso(seconds_ago: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago, timezone.utc).replace(microsecond=0).isoformat()


def box_with(tmp_path: Path, sent_ages: list[float]) -> DestinationBox:
    box = DestinationBox(tmp_path / "outbox", parse_destination(f"PACS@127.0.0.1:{free_port()}"))
    lines = [{"sop_instance_uid": f"2.25.{i}", "sent_at": iso(age), "status": "0x0000"}
             for i, age in enumerate(sent_ages)]
    box.sent_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return DestinationBox(tmp_path / "outbox", box.destination)  # as a restart reads it


def test_sent_lines_older_than_the_limit_move_to_sent_1_and_newer_ones_stay(tmp_path):
    box = box_with(tmp_path, [100 * DAY, 95 * DAY, 10 * DAY, 60.0])
    assert rotate(box, Retention(keep_days=90, keep_mb=50)) == 2
    assert [json.loads(line)["sop_instance_uid"] for line in box.sent_path.read_text().splitlines()] == \
        ["2.25.2", "2.25.3"]
    assert [json.loads(line)["sop_instance_uid"] for line in (box.folder / "sent.1.jsonl").read_text().splitlines()] \
        == ["2.25.0", "2.25.1"]
    assert box.sent == {"2.25.2", "2.25.3"}
    assert rotate(box, Retention(keep_days=90, keep_mb=50)) == 0  # nothing more to do
    again = DestinationBox(tmp_path / "outbox", box.destination)  # a restart: the counts stay whole
    assert again.sent == {"2.25.2", "2.25.3"} and again.sent_total == 4
    [row] = summary(tmp_path)  # edgecxr status: a counter in /metrics never goes down
    assert row["sent"] == 4


def test_a_sent_file_over_the_size_limit_loses_its_oldest_lines_but_never_the_last_hours(tmp_path):
    box = box_with(tmp_path, [5 * DAY - i for i in range(40)] + [600.0] * 20)  # about 75 bytes a line
    limit = Retention(keep_days=90, keep_mb=2000 / 1024 / 1024)  # 2,000 bytes
    removed = rotate(box, limit)
    kept = box.sent_path.read_bytes()
    assert removed > 0 and len(kept) <= 2000 * 3 // 4 + 20 * 80, len(kept)
    assert all(f'"2.25.{i}"' in kept.decode() for i in range(40, 60))  # sent within the hour: all kept
    tiny = Retention(keep_days=90, keep_mb=1 / 1024 / 1024)
    rotate(box, tiny)
    assert len(box.sent_path.read_text().splitlines()) == 20  # still the last hour's 20, over any size limit


def test_failed_objects_go_by_age_and_size(tmp_path):
    box = box_with(tmp_path, [])
    for name, age, size in [("old", 100 * DAY, 10), ("big1", 3 * DAY, 4000), ("big2", 2 * DAY, 4000),
                            ("recent", 60.0, 4000)]:
        (box.failed_dir / f"{name}.dcm").write_bytes(b"x" * size)
        (box.failed_dir / f"{name}.json").write_text('{"reason": "test"}')
        for path in (box.failed_dir / f"{name}.dcm", box.failed_dir / f"{name}.json"):
            os.utime(path, (time.time() - age, time.time() - age))
    assert rotate(box, Retention(keep_days=90, keep_mb=9000 / 1024 / 1024)) == 2  # old by age, big1 by size
    assert sorted(p.name for p in box.failed_dir.iterdir()) == ["big2.dcm", "big2.json", "recent.dcm", "recent.json"]


def test_a_result_whose_sent_line_was_rotated_is_not_sent_again_after_a_restart(tmp_path):
    """The inputs stay in the inbox (no --archive): crash recovery looks at their results on every start."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    records = []
    for i in range(3):
        dx_dataset(inbox / f"img{i}.dcm", seed=i)
        records.append({**result_line(inbox, f"img{i}.dcm"), "completed_at": iso(100 * DAY)})
    (out / "outbox").mkdir(parents=True)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    since = {"results_line": 0, "after": None, "created": iso(101 * DAY)}  # sending began before them
    (out / "outbox" / "since.json").write_text(json.dumps(since))
    dest = parse_destination(f"PACS@127.0.0.1:{free_port()}")  # nothing listens: nothing may be sent anyway
    box = DestinationBox(out / "outbox", dest)
    uids = [sr_uid(r["dicom"]["SOPInstanceUID"], MANIFEST["checksum"]) for r in records]
    box.sent_path.write_text("".join(json.dumps({"sop_instance_uid": u, "sent_at": iso(99 * DAY)}) + "\n"
                                     for u in uids))
    logs: list[str] = []
    for _start in range(2):  # the first start rotates the lines away, the second must not re-queue them
        sink = DicomSendSink(out, inbox, [dest], MANIFEST, log=logs.append, drain_seconds=0)
        try:
            assert sink.outbox.queued() == [] and sink.outbox.boxes[0].pending() == [], logs
        finally:
            sink.close()
    assert not box.sent_path.read_text()
    assert len((box.folder / "sent.1.jsonl").read_text().splitlines()) == 3
    assert any("outbox retention (90 days, 50 MB)" in m and "3 record(s) removed" in m for m in logs), logs
    assert json.loads((out / "outbox" / "since.json").read_text())["recover_after"] > iso(2 * 3600)
