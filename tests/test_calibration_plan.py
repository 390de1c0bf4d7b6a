"""Which images calibrate INT8 and which check it: held-out images are ones the model never trained on."""

from __future__ import annotations

from edgecxr.exporters.calibration import plan_images


def _run(mini, val: list[str]) -> dict:
    train = sorted(p.relative_to(mini / "train").as_posix() for p in (mini / "train").rglob("*.jpeg"))
    return {"classes": ["NORMAL", "PNEUMONIA"],
            "split": {"train_root": str(mini / "train"), "train": [r for r in train if r not in val], "val": val}}


def test_heldout_from_a_run_is_its_validation_split_only(mini):
    val = ["NORMAL/" + p.name for p in sorted((mini / "train" / "NORMAL").glob("*.jpeg"))[:3]]
    val += ["PNEUMONIA/" + p.name for p in sorted((mini / "train" / "PNEUMONIA").glob("*.jpeg"))[:3]]
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
