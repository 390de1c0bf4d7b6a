"""The ledger's saved index (OUT/.results-index.npz): a start reads it and only the lines after it, and
falls back to every line whenever the file no longer matches it. For every line written, the index
answers as a full parse does (it also keeps what no line holds: an identity remembered for unchanged
content), it holds no text from the lines, and no file or failure of it stops the ledger."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from edgecxr.runtime.ledger import Ledger
from edgecxr.runtime.ledger_index import INDEX

UID = "1.2.826.0.1.3680043.8.498.77"


def record(i: int) -> dict:
    line = {"schema": "edgecxr.result/1", "path": f"study{i}/IMG{i:04d}.dcm", "size": 1000 + i,
            "sha256": hashlib.sha256(str(i).encode()).hexdigest(), "mtime_ns": 10 + i, "inode": 20 + i,
            "ctime_ns": 30 + i, "status": "ok" if i % 3 else "out_of_scope",
            "completed_at": "2026-12-07T10:00:00+0000"}
    if i % 2:
        line["dicom"] = {"SOPInstanceUID": f"{UID}.{i}", "PatientName": "Doe^Jane"}
    return line


def answers(ledger: Ledger, n: int) -> list:
    """What the watcher asks the ledger, for every line written and one never written."""
    out = []
    for i in [*range(n), 10_000]:
        r = record(i)
        identity = (r["size"], r["mtime_ns"], r["inode"], r["ctime_ns"])
        uid = r.get("dicom", {}).get("SOPInstanceUID")
        out.append((ledger.seen_unchanged(r["path"], identity), ledger.has_version(r["path"], r["sha256"]),
                    ledger.earlier(r["sha256"], uid)))
    return [*out, dict(ledger.counts), ledger._end]


def write(out, n: int) -> None:
    ledger = Ledger(out)
    ledger.append([record(i) for i in range(n)])
    ledger.close()


def test_a_start_from_the_saved_index_answers_as_a_full_parse(tmp_path):
    write(tmp_path, 60)
    assert (tmp_path / INDEX).is_file()
    with open(tmp_path / "results.jsonl", "a") as handle:  # lines after the index: another writer's crash tail
        for i in range(60, 75):
            handle.write(json.dumps(record(i)) + "\n")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "results.jsonl").write_bytes((tmp_path / "results.jsonl").read_bytes())
    indexed, parsed = Ledger(tmp_path), Ledger(tmp_path / "copy")  # the copy has no saved index
    assert indexed._lines == parsed._lines == 75
    assert answers(indexed, 75) == answers(parsed, 75)
    assert answers(indexed, 75)[0][:2] == (True, True) and answers(indexed, 75)[75] == (False, False, None)


def test_the_index_is_refused_when_the_lines_it_covers_changed(tmp_path):
    write(tmp_path, 30)
    results = tmp_path / "results.jsonl"
    text = results.read_text()  # a hand edit of an early line, same length: the index would miss it
    results.write_text(text.replace('"status":"ok"', '"status":"xx"', 1))
    ledger = Ledger(tmp_path)
    assert ledger.counts.get("xx") == 1
    ledger.close()
    results.write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n")  # an older, shorter backup restored
    ledger = Ledger(tmp_path)
    assert ledger._lines == text[: len(text) // 2].count("\n") and ledger.counts.get("xx") is None
    ledger.close()


def test_a_damaged_line_after_the_index_is_set_aside_with_its_line_number(tmp_path):
    write(tmp_path, 20)
    with open(tmp_path / "results.jsonl", "a") as handle:
        handle.write("{not json}\n" + json.dumps(record(20)) + "\n")
    ledger = Ledger(tmp_path)
    assert ledger.damaged_lines == [21]
    assert ledger._lines == 21 and ledger.has_version(record(20)["path"], record(20)["sha256"])
    ledger.close()


def test_a_garbage_or_foreign_index_file_is_ignored(tmp_path):
    write(tmp_path, 10)
    (tmp_path / INDEX).write_bytes(b"PK\x03\x04 not an archive")
    ledger = Ledger(tmp_path)
    assert ledger._lines == 10 and answers(ledger, 10)[0][1]
    ledger.close()


def test_the_index_holds_no_text_from_the_lines(tmp_path):
    write(tmp_path, 40)
    data = (tmp_path / INDEX).read_bytes()
    for text in (b"Doe", b"IMG0", UID.encode(), b"study", record(1)["sha256"].encode()):
        assert text not in data


def test_the_keys_are_the_same_in_another_process(tmp_path):
    """Python salts str hashes per process; the saved keys must not depend on that."""
    write(tmp_path, 12)
    r = record(5)
    code = ("import sys; from edgecxr.runtime.ledger import Ledger; l = Ledger(sys.argv[1]); "
            f"print(l.has_version({r['path']!r}, {r['sha256']!r}), l._unsaved)")
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                              env={"PYTHONHASHSEED": seed}, check=True)
        assert done.stdout.split() == ["True", "0"]  # found through the saved index, nothing re-parsed


def test_an_error_line_without_a_sha256_does_not_stop_the_index(tmp_path):
    """A file refused before it was hashed (too large, vanished) has sha256 "": the index is still saved."""
    ledger = Ledger(tmp_path)
    ledger.append([record(i) for i in range(5)] + [{**record(5), "sha256": "", "status": "error"}])
    ledger.close()
    assert ledger.index_saved is True
    again = Ledger(tmp_path)
    assert again._unsaved == 0 and again.recorded(record(5)["path"]) == ("", "error")
    again.close()


def test_the_index_is_saved_every_so_many_lines_and_a_failed_save_waits_as_long(tmp_path, monkeypatch):
    import edgecxr.runtime.ledger as ledger_module

    monkeypatch.setattr(ledger_module, "SAVE_INDEX_EVERY", 10)
    ledger = Ledger(tmp_path)
    ledger.append([record(i) for i in range(12)])
    assert ledger.index_saved is True and ledger._unsaved == 0
    (tmp_path / f"{INDEX}.tmp").mkdir()  # the next save cannot write its temporary file
    ledger.append([record(i) for i in range(12, 24)])
    assert ledger.index_saved is False and ledger._unsaved == 0  # not retried at every append
    ledger.append([record(24)])
    assert ledger._unsaved == 1 and ledger.has_version(record(24)["path"], record(24)["sha256"])
    ledger.close()
    assert ledger.index_saved is False
    again = Ledger(tmp_path)  # the index of the first 12 lines, then the other 13 parsed
    assert again._lines == 25 and answers(again, 25)[:25] == [(True, True, answers(again, 25)[i][2]) for i in range(25)]
    again.close()


def test_many_statuses_and_a_crafted_index_never_stop_the_ledger(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append([{**record(i), "status": f"odd-{i}"} for i in range(300)])  # a foreign writer's statuses
    ledger.close()
    assert ledger.index_saved is True and Ledger(tmp_path).counts["odd-299"] == 1
    import numpy as np

    with np.load(tmp_path / INDEX) as saved:
        arrays = dict(saved)
    arrays["meta"] = np.frombuffer(b"[1]", np.uint8)
    with open(tmp_path / INDEX, "wb") as handle:
        np.savez(handle, **arrays)
    assert Ledger(tmp_path)._lines == 300


def test_judged_images_older_than_the_duplicate_window_are_dropped_as_a_full_parse_drops_them(tmp_path, monkeypatch):
    import edgecxr.runtime.ledger as ledger_module

    old = [{**record(i), "completed_at": "2020-01-01T10:00:00+0000"} for i in range(6)]
    ledger = Ledger(tmp_path)
    ledger.append(old)
    ledger.close()  # saved today, with today's mark
    later = ledger_module._today() + ledger_module.DUPLICATE_DAYS + 5
    monkeypatch.setattr(ledger_module, "_today", lambda: later)
    (tmp_path / "copy").mkdir(exist_ok=True)
    (tmp_path / "copy" / "results.jsonl").write_bytes((tmp_path / "results.jsonl").read_bytes())
    assert Ledger(tmp_path).judged == {} and Ledger(tmp_path / "copy").judged == {}
    monkeypatch.undo()
    assert len(Ledger(tmp_path).judged) == 9  # within the window by the marks: kept (earlier() checks the date)
