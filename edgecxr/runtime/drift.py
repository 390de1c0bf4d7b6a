"""Drift watch: are the last N results still like the ones the bundle was validated on?

A result sink. It keeps the outcome of the last `window` images (a bounded deque of small
tuples, whatever the uptime) and compares them with `manifest["gate"]["validation"]`, which
export measured on validation images:

- the out-of-scope refusal rate and the share of each label: Fisher's exact test (two-sided)
  of the window's counts against the validation counts. The validation figures are a sample
  too (a few hundred images), so a two-sample test is the honest one: a one-sample binomial
  test against the validation rate as if it were exact raises false alarms, worst of all
  when validation refused no image at all (rate 0, where any refusal would "prove" drift).
  A bundle that records rates without an image count gets an exact one-sample binomial test.
- the mean learned out-of-scope score: a two-sample z-test (normal approximation, fair for
  the mean of 50 or more images by the central limit theorem even though the score itself is
  skewed) of the window mean against `score_mean`, with both samples' spread.

Repeated looks: the figures are recomputed at every heartbeat over overlapping windows, so a
plain 5% level would cry wolf daily. A check warns only when p < ALPHA = 0.001 with at least
MIN_IMAGES = 50 images in the window, and clears once p > CLEAR_ALPHA = 0.01 (hysteresis, so
a p-value hovering near the line does not flap). Windows of 200 images overlap, so a box that
sees 200 images a day makes about one independent look per day: with four checks, about one
false warning a year from chance alone, while a refusal rate that goes from 1% to 8% is
caught within one window (tests/test_drift.py measures both).

Pure standard library: no scipy on the device.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from edgecxr.core.results import ERROR, OK, OUT_OF_SCOPE

if TYPE_CHECKING:
    from edgecxr.runtime.prepare import Prepared

STATUS_KEY = "drift"
WINDOW = 200
MIN_IMAGES = 50
ALPHA = 0.001
CLEAR_ALPHA = 0.01


class DriftMonitor:
    """`accept()` each result record; `status()` gives the window's figures and any warnings."""

    status_key = STATUS_KEY

    def __init__(self, validation: dict | None = None, window: int = WINDOW, min_images: int = MIN_IMAGES,
                 alpha: float = ALPHA, clear_alpha: float = CLEAR_ALPHA):
        if window < 1 or min_images < 1 or not 0 < alpha <= clear_alpha < 1:
            raise ValueError("drift: window and min_images must be positive and 0 < alpha <= clear_alpha < 1")
        self.baseline = validation if _usable(validation) else None
        self.window, self.min_images, self.alpha, self.clear_alpha = window, min_images, alpha, clear_alpha
        # (status, label or None, gate score or None): the last `window` images, nothing more
        self._recent: deque[tuple[str, str | None, float | None]] = deque(maxlen=window)
        self._warned: set[str] = set()
        self._seen = 0
        self._cached: tuple[int, dict] | None = None

    @classmethod
    def for_manifest(cls, manifest: dict, **kwargs) -> DriftMonitor:
        validation = (manifest.get("gate") or {}).get("validation")
        hint = validation.get("window_hint") if isinstance(validation, dict) else None
        if "window" not in kwargs and isinstance(hint, int) and hint > 0:
            kwargs["window"] = hint
        return cls(validation, **kwargs)

    # -- the ResultSink interface ----------------------------------------------------------
    def accept(self, record: dict, item: Prepared | None = None, source: Path | None = None) -> None:
        status = record.get("status")
        if status not in (OK, OUT_OF_SCOPE, ERROR):
            return
        gate = record.get("gate")
        score = gate.get("score") if isinstance(gate, dict) else None
        score = float(score) if isinstance(score, (int, float)) and math.isfinite(score) else None
        self._recent.append((status, record.get("label") if status == OK else None, score))
        self._seen += 1

    def seed(self, records: list[dict]) -> None:
        """The tail of results.jsonl at start, so a restart does not forget the window."""
        for record in records[-self.window:]:
            self.accept(record)

    def close(self) -> None:
        """Nothing queued: the window is rebuilt from results.jsonl on the next start."""

    # -- the figures -----------------------------------------------------------------------
    def status(self) -> dict:
        if self._cached is not None and self._cached[0] == self._seen:
            return self._cached[1]  # the heartbeat asks every 2 s; recompute only after new results
        report = self._report()
        self._cached = (self._seen, report)
        return report

    def _report(self) -> dict:
        statuses = [s for s, _, _ in self._recent]
        ok, oos, errors = statuses.count(OK), statuses.count(OUT_OF_SCOPE), statuses.count(ERROR)
        labels = [label for s, label, _ in self._recent if s == OK]
        scores = [score for s, _, score in self._recent if s == OK and score is not None]
        report: dict = {"window": self.window, "images": len(self._recent), "alpha": self.alpha,
                        "min_images": self.min_images,
                        "counts": {OK: ok, OUT_OF_SCOPE: oos, ERROR: errors}}
        gated = ok + oos
        if self.baseline is None:
            names = sorted({label for label in labels if isinstance(label, str)})
            shares = {name: labels.count(name) / ok for name in names} if ok else {}
            report.update(baseline=None, checks=[], warnings=[], observed={
                "out_of_scope_rate": oos / gated if gated else None, "label_shares": shares,
                "score_mean": sum(scores) / len(scores) if scores else None},
                message="the bundle records no validation figures (exported before the intended-use gate), "
                        "so there is nothing to compare this window against")
            return report
        base = self.baseline
        images = base.get("images") if isinstance(base.get("images"), int) and base["images"] > 0 else None
        classified = None if images is None else round(images * (1 - float(base.get("refusal_rate") or 0.0)))
        checks = []
        if base.get("refusal_rate") is not None:
            checks.append(self._rate("out_of_scope_rate", None, oos, gated, float(base["refusal_rate"]), images))
        expected_shares = sorted((base.get("label_shares") or {}).items())
        counted = [lab for lab in labels if lab in dict(expected_shares)]
        for i, (name, share) in enumerate(expected_shares):
            check = self._rate("label_share", name, counted.count(name), len(counted), float(share), classified)
            if len(expected_shares) == 2 and i == 1:
                check["mirror"] = True  # two labels: the same test as the first one's, so one warning in words
            checks.append(check)
        if base.get("score_mean") is not None and base.get("score_sd") is not None:
            checks.append(self._mean(scores, float(base["score_mean"]), float(base["score_sd"]), classified))
        report.update(baseline={k: base.get(k) for k in ("images", "refusal_rate", "label_shares", "score_mean",
                                                         "score_sd")},
                      checks=checks, warnings=[c["message"] for c in checks if c["warning"] and not c.get("mirror")])
        report["message"] = (f"{len(report['warnings'])} drift warning(s)" if report["warnings"] else
                             f"{len(self._recent)} image(s) in the window; warnings start at {self.min_images}"
                             if len(self._recent) < self.min_images else "no drift beyond what chance explains")
        return report

    def _rate(self, name: str, label: str | None, hits: int, n: int, expected: float, base_n: int | None) -> dict:
        observed = hits / n if n else None
        if not n:
            p = None
        elif base_n:  # two samples: the window's counts against the validation counts
            base_hits = min(base_n, max(0, round(expected * base_n)))
            p = fisher_exact(hits, n - hits, base_hits, base_n - base_hits)
        else:
            p = binomial_test(hits, n, expected)
        what = "not analysed (outside the model's intended use)" if label is None else label
        of = "readable images" if label is None else "analysed images"
        text = (f"{_pct(observed)} of the last {n} {of} were {what}, against {_pct(expected)} on the model's "
                "validation images" if n else f"no {of} in the window yet")
        check = {"name": name, "observed": observed, "expected": expected, "p_value": p, "n": n,
                 "test": "fisher_exact" if base_n else "binomial_exact"}
        if label is not None:
            check["label"] = label
        key = name if label is None else f"{name}:{label}"
        advice = ("check what reaches the box: a new scanner, protocol or export setting, or images sent that the "
                  "model is not for" if label is None else
                  "the mix of results has moved: a new patient group, a scanner or processing change, or a model "
                  "problem; have recent results reviewed")
        return self._judge(check, key, text, advice)

    def _mean(self, scores: list[float], mean0: float, sd0: float, base_n: int | None) -> dict:
        n = len(scores)
        observed = sum(scores) / n if n else None
        p = None
        if n and observed is not None:
            sd = math.sqrt(sum((s - observed) ** 2 for s in scores) / (n - 1)) if n > 1 else sd0
            se = math.sqrt(sd0 ** 2 / base_n + sd ** 2 / n) if base_n else sd0 / math.sqrt(n)
            # se 0: every score identical on both sides, so the means are equal or certainly different
            p = math.erfc(abs(observed - mean0) / se / math.sqrt(2)) if se > 0 else float(observed == mean0)
        text = (f"the last {n} analysed images score {observed:.3g} on average on the out-of-scope scale, against "
                f"{mean0:.3g} (sd {sd0:.3g}) on the model's validation images" if n and observed is not None else
                "no out-of-scope scores in the window yet")
        check = {"name": "score_mean", "observed": observed, "expected": mean0, "p_value": p, "n": n,
                 "test": "two_sample_z" if base_n else "one_sample_z"}
        advice = ("the images look less like those the model was validated on: a new scanner, protocol or "
                  "processing" if observed is not None and observed > mean0 else
                  "the images look more alike than the validation images did: check what reaches the box")
        return self._judge(check, "score_mean", text, advice)

    def _judge(self, check: dict, key: str, text: str, advice: str) -> dict:
        p = check["p_value"]
        enough = len(self._recent) >= self.min_images
        limit = self.clear_alpha if key in self._warned else self.alpha
        warning = bool(enough and p is not None and p < limit)
        if warning:
            self._warned.add(key)
        else:
            self._warned.discard(key)
        p_text = "" if p is None else f" (p = {p:.2g})"
        if warning:
            check["message"] = f"drift: {text}{p_text}, more than chance explains; {advice}"
        else:
            check["message"] = f"{text}{p_text}" + ("" if enough else f"; too few images to judge yet "
                                                                      f"(at least {self.min_images})")
        check["warning"] = warning
        return check


