"""One decision rule everywhere: export picks it, the bundle records it, watch/classify/parity apply it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.bundle import load_bundle
from edgecxr.core.decision import UNCERTAIN, DecisionRule, parse_band, parse_operating_point, pick_threshold, rates_at
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.results import read_results
from tests.tools import require_module

runner = CliRunner()
NAMES = ("NORMAL", "PNEUMONIA")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def probs_of(p_positive) -> np.ndarray:
    p = np.asarray(p_positive, dtype=np.float64)
    return np.stack([1 - p, p], axis=1)


# -- the rule itself -------------------------------------------------------------------------

def test_argmax_is_threshold_one_half_for_two_classes():
    rule = DecisionRule.from_manifest({"class_names": list(NAMES), "positive_class": "PNEUMONIA",
                                       "decision": {"rule": "argmax"}})
    p = np.linspace(0, 1, 101)
    assert rule.labels(probs_of(p)) == ["PNEUMONIA" if v > 0.5 else "NORMAL" for v in p]
    assert rule.describe() == "argmax (P(PNEUMONIA) > 0.500)"


def test_threshold_and_uncertain_band():
    rule = DecisionRule(NAMES, "PNEUMONIA", 0.3, (0.2, 0.45))
    assert rule.labels(probs_of([0.1, 0.2, 0.29, 0.3, 0.449, 0.45, 0.9])) == [
        "NORMAL", UNCERTAIN, UNCERTAIN, UNCERTAIN, UNCERTAIN, "PNEUMONIA", "PNEUMONIA"]
    assert list(rule.predict(probs_of([0.29, 0.3]))) == [0, 1]  # the band never changes the threshold decision
    assert rule.describe() == "P(PNEUMONIA) ≥ 0.300; uncertain if 0.20 ≤ P(PNEUMONIA) < 0.45"
    fields = rule.result_fields(probs_of([0.25])[0])
    assert fields == {"label": UNCERTAIN, "positive_class": "PNEUMONIA", "p_positive": 0.25,
                      "decision": rule.describe()}
    again = DecisionRule.from_manifest({"class_names": list(NAMES), "decision": rule.to_manifest()})
    assert again == rule


def test_threshold_rule_with_three_classes_falls_back_to_the_likelier_other():
    rule = DecisionRule(("A", "B", "C"), "C", 0.2)
    assert rule.labels(np.array([[0.5, 0.3, 0.2], [0.3, 0.6, 0.1], [0.7, 0.2, 0.1]])) == ["C", "B", "A"]


def test_pick_threshold_meets_the_target_with_the_fewest_false_calls():
    rng = np.random.default_rng(0)
    is_pos = rng.random(400) < 0.6
    p = np.clip(np.where(is_pos, 0.7, 0.3) + rng.normal(0, 0.2, 400), 0, 1)
    for target, value in (("sensitivity", 0.95), ("specificity", 0.9), ("sensitivity", 0.5)):
        t = pick_threshold(p, is_pos, target, value)
        assert rates_at(p, is_pos, t)[target] >= value
        # any stricter threshold misses the target: the choice is the tightest one
        stricter = np.nextafter(t, np.inf) if target == "sensitivity" else np.nextafter(t, -np.inf)
        assert rates_at(p, is_pos, stricter)[target] < value
    assert pick_threshold(p, is_pos, "threshold", 0.42) == 0.42


@pytest.mark.parametrize("text", ["recall=0.9", "sensitivity=1.5", "sensitivity", "specificity=x"])
def test_bad_operating_point_names_the_form(text):
    with pytest.raises(EdgecxrError, match="sensitivity=, specificity= or threshold="):
        parse_operating_point(text)


def test_bad_band_is_refused():
    assert parse_band("0.4,0.6") == (0.4, 0.6)
    with pytest.raises(EdgecxrError, match="LOW,HIGH"):
        parse_band("0.6,0.4")
    with pytest.raises(EdgecxrError, match="does not contain the decision threshold"):
        DecisionRule(NAMES, "PNEUMONIA", 0.7, (0.4, 0.6))
    with pytest.raises(EdgecxrError, match="decision record is malformed"):
        DecisionRule.from_manifest({"class_names": list(NAMES), "decision": {"rule": "threshold"}})


def test_export_refuses_a_band_outside_the_threshold_before_exporting(run_dir, tmp_path):
    result = run("export", run_dir, "--out", tmp_path / "b", "--operating-point", "threshold=0.8",
                 "--uncertain", "0.4,0.6")
    assert result.exit_code == 2 and "does not contain the decision threshold" in result.output
    assert not (tmp_path / "b").exists()


# -- round trip: export -> bundle -> watch, classify, parity ---------------------------------------

@pytest.fixture(scope="module")
def run_dir(trained_run):
    return trained_run


@pytest.fixture(scope="module")
def test_p(run_dir) -> dict:
    """P(PNEUMONIA) of the PyTorch model on each test image, from its report."""
    report = json.loads((run_dir / "report.json").read_text())
    return {r["path"]: r["probabilities"]["PNEUMONIA"] for r in report["rows"]}


def export(run_dir, out, *options):
    require_module("onnx")
    require_module("onnxruntime")
    # the decision rule alone is under test: without the gate's fitted stages, every image gets a label
    result = run("export", run_dir, "--out", out, "--targets", "onnxruntime", "--no-gate", *options)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def sensitive_bundle(onnx_bundle):
    """conftest's session export: ONNX Runtime FP32, no gate, --operating-point sensitivity=0.9."""
    return onnx_bundle


