"""Which images calibrate INT8 and which check it: held-out images are ones the model never trained on."""

from __future__ import annotations

from edgecxr.exporters.calibration import plan_images


def _run(mini, val: list[str]) -> dict:
    train = sorted(p.relative_to(mini / "train").as_posix() for p in (mini / "train").rglob("*.jpeg"))
    return {"classes": ["NORMAL", "PNEUMONIA"],
            "split": {"train_root": str(mini / "train"), "train": [r for r in train if r not in val], "val": val}}


def _first(mini, n: int) -> list[str]:
    """The first n training images of each class, as a run's validation split names them."""
    return [f"{c}/{p.name}" for c in ("NORMAL", "PNEUMONIA") for p in sorted((mini / "train" / c).glob("*.jpeg"))[:n]]


def test_heldout_from_a_run_is_its_validation_split_only(mini):
    val = _first(mini, 3)
    run = _run(mini, val)
    plan = plan_images(class_names=run["classes"], calib_data=None, run=run, calib_size=8, heldout_size=200,
                       seed=1, need_calibration=True)
    assert sorted(s.rel for s in plan.heldout) == sorted(val)  # all of them, and no training image
    assert not {s.rel for s in plan.calibration} & set(val)
    assert "validation" in plan.heldout_source


def test_run_without_validation_says_its_heldout_images_were_trained_on(mini):
    run = _run(mini, [])
    plan = plan_images(class_names=run["classes"], calib_data=None, run=run, calib_size=8, heldout_size=200,
                       seed=1, need_calibration=True)
    assert len(plan.heldout) == 24 - 8 and "trained on them" in plan.heldout_source


def test_candidates_keep_the_first_draw_and_are_chosen_on_validation_images_not_held_out(mini):
    val = _first(mini, 4)
    run = _run(mini, val)
    one = plan_images(class_names=run["classes"], calib_data=None, run=run, calib_size=6, heldout_size=4,
                      seed=7, need_calibration=True)
    three = plan_images(class_names=run["classes"], calib_data=None, run=run, calib_size=6, heldout_size=4,
                        seed=7, need_calibration=True, candidates=3)
    assert three.seeds == [7, 8, 9] and len(three.candidates) == 3
    assert [s.rel for s in three.candidates[0]] == [s.rel for s in one.calibration]  # same draw as before
    assert len({tuple(s.rel for s in c) for c in three.candidates}) > 1  # the seeds draw different samples
    assert [s.rel for s in three.heldout] == [s.rel for s in one.heldout] and not one.selection
    selection, heldout = {s.rel for s in three.selection}, {s.rel for s in three.heldout}
    assert selection == set(val) - heldout and len(selection) == 4
    assert not selection & {s.rel for s in three.calibration}
    assert "validation" in three.selection_source


def test_candidates_with_no_image_left_to_choose_by_are_refused_with_the_fix(mini):
    import pytest

    from edgecxr.core.errors import DataError

    with pytest.raises(DataError, match="no images left to choose between 4 calibration candidates") as caught:
        plan_images(class_names=["NORMAL", "PNEUMONIA"], calib_data=mini / "train", run=None, calib_size=10,
                    heldout_size=200, seed=1, need_calibration=True, candidates=4)
    assert "--calib-candidates 1" in str(caught.value.fix)


def test_the_default_falls_back_to_one_candidate_with_a_warning_an_explicit_number_does_not(mini, tmp_path):
    """Too few images to choose between the default four candidates: one is used and the export says so;
    asking for four explicitly keeps the refusal above."""
    import pytest

    from edgecxr.core.errors import DataError
    from edgecxr.core.progress import Reporter
    from edgecxr.exporters.pipeline import ExportOptions, _plan

    options = ExportOptions(out=tmp_path / "b", int8=True, calib_data=mini / "train", calib_size=10,
                            heldout_size=200, seed=1)
    warnings: list[str] = []
    plan = _plan(["NORMAL", "PNEUMONIA"], None, options, warnings, Reporter())
    assert plan.seeds == [1] and len(plan.candidates) == 1
    assert len(warnings) == 1 and "one candidate used" in warnings[0]
    options.calib_candidates = 4
    with pytest.raises(DataError, match="4 calibration candidates"):
        _plan(["NORMAL", "PNEUMONIA"], None, options, [], Reporter())
