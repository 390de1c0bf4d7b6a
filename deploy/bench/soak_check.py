"""The soak benchmark's end checks: 0 lost, 0 duplicated, one SR per classified DICOM in the PACS."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def _lines(results: Path) -> list[dict]:
    lines = []
    with open(results / "results.jsonl", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"path": f"<damaged line {number}>", "status": "damaged"})
    return lines


def _srs_by_study(pacs) -> tuple[Counter, int]:
    """Number of SR instances stored in Orthanc per StudyInstanceUID, read over its REST API."""
    ids = pacs.get("/tools/find", {"Level": "Instance", "Query": {"Modality": "SR"}})
    studies: Counter = Counter()
    for orthanc_id in ids:
        studies[pacs.get(f"/instances/{orthanc_id}/simplified-tags").get("StudyInstanceUID")] += 1
    return studies, len(ids)


def _sent_lines(results: Path) -> Counter:
    sent: Counter = Counter()
    for path in (results / "outbox").glob("*/sent.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                sent[json.loads(line).get("sop_instance_uid")] += 1
    return sent


def check(results: Path, pacs, inputs: dict) -> dict:
    lines = _lines(results)
    per_path = Counter(str(line.get("path")) for line in lines)
    status = {line.get("path"): line.get("status") for line in lines}
    lost = sorted(p for p in inputs if per_path[p] == 0)
    duplicated = sorted(p for p, n in per_path.items() if n > 1)
    unexpected = sorted(p for p in per_path if p not in inputs)
    by_kind: dict[str, Counter] = {}
    for path, expect in inputs.items():
        by_kind.setdefault(expect["kind"], Counter())[status.get(path, "missing")] += 1
    # a resend is a duplicate, a blank frame out of scope; a copy of a sample is judged like every other copy of
    # it (the gate refuses some of the bundled JPEGs), and never "error"
    expected = {"resend": {"duplicate"}, "blank": {"out_of_scope"}}
    verdicts: dict[str, set] = {}
    for p, e in inputs.items():
        if e["kind"] in ("dicom", "jpeg") and p in status:
            verdicts.setdefault(e["source"], set()).add(status[p])
    inconsistent = sorted(source for source, seen in verdicts.items() if len(seen) > 1)
    wrong_status = sorted(p for p, e in inputs.items() if p in status and (
        status[p] not in expected.get(e["kind"], {"ok", "out_of_scope"}) or e["source"] in inconsistent))
    srs, sr_total = _srs_by_study(pacs)
    ok_dicom_studies = {e["study"] for p, e in inputs.items() if e["kind"] == "dicom" and status.get(p) == "ok"}
    not_once = sorted(s for s in ok_dicom_studies if srs[s] != 1)
    sr_for_blank = sorted(e["study"] for e in inputs.values() if e["kind"] == "blank" and srs[e["study"]])
    stray_srs = sorted(s for s in srs if s not in ok_dicom_studies)
    sent = _sent_lines(results)
    failed = sum(1 for _ in (results / "outbox").glob("*/failed/*.dcm"))
    checks = {
        "inputs": len(inputs), "result_lines": len(lines), "lost": len(lost), "duplicated_lines": len(duplicated),
        "unexpected_lines": len(unexpected), "status_by_kind": {k: dict(v) for k, v in by_kind.items()},
        "wrong_status": len(wrong_status), "samples_judged_inconsistently": inconsistent,
        "samples_out_of_scope": sorted(s for s, seen in verdicts.items() if seen == {"out_of_scope"}),
        "srs_in_pacs": sr_total, "dicoms_classified_ok": len(ok_dicom_studies),
        "dicoms_without_exactly_one_sr": len(not_once), "srs_for_out_of_scope": len(sr_for_blank),
        "stray_srs": len(stray_srs), "outbox_failed": failed,
        # an SR the PACS took but whose sent line a SIGKILL cut off is sent again, same SOP Instance UID
        # (at least once on the wire; the PACS keeps one): counted, not a failure
        "sr_sent_lines_repeated": sum(n - 1 for n in sent.values() if n > 1),
        "examples": {"lost": lost[:5], "duplicated": duplicated[:5], "unexpected": unexpected[:5],
                     "wrong_status": [(p, status[p]) for p in wrong_status[:5]], "not_once": not_once[:5]},
    }
    checks["passed"] = not (lost or duplicated or unexpected or wrong_status or not_once or sr_for_blank
                            or stray_srs or failed)
    return checks
