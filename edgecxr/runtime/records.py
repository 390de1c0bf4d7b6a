"""The lines of `results.jsonl`: one per input file version, classified or refused (its only writer;
the names and the statuses are core.results', which every reader uses).

A line names the file (relative path, size, sha256, mtime, inode, ctime: what the ledger needs
to know the same file again), the engine that judged it, and either the label with its
probabilities and timings or the refusal's code and message. DICOM identifiers travel;
patient data never does.
"""

from __future__ import annotations

from edgecxr.core.provenance import utc_now
from edgecxr.core.results import DUPLICATE, ERROR, OK, OUT_OF_SCOPE, RESULT_SCHEMA
from edgecxr.runtime.prepare import Prepared
from edgecxr.runtime.scanner import Entry
from edgecxr.runtime.status import iso
from edgecxr.scope.verdict import Refusal


def base_record(classifier, entry: Entry, item: Prepared, *, status: str) -> dict:
    artifact = classifier.artifact
    record = {
        "schema": RESULT_SCHEMA, "path": entry.rel, "size": item.size, "sha256": item.sha256,
        "mtime_ns": entry.mtime_ns, "inode": entry.inode, "ctime_ns": entry.ctime_ns, "status": status,
        "bundle": classifier.bundle.name, "bundle_checksum": classifier.bundle.checksum,
        "backend": artifact.backend, "precision": artifact.precision, "artifact": artifact.name,
        "modified_at": iso(entry.mtime_ns / 1e9), "completed_at": utc_now(),
    }
    if item.meta:
        record["dicom"] = item.meta
    return record


def refusal_record(classifier, entry: Entry, item: Prepared) -> dict:
    error = item.error
    if error is None:
        raise ValueError(f"{entry.rel} has no refusal to record")  # a caller's bug, not an input's
    record = base_record(classifier, entry, item, status=ERROR)
    record["error"] = {"code": error.code, "message": str(error)}
    return record


def duplicate_record(classifier, entry: Entry, item: Prepared, earlier: dict) -> dict:
    """An image judged before (same SOP Instance UID, or the same bytes) that came again: not judged
    twice, and never sent again (sinks send "ok" lines only). `duplicate_of` names the earlier line."""
    record = base_record(classifier, entry, item, status=DUPLICATE)
    record["duplicate_of"] = earlier
    return record


def out_of_scope_record(classifier, entry: Entry, item: Prepared, refusal: Refusal) -> dict:
    """An image the intended-use gate refused: the stage, the reason in words, the score and
    threshold where the stage has them; no label and no probabilities, so no sink can show one."""
    record = base_record(classifier, entry, item, status=OUT_OF_SCOPE)
    record["gate"] = refusal.to_record()
    if item.flags:
        record["flags"] = [flag.to_record() for flag in item.flags]
    return record


def classified_record(classifier, entry: Entry, item: Prepared, probs, infer_ms: float, batch_size: int,
                      gate_score: float | None = None) -> dict:
    record = base_record(classifier, entry, item, status=OK)
    record.update(classifier.result_fields(probs))  # label (or UNCERTAIN), p_positive, the decision rule
    record["probabilities"] = {n: round(float(v), 6) for n, v in zip(classifier.class_names, probs)}
    record["timings_ms"] = {"decode": round(item.decode_ms, 2), "preprocess": round(item.preprocess_ms, 2),
                            "inference": round(infer_ms / batch_size, 2), "batch_inference": round(infer_ms, 2),
                            "batch_size": batch_size}
    if gate_score is not None:  # how unusual the image looked to the learned stage (lower: more typical)
        record["gate"] = {"score": round(float(gate_score), 6), "threshold": round(float(classifier.gate.threshold), 6)}
    if item.flags:
        record["flags"] = [flag.to_record() for flag in item.flags]
    return record
