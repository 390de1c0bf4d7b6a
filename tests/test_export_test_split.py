"""Export never tunes on test images: --calib-data holding the run's test split is refused, and a
temperature or threshold chosen on the held-out sample instead of validation images is said and recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgecxr.core.data.folders import hash_and_check, scan_split
from edgecxr.core.errors import DataError
from edgecxr.core.progress import Reporter
from edgecxr.exporters.calibration import plan_images, sample_record
from edgecxr.exporters.operating_point import decision_samples, fallback_warning
from edgecxr.exporters.pipeline import ExportOptions, _plan
from edgecxr.exporters.test_split import refuse_test_images
from tests.helpers import copy_tree

CLASSES = ["NORMAL", "PNEUMONIA"]


def _run(mini, data_root) -> dict:
    """run.json as edgecxr train writes it for `data_root` (holding mini's test split), carved validation."""
    test = scan_split(mini / "test", "test")
    hash_and_check(test.samples)
    train = sorted(p.relative_to(mini / "train").as_posix() for p in (mini / "train").rglob("*.jpeg"))
    val = [r for r in train if r.endswith(("IM-0115-0001.jpeg", "person1000_bacteria_2931.jpeg"))]
    return {"classes": CLASSES,
            "data": {"root": str(data_root), "fingerprints": {"test": test.fingerprint()},
                     "counts": {"test": test.counts()}},
            "split": {"train_root": str(mini / "train"), "val_root": str(mini / "train"),
                      "train": [r for r in train if r not in val], "val": val}}


def _refused(run, calib) -> str:
    with pytest.raises(DataError) as caught:
        refuse_test_images(run, calib)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert str(calib) in message  # the folder
    assert "these images are the test split: a threshold or temperature chosen on them" in message  # the cause
    assert "point --calib-data at training images" in message  # the fix
    return message


def test_the_run_s_test_folder_as_calibration_data_is_refused(mini, tmp_path):
    message = _refused(_run(mini, mini), mini / "test")
    assert "20 of its 20 images are images of the run's test split" in message


def test_one_test_image_among_training_images_is_refused_by_content(mini, tmp_path):
    calib = copy_tree(mini / "train", tmp_path / "calib")
    leaked = next((mini / "test" / "PNEUMONIA").iterdir())
    shutil.copyfile(leaked, calib / "PNEUMONIA" / "renamed.jpeg")
    message = _refused(_run(mini, mini), calib)
    assert "1 of its 25 images" in message and "PNEUMONIA/renamed.jpeg" in message


def test_a_copy_of_the_test_split_is_refused_by_its_fingerprint_when_the_test_folder_is_not_here(mini, tmp_path):
    copy = copy_tree(mini / "test", tmp_path / "copy")
    message = _refused(_run(mini, tmp_path / "elsewhere"), copy)
    assert "data.fingerprints.test" in message


def test_a_partial_copy_of_the_test_split_is_refused_by_the_report_s_hashes_when_the_test_folder_is_not_here(
        mini, tmp_path):
    """mini's test images are Kermany test images, which the shipped model's test report lists by sha256."""
    report = Path(__file__).parents[1] / "edgecxr" / "models" / "reference" / "report.json"
    fingerprint = json.loads(report.read_text())["data"]["fingerprint"]
    run = {"classes": CLASSES, "data": {"root": str(tmp_path / "elsewhere"), "fingerprints": {"test": fingerprint},
                                        "counts": {"test": {"NORMAL": 234, "PNEUMONIA": 390}}}}
    calib = copy_tree(mini / "train", tmp_path / "calib")
    for i, image in enumerate(sorted((mini / "test" / "NORMAL").iterdir())[:2]):
        shutil.copyfile(image, calib / "NORMAL" / f"copied-{i}.jpeg")
    with pytest.raises(DataError) as caught:
        refuse_test_images(run, calib, report)
    total = len(scan_split(calib, "calibration").samples)
    assert f"2 of its {total} images are images of the run's test split (by content" in str(caught.value)
    assert str(report) in str(caught.value) and "NORMAL/copied-" in str(caught.value)
    refuse_test_images(run, mini / "train", report)  # the training images themselves pass
    refuse_test_images(run, calib)  # without the report only a whole copy is recognised (the fingerprint)


def test_training_images_and_runs_without_a_recorded_test_split_pass(mini, tmp_path):
    run = _run(mini, mini)
    refuse_test_images(run, mini / "train")
    refuse_test_images(run, None)  # calibration from the run's own training images
    refuse_test_images(None, mini / "test")  # no run.json: nothing to compare with (the fallback warns)
    del run["data"]["fingerprints"]["test"]
    refuse_test_images(run, mini / "test")


def test_export_plans_refuse_the_test_split_after_the_class_check(mini, tmp_path):
    options = ExportOptions(out=tmp_path / "b", int8=True, calib_data=mini / "test", calib_size=4,
                            heldout_size=200, seed=1, calib_candidates=1)
    with pytest.raises(DataError, match="holds test images"):
        _plan(CLASSES, _run(mini, mini), options, [], Reporter())
    with pytest.raises(DataError, match="differ from the model's"):
        _plan(["HEALTHY", "PNEUMONIA"], _run(mini, mini), options, [], Reporter())


def test_decision_samples_are_validation_images_or_a_said_fallback(mini, tmp_path):
    run = _run(mini, mini)
    heldout = scan_split(mini / "train").samples[:4]
    chosen = decision_samples(run, heldout, "calibration-folder images not used for calibration")
    assert chosen.split == "validation" and chosen.fallback is None and len(chosen.samples) == 2
    assert fallback_warning(chosen, True, True) is None

    run["split"]["val_root"] = str(tmp_path / "gone")
    chosen = decision_samples(run, heldout, "calibration-folder images not used for calibration")
    assert chosen.samples == heldout
    assert chosen.split == "held-out (calibration-folder images not used for calibration)"
    assert "validation images are not on this machine" in str(chosen.fallback)
    warning = fallback_warning(chosen, True, True)
    assert warning is not None
    assert "the temperature and the decision threshold are chosen on 4 images of the held-out" in warning
    assert "not on the run's validation split" in warning
    assert "probability_calibration.fitted_on and decision.split" in warning
    assert fallback_warning(chosen, False, False) is None  # --temperature given, no --operating-point

    chosen = decision_samples(None, heldout, "x")
    assert "no run.json" in str(chosen.fallback)
    assert "fitted_on)" in str(fallback_warning(chosen, True, False))


def test_a_given_val_folder_is_held_out_from_its_own_root_and_recorded_there(mini, tmp_path):
    """A run trained with a val/ folder names its validation images relative to that folder."""
    given = copy_tree(mini / "test", tmp_path / "d" / "val")
    run = _run(mini, mini)
    train = sorted(p.relative_to(mini / "train").as_posix() for p in (mini / "train").rglob("*.jpeg"))
    val = sorted(p.relative_to(given).as_posix() for p in given.rglob("*.jpeg"))
    run["split"] = {"train_root": str(mini / "train"), "val_root": str(given), "train": train, "val": val}
    plan = plan_images(class_names=CLASSES, calib_data=None, run=run, calib_size=8, heldout_size=200, seed=1,
                       need_calibration=True)
    assert sorted(s.rel for s in plan.heldout) == val
    assert all(s.path.parent.parent == given for s in plan.heldout)
    assert sample_record(plan.heldout, plan.root, 2)["root"].endswith("d/val")
    assert sample_record(plan.candidates[0], plan.root, 1)["root"].endswith("kermany-mini/train")
