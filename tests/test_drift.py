"""Drift watch (edgecxr/runtime/drift.py) on constructed result streams: quiet while the images
are like the validation images, a warning once a rate moves, memory bounded whatever the uptime.

The streams are drawn from a known distribution (seeded): 1% refused by the gate, 38% NORMAL,
gate scores from a skewed (gamma) distribution like a feature distance; the bundle's
validation figures are measured on 600 images drawn from the same distribution, as export
measures them on a finite validation set.
"""

from __future__ import annotations

import math
import random
import tracemalloc

import pytest

from edgecxr.runtime.drift import ALPHA, MIN_IMAGES, DriftMonitor, binomial_test, fisher_exact
from edgecxr.runtime.status import Counters


def draw(r: random.Random, refuse: float = 0.01, normal: float = 0.38, shift: float = 0.0) -> dict:
    if r.random() < refuse:
        return {"status": "out_of_scope", "gate": {"stage": "learned", "code": "unlike_training",
                                                   "reason": "does not look like a chest X-ray the model knows",
                                                   "score": 9.0, "threshold": 5.0}}
    return {"status": "ok", "label": "NORMAL" if r.random() < normal else "PNEUMONIA",
            "gate": {"score": r.gammavariate(16, 0.125) + shift, "threshold": 5.0},
            "timings_ms": {"inference": r.uniform(20, 80)}}


def validation(r: random.Random, images: int = 600) -> dict:
    records = [draw(r) for _ in range(images)]
    ok = [x for x in records if x["status"] == "ok"]
    scores = [x["gate"]["score"] for x in ok]
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
    shares = {name: sum(x["label"] == name for x in ok) / len(ok) for name in ("NORMAL", "PNEUMONIA")}
    return {"images": images, "refusal_rate": 1 - len(ok) / images, "label_shares": shares,
            "score_mean": mean, "score_sd": sd, "window_hint": 200}


def test_exact_tests_match_published_values():
    # Fisher's lady tasting tea: [[3, 1], [1, 3]], two-sided p = 34/70 (Fisher 1935)
    assert fisher_exact(3, 1, 1, 3) == pytest.approx(34 / 70, rel=1e-12)
    # R: binom.test(7, 20, 0.5)$p.value = 0.2631760; binom.test(0, 50, 0.01)$p.value = 1
    assert binomial_test(7, 20, 0.5) == pytest.approx(0.2631760, rel=1e-6)
    assert binomial_test(0, 50, 0.01) == 1.0
    # R: fisher.test(matrix(c(10, 6, 190, 594), 2))$p.value = 0.001471288
    assert fisher_exact(10, 190, 6, 594) == pytest.approx(0.001471288, rel=1e-6)
    # no refusal at all on validation is not proof that one refusal is drift
    assert fisher_exact(1, 199, 0, 600) == pytest.approx(0.25, abs=1e-12)


def test_in_distribution_days_stay_quiet():
    """20 days of 300 images each, looked at every 10 images (a heartbeat sees more, but the
    figures only change with new results): at most two days may show a chance warning (expected
    about 0.2: 2 of 200 such days warned when measured)."""
    days_warned, looks = 0, 0
    for seed in range(20):
        r = random.Random(seed)
        monitor = DriftMonitor(validation(r))
        warned = False
        for i in range(300):
            monitor.accept(draw(r))
            if i % 10 == 9:
                looks += 1
                warned |= bool(monitor.status()["warnings"])
        days_warned += warned
    assert looks == 600
    assert days_warned <= 2  # a plain 5% test without the repeated-look correction warns on 8 of these 20 days


@pytest.mark.parametrize(("change", "check"), [({"refuse": 0.10}, "out_of_scope_rate"),
                                               ({"normal": 0.60}, "label_share"),
                                               ({"shift": 0.4}, "score_mean")])
def test_a_moved_rate_warns_within_a_window(change, check):
    for seed in range(5):
        r = random.Random(100 + seed)
        monitor = DriftMonitor(validation(r))
        for _ in range(300):
            monitor.accept(draw(r))
        assert not [c for c in monitor.status()["checks"] if c["name"] == check and c["warning"]]
        for _ in range(250):
            monitor.accept(draw(r, **change))
            report = monitor.status()
            hits = [c for c in report["checks"] if c["name"] == check and c["warning"]]
            if hits:
                break
        assert hits, f"seed {seed}: {check} did not warn within 250 images of {change}"
        assert hits[0]["p_value"] < ALPHA and hits[0]["message"] in report["warnings"]
        assert hits[0]["message"].startswith("drift: ")
        if check == "label_share":  # two labels are one test: both checks warn, one sentence says so
            assert len(hits) == 2 and hits[1]["mirror"] and hits[1]["message"] not in report["warnings"]


