import numpy as np
import pytest
from sklearn import metrics as skm

from edgecxr.core.metrics import binary_rates, classification_report, confusion_matrix, roc_auc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_report_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 3, 200))
    names = ["a", "b", "c"]
    ours = classification_report(y_true, y_pred, names)
    ref = skm.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    for i, name in enumerate(names):
        for key, ref_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert ours["classes"][name][key] == pytest.approx(ref[str(i)][ref_key])
        assert ours["classes"][name]["support"] == ref[str(i)]["support"]
    assert ours["accuracy"] == pytest.approx(ref["accuracy"])
    for key, ref_key in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        assert ours[key]["f1"] == pytest.approx(ref[ref_key]["f1-score"])
        assert ours[key]["precision"] == pytest.approx(ref[ref_key]["precision"])
    assert ours["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred).tolist()


def test_zero_division_is_zero_like_sklearn():
    ours = classification_report([0, 0, 1], [0, 0, 0], ["n", "p"])
    assert ours["classes"]["p"]["precision"] == 0.0
    assert ours["classes"]["p"]["f1"] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300).astype(bool)
    scores = np.round(rng.random(300) * 0.6 + y * 0.3, 1)  # heavy ties
    assert roc_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores))


def test_roc_auc_undefined_for_one_class():
    assert roc_auc([True, True], [0.2, 0.9]) is None


def test_sensitivity_specificity():
    cm = confusion_matrix([0, 0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 0], 2)
    rates = binary_rates(cm, positive_index=1)
    assert rates["sensitivity"] == pytest.approx(3 / 4)
    assert rates["specificity"] == pytest.approx(1 / 3)


def test_bootstrap_intervals_are_seeded_bracket_the_estimate_and_collapse_when_every_answer_is_right():
    import json
    from pathlib import Path

    from edgecxr.core.metrics import bootstrap_intervals
    from edgecxr.core.reporting import build_report

    report = json.loads((Path(__file__).parents[1] / "train" / "reference-run" / "report.json").read_text())
    rebuilt = build_report(report["rows"], report["class_names"], meta={"positive_class": "PNEUMONIA"})
    m, again = rebuilt["metrics"], build_report(report["rows"], report["class_names"],
                                                meta={"positive_class": "PNEUMONIA"})["metrics"]
    assert m["ci95"] == again["ci95"]  # seeded: the same report, the same intervals
    lo, hi = m["ci95"]["accuracy"]
    assert lo < m["accuracy"] < hi and 0.02 < hi - lo < 0.08  # 624 images: about +-2.4 points
    assert m["ci95"]["roc_auc"][0] < m["roc_auc"] < m["ci95"]["roc_auc"][1]
    for name in ("NORMAL", "PNEUMONIA"):
        low, high = m["ci95"]["recall"][name]
        assert low < m["classes"][name]["recall"] < high
    perfect = bootstrap_intervals([0, 1, 1, 0, 1], [0, 1, 1, 0, 1], [0.1, 0.9, 0.8, 0.2, 0.7], 1, 2, resamples=200)
    assert perfect["accuracy"] == [1.0, 1.0] and perfect["recall"] == [[1.0, 1.0], [1.0, 1.0]]
