"""Explanation maps on the shipped reference engine: a map for a real X-ray on a fixed scale,
no map (with the reason) for a flat image, maps that beat a random map, and a watcher that
writes them after the result line without ever blocking on them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.bundle import load_bundle
from edgecxr.core.preprocess import load_model_inputs
from edgecxr.core.results import read_results
from edgecxr.explain.faithfulness import deletion_insertion, random_heat, spearman
from edgecxr.explain.occlusion import DEFAULT_GRID, FLAT_INPUT, occlusion_map
from edgecxr.explain.overlay import BAR, MIN_SIDE, overlay
from edgecxr.runtime.default_bundle import resolve_bundle
from tests.tools import require_module

require_module("onnxruntime")


@pytest.fixture(scope="module")
def reference():
    from edgecxr.backends import RunnerOptions, open_runner

    bundle = load_bundle(resolve_bundle(None))
    artifact = bundle.find("onnxruntime", "int8", role="cpu")[0]
    runner = open_runner(artifact.backend, artifact.path, RunnerOptions(threads=1))
    yield bundle, runner
    runner.close()


def test_overlay_colour_scale_is_fixed_not_stretched():
    black = Image.new("RGB", (128, 128))
    full = np.asarray(overlay(black, np.full((128, 128), 0.30, np.float32)))
    half = np.asarray(overlay(black, np.full((128, 128), 0.15, np.float32)))
    none = np.asarray(overlay(black, np.full((128, 128), -0.2, np.float32)))
    assert full.shape == (MIN_SIDE + BAR, MIN_SIDE, 3)
    assert tuple(full[100, 100]) == (178, 178, 0)  # 0.7 opacity of yellow: the top of the scale
    assert tuple(half[100, 100]) == (126, 63, 0)  # a uniform half-strength map stays half strength
    assert tuple(none[100, 100]) == (0, 0, 0)  # covering that helped the label: no colour


def test_map_on_the_deployed_engine_and_none_for_a_flat_image(reference, mini_test_images):
    bundle, runner = reference
    tensor = load_model_inputs([mini_test_images[-1]], bundle.spec)[0]
    found = occlusion_map(runner.infer, tensor, grid=DEFAULT_GRID)
    assert found.reason is None
    assert found.heat.shape == (128, 128) and found.falls.shape == (7, 7) and found.passes == 50
    assert found.falls.max() - found.falls.min() >= 0.02
    flat = bundle.spec(np.full((224, 224), 0.5, np.float32))
    none = occlusion_map(runner.infer, flat)
    assert none.reason == FLAT_INPUT and not none.heat.any()


def test_maps_beat_a_random_map(reference, mini_test_images):
    """On NORMAL calls: this model gives a blank frame P(PNEUMONIA) = 0.88, so its PNEUMONIA calls move
    little under any covering and both curves stay flat whatever the map (see docs/explain.md)."""
    bundle, runner = reference
    images = [p for p in mini_test_images if p.parent.name == "NORMAL"][:4]
    rng = np.random.default_rng(0)
    ours, chance = [], []
    for tensor in load_model_inputs(images, bundle.spec):
        found = occlusion_map(runner.infer, tensor)
        ours.append(deletion_insertion(runner.infer, tensor, found.heat, found.target, rng))
        chance.append(deletion_insertion(runner.infer, tensor, random_heat(DEFAULT_GRID, (128, 128), rng),
                                         found.target, rng))
    (del_ours, ins_ours), (del_rand, ins_rand) = np.mean(ours, axis=0), np.mean(chance, axis=0)
    assert ins_ours > ins_rand + 0.02, (ins_ours, ins_rand)
    assert del_ours < del_rand - 0.15, (del_ours, del_rand)


def test_spearman_matches_hand_values():
    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == pytest.approx(-1.0)
    # ties take average ranks: x ranks (1.5, 1.5, 3, 4), y ranks (1, 2, 3, 4) -> rho = 0.9487
    assert spearman(np.array([1, 1, 2, 3]), np.array([1, 2, 3, 4])) == pytest.approx(0.9486833, abs=1e-6)
    assert spearman(np.zeros(4), np.arange(4)) == 0.0


def test_watch_explain_writes_maps_after_the_results(tmp_path, mini_test_images):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    # [-2]: the last image's map is flat (covering any square moves its calibrated P by under 2 points)
    for path in (mini_test_images[0], mini_test_images[-2]):
        shutil.copyfile(path, inbox / path.name)
    Image.new("L", (224, 224), 128).save(inbox / "blank.png")
    (inbox / "broken.jpeg").write_bytes(b"\xff\xd8 not a jpeg")
    result = CliRunner().invoke(app, ["watch", str(inbox), "--once", "--out", str(out), "--settle-seconds", "0",
                                      "--explain"])
    assert result.exit_code == 0, result.output
    records = {r["path"]: r for r in read_results(out)}
    assert len(records) == 4 and not any("map" in r for r in records.values())  # the line is not touched
    for name in (mini_test_images[0].name, mini_test_images[-2].name):
        sha = records[name]["sha256"]
        meta = json.loads((out / "maps" / f"{sha}.json").read_text())
        assert meta["map"] == f"{sha}.png" and meta["label"] == records[name]["label"]
        assert meta["explained"] == meta["label"]
        assert meta["p_explained"] == pytest.approx(records[name]["probabilities"][meta["label"]], abs=1e-4)
        assert meta["scale"]["full_colour_at"] == 30 and len(meta["falls"]) == 7
        assert Image.open(out / "maps" / meta["map"]).size == (MIN_SIDE, MIN_SIDE + BAR)
    # a blank frame never reaches the engine now: the gate's pixel stage refuses it, so no map
    assert (records["blank.png"]["status"], records["blank.png"]["gate"]["code"]) == ("out_of_scope", "blank")
    assert not list((out / "maps").glob(f"{records['blank.png']['sha256']}.*"))
    assert records["broken.jpeg"]["status"] == "error"
    assert len(list((out / "maps").glob("*.json"))) == 2  # a refused file gets no map
    assert "explain: 2 map(s) written, 0 without a map" in result.output


def test_a_full_queue_drops_with_a_log_line_and_never_blocks(tmp_path, reference, mini_test_images):
    from edgecxr.backends import RunnerOptions, open_runner
    from edgecxr.runtime.explain_sink import ExplainSink
    from edgecxr.runtime.prepare import InputLimits, prepare

    bundle, _ = reference
    artifact = bundle.find("onnxruntime", "int8", role="cpu")[0]
    logs: list[str] = []
    sink = ExplainSink(open_runner(artifact.backend, artifact.path, RunnerOptions(threads=1)), bundle.spec,
                       tmp_path, bundle.class_names, "onnxruntime/int8", queue_size=1, log=logs.append)
    items = [prepare(p, bundle.spec, InputLimits()) for p in mini_test_images[:5]]
    for item in items:
        sink.accept({"status": "ok", "sha256": item.sha256, "path": item.path.name, "label": "UNCERTAIN",
                     "positive_class": "PNEUMONIA"}, item, item.path)
    dropped = sink.counts["dropped"]
    sink.close()
    assert dropped in (3, 4)  # one in the worker's hands (or not yet), one waiting, the rest dropped
    assert sum("no map for" in m and "dropped so far" in m for m in logs) == dropped
    written = [json.loads(p.read_text()) for p in (tmp_path / "maps").glob("*.json")]
    assert len(written) == 5 - dropped
    assert all(m["label"] == "UNCERTAIN" and m["explained"] == "PNEUMONIA" for m in written)  # the band's class
    assert f"{dropped} dropped (queue full)" in logs[-1]