def test_refusal_warning_says_what_happened_in_words():
    r = random.Random(7)
    monitor = DriftMonitor({"images": 600, "refusal_rate": 0.01, "label_shares": {"NORMAL": 0.4, "PNEUMONIA": 0.6}})
    for _ in range(200):
        monitor.accept(draw(r, refuse=0.2))
    report = monitor.status()
    rate = next(c for c in report["checks"] if c["name"] == "out_of_scope_rate")
    assert rate["warning"] and rate["test"] == "fisher_exact" and rate["expected"] == 0.01
    assert "not analysed (outside the model's intended use)" in rate["message"]
    assert "1.0% on the model's validation images" in rate["message"]
    assert report["message"].endswith("drift warning(s)")
    assert "score_mean" not in {c["name"] for c in report["checks"]}  # no score figures: no score check


def test_too_few_images_never_warn():
    monitor = DriftMonitor({"images": 600, "refusal_rate": 0.01})
    for _ in range(MIN_IMAGES - 1):
        monitor.accept({"status": "out_of_scope", "gate": {"code": "blank"}})
    report = monitor.status()
    assert report["checks"][0]["p_value"] < 1e-30 and not report["warnings"]
    assert "too few images to judge yet" in report["checks"][0]["message"]
    monitor.accept({"status": "out_of_scope", "gate": {"code": "blank"}})
    assert monitor.status()["warnings"]


def test_without_a_baseline_it_reports_the_window_and_says_so():
    monitor = DriftMonitor.for_manifest({"name": "bundle exported before the gate"})
    r = random.Random(3)
    records = [draw(r) for _ in range(40)] + [{"status": "error", "error": {"code": "not_an_image"}}]
    for record in records:
        monitor.accept(record)
    report = monitor.status()
    assert report["baseline"] is None and report["checks"] == [] and report["warnings"] == []
    assert "nothing to compare this window against" in report["message"]
    ok = [x for x in records if x["status"] == "ok"]
    assert report["counts"]["error"] == 1 and report["counts"]["ok"] == len(ok)
    assert report["observed"]["label_shares"]["NORMAL"] == pytest.approx(
        sum(x["label"] == "NORMAL" for x in ok) / len(ok))


def test_window_hint_and_restart_seed_from_results():
    validation_figures = {"images": 400, "refusal_rate": 0.0, "window_hint": 50}
    monitor = DriftMonitor.for_manifest({"gate": {"validation": validation_figures}})
    assert monitor.window == 50
    r = random.Random(5)
    monitor.seed([draw(r) for _ in range(500)])
    assert monitor.status()["images"] == 50


def test_memory_is_bounded_whatever_the_uptime():
    r = random.Random(11)
    monitor = DriftMonitor(validation(r), window=200)
    records = [draw(r) for _ in range(1000)]
    for record in records:
        monitor.accept(record)
    monitor.status()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(50):  # 50,000 more results
            for record in records:
                monitor.accept(record)
            monitor.status()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert monitor.status()["images"] == 200 and len(monitor._recent) == 200
    assert grown < 64 * 1024, f"the monitor kept {grown} more bytes after 50,000 results"


def test_counters_count_reasons_and_inference_time():
    counters = Counters()
    for record in ({"status": "ok", "timings_ms": {"inference": 3.0}},
                   {"status": "ok", "timings_ms": {"inference": 70}},
                   {"status": "ok", "timings_ms": {"inference": 20000}},
                   {"status": "out_of_scope", "gate": {"code": "blank"}},
                   {"status": "out_of_scope", "gate": {"code": "blank"}},
                   {"status": "error", "error": {"code": "not_an_image"}}):
        counters.observe(record)
    assert counters.out_of_scope == 2 and counters.out_of_scope_by_code == {"blank": 2}
    assert counters.refused_by_code == {"not_an_image": 1}
    hist = counters.inference_ms
    assert hist["count"] == 3 and hist["sum_ms"] == 20073.0
    assert hist["counts"][0] == 1 and hist["counts"][hist["le_ms"].index(100)] == 1 and hist["counts"][-1] == 1
