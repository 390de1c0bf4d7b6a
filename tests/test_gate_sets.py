"""gate-check's evaluation sets: real files, built from the repository's chest samples and the
image files that ship inside installed packages, each read back by the real decoder."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecxr.core.data.decode import decode_file
from edgecxr.parity.gate_sets import GROUPS, PATTERNS, TRANSFORMS, build_sets, read_cases
from tests.tools import require_module

SAMPLES = Path(__file__).parents[1] / "edgecxr" / "samples" / "chest-xrays"
LIMIT = 13  # every synthetic pattern once, and every kind of the other groups


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    for module in ("pydicom", "skimage", "sklearn", "matplotlib"):
        require_module(module)
    out = tmp_path_factory.mktemp("sets")
    ticks = []
    sets = build_sets(out, SAMPLES, seed=7, limit_per_group=LIMIT, advance=ticks.append)
    return out, sets, ticks


def _generated(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "cases.jsonl"}


def test_every_group_is_built_with_its_promised_kinds(built):
    out, sets, ticks = built
    groups = Counter(c.group for c in sets)
    assert set(groups) == set(GROUPS)
    assert all(0 < n <= LIMIT for n in groups.values())
    kinds = {g: {c.kind for c in sets if c.group == g} for g in GROUPS}
    assert kinds["in_scope"] == {"NORMAL", "PNEUMONIA"}
    assert kinds["synthetic"] == set(PATTERNS)
    assert kinds["wrong_orientation"] == set(TRANSFORMS)
    assert {"colour", "greyscale", "greyscale_from_colour"} <= kinds["photo"]
    # other modalities come as DICOM and as PNG of the same pictures, CT and MR among them
    assert {"ct_dicom", "mr_dicom"} <= kinds["other_modality"]
    assert any(k.endswith("_png") for k in kinds["other_modality"])
    assert all(c.in_scope == (c.group == "in_scope") for c in sets)
    assert len(ticks) == len(sets)
    # in-scope images are referenced in place, everything else is written under out
    assert all(c.path.parent.resolve() == SAMPLES.resolve() for c in sets if c.group == "in_scope")
    assert all(out in c.path.parents for c in sets if c.group != "in_scope")
    assert [(c.path, c.group, c.kind) for c in read_cases(out)] == [(c.path, c.group, c.kind) for c in sets]


def test_every_file_decodes_with_the_real_decoder(built):
    _, sets, _ = built
    for case in sets:
        pixels = decode_file(case.path).pixels
        assert pixels.ndim in (2, 3) and 0.0 <= pixels.min() <= pixels.max() <= 1.0, case.path


def test_synthetic_frames_hold_what_their_kind_says(built):
    import pydicom

    _, sets, _ = built
    synthetic = [c for c in sets if c.group == "synthetic"]
    suffixes = Counter(c.path.suffix for c in synthetic)
    assert suffixes[".dcm"] >= 4 and suffixes[".png"] >= 8  # all three formats in a set of 13
    assert any(Image.open(c.path).mode.startswith("I") for c in synthetic if c.path.suffix == ".png")  # 16-bit
    for case in synthetic:
        pixels = decode_file(case.path).pixels
        if case.path.suffix == ".dcm":
            ds = pydicom.dcmread(case.path)
            assert (ds.Modality, ds.PhotometricInterpretation, ds.BodyPartExamined) == ("DX", "MONOCHROME2", "CHEST")
            continue  # without a window the viewer pipeline shows the full range: values are its own
        if case.kind == "blank_black":
            assert pixels.max() == 0.0
        elif case.kind == "blank_white":
            assert pixels.min() == 1.0
        elif case.kind.startswith("constant_"):
            assert np.allclose(pixels, float(case.kind.split("_")[1]), atol=1 / 255)
        elif case.kind == "gradient_horizontal":
            assert np.all(np.diff(pixels[0]) >= 0) and pixels[0, 0] == 0.0 and pixels[0, -1] == 1.0
        elif case.kind.startswith("noise_"):
            assert pixels.std() > 0.1


def test_wrongly_shown_chests_are_the_source_transformed(built):
    _, sets, _ = built
    by_name = {p.name: p for p in SAMPLES.iterdir()}
    for case in (c for c in sets if c.group == "wrong_orientation"):
        name = case.source.split(",")[0].split("/", 1)[1]
        source = decode_file(by_name[name]).pixels
        shown = decode_file(case.path).pixels
        expected = {"rotated_90": np.rot90(source, 1), "rotated_180": np.rot90(source, 2),
                    "rotated_270": np.rot90(source, 3), "inverted": 1.0 - source,
                    "flipped_top_bottom": source[::-1]}.get(case.kind)
        if expected is not None:
            assert shown.shape == expected.shape and np.abs(shown - expected).max() <= 1 / 255 + 1e-6, case.path
        else:  # a crop of 25-45% of each side
            assert case.kind == "crop"
            for side, whole in zip(shown.shape[:2], source.shape[:2]):
                assert 0.25 * whole - 1 <= side <= 0.45 * whole


def test_every_package_file_is_attributed(built):
    out, sets, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    attributed = {(a["package"], a["path"]) for a in manifest["attributions"]}
    assert all(a["version"] and a["licence"] and a["file_licence"] for a in manifest["attributions"])
    for case in (c for c in sets if c.group in ("photo", "other_modality")):
        package, rest = case.source.split(" ", 1)
        relpath = rest.split(": ", 1)[1].split(" (")[0]
        assert (package, relpath) in attributed, case.source
    assert manifest["counts"] == dict(Counter(c.group for c in sets))
    # what was left out is said, file by file (pydicom's multi-frame and tiny codec tests)
    assert any("multi_frame" in note for note in manifest["notes"]["other_modality"])


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(built, tmp_path):
    out, sets, _ = built
    again = build_sets(tmp_path / "again", SAMPLES, seed=7, limit_per_group=LIMIT)
    assert _generated(tmp_path / "again") == _generated(out)
    assert [(c.group, c.kind, c.source) for c in again] == [(c.group, c.kind, c.source) for c in sets]
    build_sets(tmp_path / "other", SAMPLES, seed=8, limit_per_group=LIMIT)
    first = _generated(out)
    changed = {k for k, v in _generated(tmp_path / "other").items() if first.get(k) != v}
    assert any("noise" in k for k in changed) and any("crop" in k or "wrong_orientation" in k for k in changed)
    assert not any("blank_black" in k for k in changed)  # nothing random in a blank frame


def test_without_an_in_scope_folder_the_manifest_says_what_is_not_measured(tmp_path):
    require_module("pydicom")
    sets = build_sets(tmp_path, None, limit_per_group=2)
    assert not [c for c in sets if c.group in ("in_scope", "wrong_orientation")]
    assert "false refusals are not measured" in sets.notes["in_scope"][0]
    assert Counter(c.group for c in sets)["synthetic"] == 2
