"""The results contract: what the watcher writes into its results folder and how every reader reads it.

One place per fact, so the ledger (runtime/), the SR/SC sink (dicomnet/), the page (web/) and the
CLI never disagree:

- the file names in OUT (results.jsonl, status.json, thumbs/, maps/) and the schema names;
- a result line's statuses: "ok", "error" (the file could not be read), "out_of_scope" (the
  intended-use gate refused it) and "duplicate" (judged before, sent again);
- reading results.jsonl tolerantly (a torn last line is no result) and status.json with its
  heartbeat (when a watcher counts as stopped or hung);
- the positive class of a line, for lines written before the decision rule existed too;
- the decision rule in words, one wording for the result line, status.json, the SR and the page.

Imports only core: every layer may read results without importing the loop.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from edgecxr.core.jsonl import parse_line
from edgecxr.core.metrics import positive_class_index

RESULTS = "results.jsonl"  # OUT/results.jsonl: one line per input file version (runtime/ledger.py writes it)
STATUS = "status.json"  # OUT/status.json: the watcher's heartbeat (runtime/status.py makes it)
THUMBS = "thumbs"  # OUT/thumbs/<sha256>.png: the page's thumbnails (web/thumbs.py)
MAPS = "maps"  # OUT/maps/<sha256>.png: explanation overlays (runtime/explain_sink.py, `watch --explain`)
RESULT_SCHEMA = "edgecxr.result/1"
STATUS_SCHEMA = "edgecxr.status/1"

OK = "ok"  # classified: label, probabilities, positive_class, p_positive, decision
ERROR = "error"  # the file could not be read: error.code and error.message
OUT_OF_SCOPE = "out_of_scope"  # refused by the intended-use gate: gate.stage, gate.code, gate.reason
DUPLICATE = "duplicate"  # judged before and sent again: duplicate_of names the earlier line
STATUSES = (OK, ERROR, OUT_OF_SCOPE, DUPLICATE)
UNCERTAIN = "UNCERTAIN"  # an ok line's label when P(positive) falls in the rule's uncertain band
JUDGED = (OK, OUT_OF_SCOPE)  # lines a later copy is a duplicate of (an unreadable file may be read later)

HEARTBEAT_SECONDS = 2.0  # the watcher rewrites status.json this often, idle or busy


# -- results.jsonl ----------------------------------------------------------------------
def parse_result(raw: bytes) -> dict | None:
    """One line of results.jsonl, or None for a torn or damaged one (a line always names its file)."""
    record = parse_line(raw)
    return record if record is not None and isinstance(record.get("path"), str) else None


def iter_results(out_dir: str | Path) -> Iterator[dict]:
    """Every complete line, streamed: what a reader that looks at each result once needs, without a
    year of results in memory (the SR sink's crash recovery at start)."""
    path = Path(out_dir) / RESULTS
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for line in handle:
            record = parse_result(line)
            if record is not None:
                yield record


def read_results(out_dir: str | Path, last: int | None = None) -> list[dict]:
    """Every complete line (a torn last line, left by a crash, is not a result); with `last`, only the
    last that many, read from the end of the file so that a year of results is never loaded for them."""
    path = Path(out_dir) / RESULTS
    if not path.exists():
        return []
    data = path.read_bytes() if last is None else _tail(path, last)
    records = [r for r in map(parse_result, data.splitlines()) if r is not None]
    return records if last is None else records[-last:] if last > 0 else []


def _tail(path: Path, lines: int, block: int = 1 << 16) -> bytes:
    """At least the last `lines` + 1 lines of the file (the first may be cut: it is dropped)."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        start = end
        data = b""
        while start > 0 and data.count(b"\n") <= lines + 1:
            start = max(0, start - block)
            handle.seek(start)
            data = handle.read(end - start)
    return data if start == 0 else data[data.index(b"\n") + 1:]


# -- status.json --------------------------------------------------------------------------
def read_status(out: Path) -> dict | None:
    """The last heartbeat, or None when no watcher has written one (or it is not a heartbeat)."""
    try:
        data = json.loads((out / STATUS).read_text())
        datetime.fromisoformat(data["updated"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data


def heartbeat_age(status: dict, now: float | None = None) -> float:
    """Seconds since the watcher last wrote `status`."""
    updated = datetime.fromisoformat(status["updated"]).timestamp()
    return max(0.0, (time.time() if now is None else now) - updated)


def stale_after(status: dict) -> float:
    """Seconds without a heartbeat after which a running watcher counts as stopped or hung.

    Ten heartbeats, and never under 30 s: a chunk of large DICOMs on a slow engine may hold the
    loop for several seconds between two heartbeats.
    """
    return max(30.0, 10 * float(status.get("heartbeat_s", HEARTBEAT_SECONDS)))


def is_stale(status: dict, age: float) -> bool:
    """A watcher that says it runs but has missed its heartbeats is stopped or hung: one rule, so
    `edgecxr status`, the page and /metrics never disagree."""
    return status.get("state") == "running" and age > stale_after(status)


# -- the positive class and the decision rule ---------------------------------------------
def bundle_positive_class(manifest: dict) -> str | None:
    """The class a bundle's rule is about: its decision record's class, else the bundle's
    `positive_class`, else the one `positive_class_index` picks from its class names."""
    names = list(manifest.get("class_names") or ())
    decision = manifest.get("decision") or {}
    return (decision.get("class") or manifest.get("positive_class")
            or (names[positive_class_index(names)] if names else None))


def positive_class(record: dict, class_names: Sequence[str] = ()) -> str | None:
    """The class `p_positive` is of, for one ok result line: its own `positive_class`; for a line written
    before the decision rule existed (argmax), the class `positive_class_index` picks from the line's
    class names (`class_names` when it has no probabilities), the rule a bundle that names none uses."""
    own = record.get("positive_class")
    if own:
        return str(own)
    names = list(record.get("probabilities") or class_names)
    return names[positive_class_index(names)] if names else None


def p_positive(record: dict, class_names: Sequence[str] = ()) -> tuple[str | None, float | None]:
    """(positive class, P(positive)) of one ok result line: its own fields, or for an older line,
    the positive class's probability."""
    positive = positive_class(record, class_names)
    probs = record.get("probabilities") or {}
    p = record.get("p_positive", probs.get(positive) if positive else None)
    return positive, None if p is None else float(p)


def rule_text(positive: str | None, n_classes: int | None = None, threshold: float | None = None,
              uncertain: Sequence[float] | None = None) -> str:
    """The decision rule in one short line, as every result line, status.json, SR and page word it,
    e.g. "argmax (P(PNEUMONIA) > 0.500)" or "P(PNEUMONIA) ≥ 0.312; uncertain if 0.20 ≤ P(PNEUMONIA) < 0.45"."""
    p = f"P({positive})"
    if threshold is None:
        rule = f"argmax ({p} > 0.500)" if n_classes == 2 and positive else "argmax"
    else:
        rule = f"{p} ≥ {threshold:.3f}"
    if uncertain is not None:
        lo, hi = uncertain
        rule += f"; uncertain if {lo:.2f} ≤ {p} < {hi:.2f}"
    return rule


def decision_record_text(decision: dict, positive: str | None = None, n_classes: int | None = None) -> str:
    """A bundle's decision record (bundle.json's `decision`) in words: the description it was exported
    with, or for a record written before descriptions, worded by `rule_text`. A value that is not a
    number is shown as written rather than raising: this reads files, it does not check them."""
    description = decision.get("description")
    if isinstance(description, str) and description:
        return description
    positive = decision.get("class") or positive
    band = decision.get("uncertain")
    try:
        threshold = float(decision["threshold"]) if decision.get("rule") == "threshold" else None
    except (KeyError, TypeError, ValueError):
        return f"P({positive}) ≥ {decision.get('threshold')}"
    try:
        uncertain = (float(band[0]), float(band[1])) if band else None
    except (TypeError, ValueError, IndexError, KeyError):
        uncertain = None
    return rule_text(positive, n_classes, threshold, uncertain)


def bundle_rule_text(manifest: dict) -> str:
    """A bundle's rule in words, worded from its decision record as `DecisionRule.from_manifest(manifest)
    .describe()` words it (so the SR of an older line says what status.json and the page say), not
    echoed from the description stored at export, which an older edgecxr may have worded otherwise."""
    names = list(manifest.get("class_names") or ())
    return decision_record_text({**(manifest.get("decision") or {"rule": "argmax"}), "description": None},
                                bundle_positive_class(manifest), len(names) or None)