@pytest.fixture(scope="module")
def banded_bundle(run_dir, test_p, tmp_path_factory):
    """A threshold at the median test probability and a band around it, so some results are UNCERTAIN."""
    p = np.array(sorted(test_p.values()))
    t = float(np.median(p))
    lo, hi = float(np.quantile(p, 0.25)), float(np.quantile(p, 0.75))
    # --temperature 1: the band is placed on the report's plain-softmax probabilities (test_temperature.py
    # checks a fitted temperature reaches the rule)
    return export(run_dir, tmp_path_factory.mktemp("op") / "band", "--operating-point", f"threshold={t!r}",
                  "--uncertain", f"{lo!r},{hi!r}", "--temperature", "1"), (t, lo, hi)


def test_sensitivity_operating_point_is_chosen_on_validation_and_recorded(sensitive_bundle, run_dir):
    decision = load_bundle(sensitive_bundle).manifest["decision"]
    run_json = json.loads((run_dir / "run.json").read_text())
    point = decision["operating_point"]
    assert decision["rule"] == "threshold" and decision["class"] == "PNEUMONIA"
    assert point["split"] == "validation" and point["images"] == len(run_json["split"]["val"])
    assert point["achieved"]["sensitivity"] >= 0.9
    assert decision["description"] == f"P(PNEUMONIA) ≥ {decision['threshold']:.3f}"
    inspect = run("bundle", "inspect", sensitive_bundle)
    assert f"P(PNEUMONIA) ≥ {decision['threshold']:.3f}" in inspect.output
    assert "operating point sensitivity=0.9" in inspect.output


def test_watch_records_the_rule_and_p_positive(banded_bundle, mini_test_images, tmp_path):
    bundle, (t, lo, hi) = banded_bundle
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for path in mini_test_images:
        (inbox / path.name).write_bytes(path.read_bytes())
    result = run("watch", inbox, "--bundle", bundle, "--once", "--settle-seconds", 0)
    assert result.exit_code == 0, result.output
    records = read_results(inbox / ".edgecxr")
    assert len(records) == len(mini_test_images)
    rule = DecisionRule.from_manifest(load_bundle(bundle).manifest)
    for r in records:
        p = r["p_positive"]
        assert p == pytest.approx(r["probabilities"]["PNEUMONIA"])
        expected = UNCERTAIN if lo <= p < hi else ("PNEUMONIA" if p >= t else "NORMAL")
        assert (r["label"], r["positive_class"], r["decision"]) == (expected, "PNEUMONIA", rule.describe())
    assert UNCERTAIN in {r["label"] for r in records}
    assert f"rule: {rule.describe()}" in result.output
    status = json.loads((inbox / ".edgecxr" / "status.json").read_text())
    assert status["decision"] == rule.describe()


def test_classify_applies_the_same_rule(banded_bundle, mini_test_images):
    bundle, (t, lo, hi) = banded_bundle
    result = run("classify", *mini_test_images, "--bundle", bundle, "--json")
    assert result.exit_code == 0, result.output
    objects = [json.loads(c) for c in result.stdout.replace("}\n{", "}\x00{").split("\x00")]
    for o in objects:
        p = o["p_positive"]
        assert o["label"] == (UNCERTAIN if lo <= p < hi else ("PNEUMONIA" if p >= t else "NORMAL"))
    table = run("classify", *mini_test_images[:2], "--bundle", bundle)
    assert "P(PNEUMONIA)" in table.output and "rule: P(PNEUMONIA) ≥" in table.output


def test_parity_applies_the_rule_to_pytorch_and_engine_alike(banded_bundle, test_p, mini, tmp_path):
    bundle, (t, lo, hi) = banded_bundle
    result = run("parity-check", bundle, "--data", mini / "test", "--out", tmp_path)
    assert "rule: P(PNEUMONIA) ≥" in result.output and "uncertain" in result.output
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["decision"]["uncertain"] == [lo, hi]
    ref_uncertain = sum(lo <= p < hi for p in test_p.values())
    assert ref_uncertain > 0
    reference = parity["reference"]["metrics"]
    pos = [p >= t for p in test_p.values()]
    truth = [path.startswith("PNEUMONIA/") for path in test_p]
    sensitivity = sum(a and b for a, b in zip(pos, truth)) / sum(truth)
    assert reference["sensitivity"] == pytest.approx(sensitivity)  # the reference re-decided by the rule
    for engine in parity["engines"]:
        assert engine["uncertain"]["reference"] == ref_uncertain
        rows = {r["path"]: r for r in engine["rows"]}
        for row in rows.values():
            p = row["probabilities"]["PNEUMONIA"]
            assert row["result"] == (UNCERTAIN if lo <= p < hi else ("PNEUMONIA" if p >= t else "NORMAL"))
        assert engine["uncertain"]["engine"] == sum(r["result"] == UNCERTAIN for r in rows.values())
    assert "decision rule" in (tmp_path / "parity.md").read_text()
