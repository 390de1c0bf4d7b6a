"""gate-check's report: its statistics against hand-computed values, its targets, its three files."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from edgecxr.parity.gate_report import check_targets, gate_score, summarise, write_report
from tests.tools import require_module


def _row(group: str, kind: str, *, refused: bool = False, stage: str | None = None, score: float | None = None,
         threshold: float = 0.5) -> dict:
    return {"path": f"/x/{group}/{kind}", "group": group, "kind": kind, "in_scope": group == "in_scope",
            "source": "test", "refused": refused, "stage": stage, "code": stage and f"{stage}_code",
            "score": score, "threshold": threshold}


def _passing_rows() -> list[dict]:
    """200 in-scope images (1 refused: 0.5%) and out-of-scope sets that meet every target."""
    rows = [_row("in_scope", "NORMAL", score=0.001 * i) for i in range(199)]
    rows.append(_row("in_scope", "PNEUMONIA", refused=True, stage="learned", score=0.6))
    rows += [_row("synthetic", "blank_grey", refused=True, stage="pixels") for _ in range(5)]
    rows += [_row("photo", "colour", refused=True, stage="learned", score=5.0 + i) for i in range(20)]
    rows += [_row("other_modality", "ct_dicom", refused=True, stage="tags") for _ in range(10)]
    rows += [_row("other_modality", "ct_png", refused=True, stage="learned", score=3.0) for _ in range(10)]
    rows += [_row("wrong_orientation", "rotated_90", refused=i % 2 == 0, stage="learned" if i % 2 == 0 else None,
                  score=0.7 if i % 2 == 0 else 0.3) for i in range(10)]
    return rows


def test_auroc_ranks_early_refusals_above_every_score_and_counts_ties_half():
    inside = [_row("in_scope", "NORMAL", score=s) for s in (0.1, 0.2, 0.3, 0.4)]
    outside = [_row("photo", "colour", refused=True, stage="pixels"),
               _row("photo", "colour", score=0.35), _row("photo", "grey", score=0.05),
               _row("photo", "grey", score=0.2)]
    group = summarise(inside + outside)["groups"]["photo"]
    # by hand, pairs (out, in) won: +inf beats 4, 0.35 beats 3, 0.05 beats 0, 0.2 beats 1 and ties 1 (= 1.5)
    assert group["auroc"] == pytest.approx((4 + 3 + 0 + 1.5) / 16)  # 0.53125
    # the learned score alone: the frame refused by pixels has none, so 3 x 4 pairs
    assert group["auroc_learned"] == pytest.approx((3 + 0 + 1.5) / 12)  # 0.375
    assert group["n_learned"] == 3
    assert group["by_stage"] == {"pixels": 1}
    assert gate_score(outside[0]) == math.inf and gate_score(outside[1]) == 0.35
    # an in-scope image refused by pixels counts against the gate's AUROC too
    inside[0] = _row("in_scope", "NORMAL", refused=True, stage="pixels")
    group = summarise(inside + outside)["groups"]["photo"]
    assert group["auroc"] == pytest.approx((3.5 + 2 + 0 + 0.5) / 16)


def test_refusal_rates_carry_wilson_intervals():
    rows = [_row("in_scope", "NORMAL", score=0.1) for _ in range(99)]
    rows.append(_row("in_scope", "NORMAL", refused=True, stage="learned", score=0.9))
    rows += [_row("synthetic", "blank_black", refused=True, stage="pixels") for _ in range(10)]
    summary = summarise(rows)
    inside = summary["groups"]["in_scope"]
    assert (inside["n"], inside["refused"], inside["rate"]) == (100, 1, 0.01)
    # Wilson 95% for 1/100 by hand: centre (0.01 + z^2/200) / (1 + z^2/100) = 0.028127,
    # half-width z * sqrt(0.01 * 0.99 / 100 + z^2 / 40000) / (1 + z^2/100) = 0.026359
    assert inside["ci95"] == pytest.approx([0.001768, 0.054486], abs=2e-6)
    synthetic = summary["groups"]["synthetic"]
    # 10/10: upper bound 1, lower bound n / (n + z^2) = 10 / 13.841459
    assert synthetic["ci95"] == pytest.approx([0.722467, 1.0], abs=2e-6)
    assert summary["kinds"]["synthetic"]["blank_black"]["rate"] == 1.0
    assert summary["threshold"] == 0.5


def test_targets_pass_and_each_miss_is_named():
    rows = _passing_rows()
    summary = summarise(rows)
    assert check_targets(summary) == [] and summary["passed"]
    # half at 0.7 beat all 200 chests, half at 0.3 all but the refused one at 0.6: 1995 / 2000
    assert summary["groups"]["wrong_orientation"]["auroc"] == pytest.approx(0.9975)

    # one more refused in-scope image of 200: 1.0% is still within the target, two more are not
    rows[0] = _row("in_scope", "NORMAL", refused=True, stage="pixels")
    assert check_targets(summarise(rows)) == []
    rows[1] = _row("in_scope", "NORMAL", refused=True, stage="pixels")
    assert check_targets(summarise(rows)) == ["false refusals of in-scope images <= 1.0%: 1.50%"]

    rows = _passing_rows()
    rows.append(_row("synthetic", "noise_uniform", score=0.2))  # one frame answered
    rows = [r for r in rows if r["group"] != "wrong_orientation"]  # and a set never built
    failures = check_targets(summarise(rows))
    assert failures == ["synthetic frames: 100% refused: 83.33%",
                        "wrongly shown chest images: AUROC >= 0.95: not measured (no images)"]

    rows = _passing_rows()  # a veterinary thorax DX answered as if it were a child's chest
    rows.append(_row("other_modality", "veterinary_dx", score=0.1))
    assert "veterinary images (veterinary_dx): 100% refused: 0.00%" in check_targets(summarise(rows))
    rows[-1] = _row("other_modality", "veterinary_dx", refused=True, stage="tags")
    assert check_targets(summarise(rows)) == []

    rows = _passing_rows()
    for r in rows:  # photographs refused, but scored no higher than chests: refusal rate met, AUROC not
        if r["group"] == "photo":
            r["score"] = 0.1
    failures = check_targets(summarise(rows))
    assert len(failures) == 1 and failures[0].startswith("photographs: AUROC >= 0.99: 0.")


def test_the_report_writes_json_markdown_and_a_figure(tmp_path):
    require_module("matplotlib")
    rows = _passing_rows()
    # one photograph answered, scored above 21 of the 200 chests: 20/21 refused (95.2%) meets the
    # rate, but AUROC (20 x 200 + 21) / (21 x 200) = 0.957381 misses 0.99
    rows.append(_row("photo", "greyscale_from_colour", score=0.0205))
    notes = {"photo": ["scikit-image is not installed: its sample photographs are left out (pip install x)"],
             "other_modality": ["pydicom/data/test_files/rtdose.dcm left out: edgecxr does not decode it "
                                "(multi_frame)"]}
    summary = write_report(rows, tmp_path, notes=notes)
    written = json.loads((tmp_path / "gate-check.json").read_text())
    assert written["groups"]["photo"]["refused"] == 20 and written["groups"]["photo"]["n"] == 21
    assert written["groups"]["photo"]["auroc"] == pytest.approx(4021 / 4200)
    assert written["failures"] == summary["failures"] == ["photographs: AUROC >= 0.99: 0.9574"]
    md = (tmp_path / "gate-check.md").read_text()
    assert md.startswith("# Intended-use gate check: targets missed")
    assert "| photographs | 21 | 20 | 95.2% (" in md
    assert "| other modalities | 10 | 0 | 10 | 0 |" in md  # refusals by stage: tags, pixels, learned, other
    assert "| photographs: AUROC >= 0.99 | 0.9574 | **no** |" in md
    assert "![score distributions and refusal rates](gate-check.png)" in md
    assert "- photographs: scikit-image is not installed" in md
    assert "- other modalities: 1 package files left out" in md and written["notes"] == notes
    with Image.open(tmp_path / "gate-check.png") as figure:
        assert figure.format == "PNG" and figure.width > 800 and figure.height > 300
