"""The other-CPU-class parity harness (deploy/bench/parity_emulated_cpu.py): inputs decoded and scored
by FP32 natively, an INT8 engine scored by a worker under `qemu-x86_64 -cpu Haswell`, whose
CPUID must hide VNNI before it may report."""

from __future__ import annotations

import numpy as np
import pytest

from edgecxr.core.bundle import load_bundle
from edgecxr.core.decision import DecisionRule
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.metrics import softmax
from edgecxr.core.sysinfo import cpu_info
from edgecxr.parity import emulated as em
from edgecxr.parity.emulated_worker import visible_dot_products
from edgecxr.runtime.default_bundle import PACKAGED as REFERENCE_BUNDLE
from tests.tools import not_applicable, require_module, require_tool

require_module("onnxruntime")


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def two_images(mini, tmp_path_factory):
    """One NORMAL and one PNEUMONIA test image, preprocessed and scored by FP32 natively."""
    bundle = load_bundle(REFERENCE_BUNDLE)
    prepared = em.prepare(bundle, mini / "test", 2, 1216, "stratified", quiet)
    path = tmp_path_factory.mktemp("emulated") / "inputs.npy"
    np.save(path, prepared.inputs)
    return bundle, prepared, path


def test_int8_under_emulated_haswell_sees_no_vnni_and_agrees_with_fp32(two_images, tmp_path):
    require_tool("qemu-x86_64")
    bundle, prepared, inputs = two_images
    engine = next(a for a in bundle.artifacts if a.name == "onnxruntime-int8")
    seen: list[str] = []
    logits, meta = em.run_worker(em.emulated("Haswell"), [engine], inputs, tmp_path / "out.npz", batch=2,
                                 progress=seen.append, timeout=300)
    features = meta["cpu"]["features"]
    assert "Haswell" in meta["cpu"]["brand"] and features["avx2"]
    assert visible_dot_products(features) == [] and not features["avx512f"]
    assert "avx512_vnni" not in meta["engines"][engine.name]["hardware"]["isa"]
    assert seen and "onnxruntime-int8 2/2 images" in seen[-1]
    summary = em.summarize(prepared, logits[engine.name], DecisionRule.from_manifest(bundle.manifest),
                           em.native_logits(engine, prepared.inputs))
    assert summary["images"] == 2 and summary["agreement"] == 1.0 and summary["flips"] == []
    assert summary["vs_native"]["changes"] == 0 and summary["vs_native"]["max_abs_logit_diff"] < 0.05


def test_worker_refuses_to_stand_for_avx2_where_vnni_is_visible(two_images, tmp_path):
    if not visible_dot_products(cpu_info()["features"]):
        not_applicable("this CPU has no VNNI/AMX, so a native worker has nothing to refuse")
    bundle, _prepared, inputs = two_images
    pretend = em.Where("this CPU, claimed AVX2-only", require_no_vnni=True)
    with pytest.raises(EdgecxrError, match="refused to report: refused: this process still sees"):
        em.run_worker(pretend, bundle.find(role="reference"), inputs, tmp_path / "out.npz", progress=quiet)
    assert not (tmp_path / "out.npz").exists()


def test_subsets_are_stratified_or_nearest_the_threshold():
    labels = np.array([0] * 30 + [1] * 70)
    chosen = em.pick(labels, 10, 7, "stratified", None)
    assert len(chosen) == 10 and (labels[chosen] == 0).sum() == 3
    assert np.array_equal(chosen, em.pick(labels, 10, 7, "stratified", None))
    p = np.linspace(0.0, 1.0, 100)
    nearest = em.pick(labels, 4, 7, "boundary", p, cut=0.5)
    assert np.all(np.abs(p[nearest] - 0.5) <= 0.02) and len(nearest) == 4
    assert len(em.pick(labels, None, 7, "stratified", None)) == 100
    assert visible_dot_products(None) == ["(CPUID could not be read)"]


def test_boundary_pick_keeps_the_images_nearest_the_threshold(mini):
    bundle = load_bundle(REFERENCE_BUNDLE)
    prepared = em.prepare(bundle, mini / "test", 4, 1216, "boundary", quiet)
    p = softmax(prepared.reference)[:, DecisionRule.from_manifest(bundle.manifest).positive_index]
    assert len(prepared.inputs) == 4 and prepared.total == 20 and prepared.how.startswith("boundary")
    assert prepared.left_out_margin is not None and np.abs(p - 0.5).max() <= prepared.left_out_margin


def test_a_time_budget_stops_before_the_next_batch_and_keeps_what_was_scored(two_images, tmp_path):
    bundle, prepared, inputs = two_images
    seen: list[str] = []
    logits, _meta = em.run_worker(em.Where("this CPU"), bundle.find(role="reference"), inputs, tmp_path / "o.npz",
                                  batch=1, progress=seen.append, minutes=1e-9)
    assert logits["onnxruntime-fp32"].shape == (1, 2) and "stopped after" in seen[-1]
    rule = DecisionRule.from_manifest(bundle.manifest)
    assert em.summarize(prepared, logits["onnxruntime-fp32"], rule)["images"] == 1