# -- exact tests in the standard library -------------------------------------------------
_REL = 1 + 1e-7  # outcomes as likely as the observed one, up to rounding, count as "as extreme" (as R does)


def binomial_test(k: int, n: int, p: float) -> float:
    """Two-sided exact binomial test: P(an outcome no more likely than k | n, p)."""
    if n <= 0:
        return 1.0
    if p <= 0 or p >= 1:
        return 1.0 if k == (0 if p <= 0 else n) else 0.0
    logs = [_log_choose(n, i) + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(n + 1)]
    return _sum_as_extreme(logs, logs[k])


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact test of the 2x2 table [[a, b], [c, d]] (rows: window, validation)."""
    n1, k, total = a + b, a + c, a + b + c + d
    lo, hi = max(0, n1 - (total - k)), min(k, n1)
    if lo == hi:
        return 1.0
    base = _log_choose(total, n1)
    logs = [_log_choose(k, x) + _log_choose(total - k, n1 - x) - base for x in range(lo, hi + 1)]
    return _sum_as_extreme(logs, logs[a - lo])


def _sum_as_extreme(logs: list[float], observed: float) -> float:
    limit = observed + math.log(_REL)
    return min(1.0, sum(math.exp(v) for v in logs if v <= limit))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _usable(validation) -> bool:
    return isinstance(validation, dict) and any(
        validation.get(k) is not None for k in ("refusal_rate", "label_shares", "score_mean"))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
