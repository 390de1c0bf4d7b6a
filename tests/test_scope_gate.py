"""The gate's pixel and learned stages, and how the runtime reads them from a bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecxr.backends.base import FEATURES, LOGITS, named_outputs
from edgecxr.core.data.decode import decode_file
from edgecxr.scope.pixels import PixelRules, statistics

SAMPLES = Path(__file__).parents[1] / "edgecxr" / "samples" / "chest-xrays"


def sample_rules() -> PixelRules:
    return PixelRules.fit([statistics(decode_file(p).pixels) for p in sorted(SAMPLES.glob("*.jpeg"))])


@pytest.mark.parametrize("name, pixels, code", [
    ("grey frame", np.full((1024, 1024), 0.5), "blank"),
    ("black frame", np.zeros((300, 400)), "blank"),
    ("white frame", np.ones((300, 400)), "blank"),
    ("uniform noise", np.random.default_rng(0).random((800, 800)), "noise"),
    ("salt and pepper", (np.random.default_rng(1).random((600, 600)) > 0.5).astype(float), "noise"),
    ("checkerboard", np.kron(np.indices((8, 8)).sum(0) % 2, np.ones((64, 64))).astype(float), "saturated"),
    ("colour photo", np.random.default_rng(2).random((50, 60, 3)).repeat(8, 0).repeat(8, 1), "colour"),
    ("dark frame", np.tile(np.linspace(0.0, 0.12, 400), (300, 1)), "underexposed"),
    ("bright frame", np.tile(np.linspace(0.88, 1.0, 400), (300, 1)), "overexposed"),
])
def test_frames_no_radiograph_looks_like_are_refused_by_the_pixel_stage(name, pixels, code):
    refusal = sample_rules().check(statistics(pixels))
    assert refusal is not None and refusal.code == code, (name, refusal)
    assert refusal.stage == "pixels" and refusal.reason and refusal.threshold is not None


def test_every_sample_radiograph_passes_the_pixel_stage_and_the_rules_round_trip():
    rules = sample_rules()
    for path in sorted(SAMPLES.iterdir()):
        if path.suffix in (".jpeg", ".dcm"):
            assert rules.check(statistics(decode_file(path).pixels)) is None, path.name
    assert PixelRules.from_manifest(json.loads(json.dumps(rules.to_manifest()))) == rules


def test_statistics_do_not_depend_on_the_image_size():
    """A radiograph and the same radiograph at four times the pixels give nearly the same numbers."""
    pixels = decode_file(next(SAMPLES.glob("NORMAL-IM-0010*.jpeg"))).pixels
    big = np.asarray(Image.fromarray((pixels * 255).astype(np.uint8)).resize(
        (pixels.shape[1] * 2, pixels.shape[0] * 2), Image.BILINEAR), dtype=np.float32) / 255
    small, large = statistics(pixels), statistics(big)
    for key in ("contrast", "mean", "smoothness"):
        assert abs(small[key] - large[key]) < 0.02, key


def test_a_graph_with_one_output_still_gives_logits_by_name():
    logits = np.zeros((2, 3))
    assert named_outputs(["output_0"], [logits])[LOGITS] is logits
    both = named_outputs(["logits", "features"], [logits, np.ones((2, 5))])
    assert both[FEATURES].shape == (2, 5)


def test_the_exported_bundle_records_a_gate_every_engine_returns_features_for(bundle_dir):
    from edgecxr.backends import open_runner
    from edgecxr.core.bundle import load_bundle
    from edgecxr.scope.gate import Gate

    bundle = load_bundle(bundle_dir)  # verifies gate.npz against its sha256 too
    record = bundle.manifest["gate"]
    assert {"pixels", "learned", "fit", "validation"} <= set(record)
    assert "gate.npz" in [f["path"] for f in bundle.manifest["files"]]
    validation = record["validation"]
    assert validation["images"] > 0 and 0 <= validation["refusal_rate"] <= 0.5
    assert abs(sum(validation["label_shares"].values()) - 1) < 1e-6
    gate = Gate.from_bundle(bundle)
    assert gate.missing == [] and gate.learned is not None
    x = np.stack([bundle.spec(decode_file(p).pixels) for p in sorted(SAMPLES.glob("*.jpeg"))[:4]])
    for artifact in bundle.artifacts:
        if artifact.backend == "tensorrt":
            continue
        with open_runner(artifact.backend, artifact.path) as runner:
            outputs = runner.infer_outputs(x)
        assert outputs[FEATURES].shape == (4, sum(p["size"] for p in bundle.manifest["output"]["features"]["layout"]))
        judged = gate.judge(outputs[FEATURES], 4)
        assert all(np.isfinite(score) for score, _ in judged), artifact.name


def test_a_bundle_without_the_gate_says_so_and_answers_as_before(bundle_dir, tmp_path):
    from edgecxr.core.bundle import load_bundle, manifest_checksum
    from edgecxr.scope.gate import Gate

    old = shutil.copytree(bundle_dir, tmp_path / "old")
    manifest = json.loads((old / "bundle.json").read_text())
    del manifest["gate"]
    manifest["checksum"] = manifest_checksum(manifest)
    (old / "bundle.json").write_text(json.dumps(manifest))
    gate = Gate.from_bundle(load_bundle(old))
    assert gate.missing == ["pixels", "learned"] and "re-export" in gate.describe()
    assert gate.judge(np.zeros((2, 4)), 2) == [(None, None), (None, None)]
    assert gate.check_pixels(np.full((64, 64), 0.5)) is None


def test_prepare_refuses_before_the_engine_and_keeps_the_reason(bundle_dir, tmp_path):
    from edgecxr.core.bundle import load_bundle
    from edgecxr.runtime.prepare import InputLimits, prepare
    from edgecxr.scope.gate import Gate

    bundle = load_bundle(bundle_dir)
    gate = Gate.from_bundle(bundle)
    Image.fromarray(np.full((300, 300), 90, np.uint8)).save(tmp_path / "blank.png")
    item = prepare(tmp_path / "blank.png", bundle.spec, InputLimits(), gate)
    assert item.tensor is None and item.error is None and item.sha256
    assert item.refusal is not None and (item.refusal.stage, item.refusal.code) == ("pixels", "blank")
    chest = prepare(next(SAMPLES.glob("*.jpeg")), bundle.spec, InputLimits(), gate)
    assert chest.refusal is None and chest.tensor is not None
