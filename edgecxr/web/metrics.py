"""`GET /metrics`: status.json in Prometheus' text exposition format (version 0.0.4).

It reads only the heartbeat the watcher writes (counters, the drift monitor's figures under
"drift", the PACS sender's counts under "sending"), never an engine, so one box or a fleet is
watched by an existing Prometheus and Grafana. Names follow Prometheus' naming practice: an
`edgecxr_` prefix, base units (seconds, ratios 0-1), `_total` on counters. Label values are a
small closed set (reason codes, labels, PACS destinations): never a file name or a patient.
"""

from __future__ import annotations

import math
from datetime import datetime

from edgecxr.core.results import heartbeat_age, is_stale

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Exposition:
    """Metric families in order, each with HELP and TYPE once, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples) -> None:
        """`samples`: (labels dict, value) pairs, or a bare value; None values are left out."""
        if not isinstance(samples, list):
            samples = [({}, samples)]
        self.lines += [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            if _number(value) is not None:
                self.lines.append(f"{name}{_labels(labels)} {_format(value)}")

    def histogram(self, name: str, help_text: str, bounds_s: list[float], counts: list[int], total_s: float) -> None:
        """Cumulative `_bucket`s from per-bucket counts (the last one past every bound), `_sum`, `_count`."""
        self.lines += [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} histogram"]
        running = 0
        for bound, count in zip([*bounds_s, math.inf], counts):
            running += int(count)
            self.lines.append(f'{name}_bucket{{le="{_format(bound)}"}} {running}')
        self.lines += [f"{name}_sum {_format(total_s)}", f"{name}_count {running}"]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(status: dict | None, now: float | None = None) -> str:
    """The exposition for one heartbeat (None: no watcher has written one yet)."""
    out = Exposition()
    if status is None:
        out.family("edgecxr_watcher_running", "gauge", "1 while the watcher runs and its heartbeat is fresh", 0)
        return out.text()
    age = _age(status, now)
    running = status.get("state") == "running" and not is_stale(status, age)
    out.family("edgecxr_build_info", "gauge", "The watcher's edgecxr version, bundle and engine (value 1)",
               [({"version": status.get("edgecxr"), "bundle": status.get("bundle"), "backend": status.get("backend"),
                  "precision": status.get("precision")}, 1)])
    out.family("edgecxr_watcher_running", "gauge", "1 while the watcher runs and its heartbeat is fresh",
               int(running))
    out.family("edgecxr_heartbeat_age_seconds", "gauge", "Seconds since the watcher last wrote status.json",
               None if math.isinf(age) else round(age, 3))
    out.family("edgecxr_start_time_seconds", "gauge", "When the watcher started, in Unix seconds",
               _timestamp(status.get("started")))
    out.family("edgecxr_inbox_unavailable", "gauge", "1 while the inbox is missing, unreadable or unmounted",
               int(bool(status.get("inbox_error"))))
    _counts(out, status)
    _sending(out, status.get("sending"))
    hist = status.get("inference_ms")
    if isinstance(hist, dict) and isinstance(hist.get("le_ms"), list) and isinstance(hist.get("counts"), list):
        out.histogram("edgecxr_inference_duration_seconds",
                      "Engine time per classified image (a batch's time over its images), since the watcher started",
                      [b / 1000 for b in hist["le_ms"]], hist["counts"], float(hist.get("sum_ms", 0.0)) / 1000)
    _drift(out, status.get("drift"))
    return out.text()


def _counts(out: Exposition, status: dict) -> None:
    out.family("edgecxr_classified_total", "counter", "Images classified (all lines of results.jsonl)",
               status.get("processed"))
    out.family("edgecxr_refused_total", "counter", "Files refused as unreadable or invalid, by reason code, "
               "since the watcher started", _by_code(status.get("refused_by_code")))
    out.family("edgecxr_out_of_scope_total", "counter", "Images refused by the intended-use gate, by reason code, "
               "since the watcher started", _by_code(status.get("out_of_scope_by_code")))
    out.family("edgecxr_queue_depth", "gauge", "Files in the inbox not yet recorded: ready to read, or still "
               "settling (being written)",
               [({"state": "ready"}, status.get("backlog")), ({"state": "settling"}, status.get("waiting"))])


def _sending(out: Exposition, sending) -> None:
    if not isinstance(sending, dict):
        return
    rows = [r for r in sending.get("destinations") or [] if isinstance(r, dict)]
    for key, kind, text in (("sent", "counter", "DICOM objects (SR, SC) a PACS accepted"),
                            ("failed", "counter", "DICOM objects a PACS refused for good (kept in outbox failed/)"),
                            ("pending", "gauge", "DICOM objects built and waiting for a PACS"),
                            ("committed", "counter", "DICOM objects a PACS committed (watch --send-commit)"),
                            ("awaiting_commitment", "gauge",
                             "DICOM objects a PACS stored and has not yet committed (watch --send-commit)")):
        name = f"edgecxr_sr_{key}_total" if kind == "counter" else f"edgecxr_sr_{key}"
        out.family(name, kind, text, [({"destination": r.get("destination")}, r.get(key)) for r in rows])
    out.family("edgecxr_sr_queued", "gauge", "Results waiting for their SR to be built", sending.get("queued"))
    out.family("edgecxr_sr_oldest_pending_seconds", "gauge", "Age of the oldest object waiting for a PACS",
               [({"destination": r.get("destination")}, r.get("oldest_pending_s")) for r in rows])
    workers = [w for w in sending.get("workers") or [] if isinstance(w, dict)]
    out.family("edgecxr_sr_worker_up", "gauge", "1 while the SR builder or a sender thread runs (restarted after "
               "an error), 0 once it stopped",
               [({"worker": w.get("name")}, int(bool(w.get("alive")))) for w in workers])
    out.family("edgecxr_sr_worker_restarts_total", "counter", "Restarts of the SR builder or a sender after an "
               "error (a full disk)", [({"worker": w.get("name")}, w.get("restarts")) for w in workers])
    _health(out, rows)


def _health(out: Exposition, rows: list[dict]) -> None:
    """The C-ECHO monitor's latest answer per destination (a row's "health"), where it runs."""
    checked = [(r.get("destination"), r["health"]) for r in rows if isinstance(r.get("health"), dict)]
    if not checked:
        return
    out.family("edgecxr_pacs_reachable", "gauge", "1 when the PACS answered the last C-ECHO, 0 when it did not",
               [({"destination": d}, None if h.get("reachable") is None else int(bool(h.get("reachable"))))
                for d, h in checked])
    out.family("edgecxr_pacs_echo_rtt_seconds", "gauge", "Round trip of the last successful C-ECHO (association "
               "included)", [({"destination": d}, None if _number(h.get("rtt_ms")) is None else h["rtt_ms"] / 1000)
                             for d, h in checked])
    out.family("edgecxr_pacs_last_echo_ok_time_seconds", "gauge", "When the PACS last answered a C-ECHO, in Unix "
               "seconds", [({"destination": d}, _timestamp(h.get("last_ok"))) for d, h in checked])


def _drift(out: Exposition, drift) -> None:
    if not isinstance(drift, dict):
        return
    out.family("edgecxr_drift_window_images", "gauge", "Images in the drift window (the last N results)",
               drift.get("images"))
    out.family("edgecxr_drift_baseline", "gauge", "1 when the bundle records validation figures to compare with",
               int(drift.get("baseline") is not None))
    checks = [c for c in drift.get("checks") or [] if isinstance(c, dict)]
    observed: dict = drift["observed"] if isinstance(drift.get("observed"), dict) else {}
    rate = [c for c in checks if c.get("name") == "out_of_scope_rate"]
    shares = [c for c in checks if c.get("name") == "label_share"]
    score = [c for c in checks if c.get("name") == "score_mean"]
    out.family("edgecxr_drift_out_of_scope_ratio", "gauge", "Share of the window's gated images refused as out "
               "of scope", rate[0].get("observed") if rate else observed.get("out_of_scope_rate"))
    out.family("edgecxr_drift_label_share_ratio", "gauge", "Share of the window's classified images with each label",
               [({"label": c.get("label")}, c.get("observed")) for c in shares] if shares else
               [({"label": k}, v) for k, v in (observed.get("label_shares") or {}).items()])
    out.family("edgecxr_drift_gate_score_mean", "gauge", "Mean learned out-of-scope score of the window's "
               "classified images", score[0].get("observed") if score else observed.get("score_mean"))
    if not checks:
        return
    out.family("edgecxr_drift_expected_out_of_scope_ratio", "gauge", "Out-of-scope refusal rate on validation",
               rate[0].get("expected") if rate else None)
    out.family("edgecxr_drift_expected_label_share_ratio", "gauge", "Share of each label on validation",
               [({"label": c.get("label")}, c.get("expected")) for c in shares])
    out.family("edgecxr_drift_expected_gate_score_mean", "gauge", "Mean out-of-scope score on validation",
               score[0].get("expected") if score else None)
    keyed = [({"check": c.get("name"), "label": c.get("label") or ""}, c) for c in checks]
    out.family("edgecxr_drift_p_value", "gauge", "p-value of each drift check (Fisher exact or z-test; see "
               "docs/monitoring.md)", [(k, c.get("p_value")) for k, c in keyed])
    out.family("edgecxr_drift_warning", "gauge", "1 while a drift check warns (p below its alpha with enough images)",
               [(k, int(bool(c.get("warning")))) for k, c in keyed])


def _by_code(counts) -> list:
    return [({"code": code}, n) for code, n in sorted(counts.items())] if isinstance(counts, dict) else []


def _age(status: dict, now: float | None) -> float:
    try:
        return heartbeat_age(status, now)
    except (KeyError, TypeError, ValueError):
        return math.inf


def _timestamp(text) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def _format(value) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(float(value))


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(str(v if v is not None else ""))}"' for k, v in labels.items()) + "}"


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
