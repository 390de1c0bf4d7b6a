"""The OpenVINO runner's burst path (async requests on THROUGHPUT streams) and its model cache,
on the shipped reference engine (no export needed)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgecxr.backends import RunnerOptions, open_runner
from edgecxr.core.bundle import load_bundle
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.preprocess import load_model_inputs
from edgecxr.runtime.default_bundle import PACKAGED
from tests.tools import require_module

require_module("openvino")


@pytest.fixture(scope="module")
def ir_and_inputs(mini_test_images):
    bundle = load_bundle(PACKAGED)
    return bundle.find(backend="openvino", precision="fp32")[0].path, load_model_inputs(mini_test_images[:11],
                                                                                       bundle.spec)


def test_burst_gives_each_image_its_own_answer_in_order(ir_and_inputs):
    ir, x = ir_and_inputs
    with open_runner("openvino", ir, RunnerOptions(async_bursts=False)) as plain:
        one_by_one = np.concatenate([plain.infer(x[i:i + 1]) for i in range(len(x))])
    with open_runner("openvino", ir, RunnerOptions()) as runner:
        burst = runner.infer(x)
        assert runner._streams is not None  # the burst went through the THROUGHPUT compilation
        again = runner.infer(x[::-1])
        single = runner.infer(x[3:4])
    np.testing.assert_allclose(burst, one_by_one, atol=1e-4)
    np.testing.assert_allclose(again, one_by_one[::-1], atol=1e-4)
    np.testing.assert_allclose(single, one_by_one[3:4], atol=1e-4)


def test_bursts_queued_behind_each_other_each_get_their_own_answers(ir_and_inputs):
    """The watcher submits the next batch before collecting the one in flight."""
    ir, x = ir_and_inputs
    with open_runner("openvino", ir, RunnerOptions(async_bursts=False)) as plain:
        expected = plain.infer(x)  # one synchronous request on the dynamic-batch graph
        assert plain.model.input(0).get_partial_shape().is_dynamic
    with open_runner("openvino", ir, RunnerOptions()) as runner:
        # both compilations take the batch-1 graph; the runner still takes any batch
        assert str(runner.model.input(0).get_partial_shape()) == "[1,3,128,128]"
        assert runner.input_shape == (None, 3, 128, 128)
        first, second, third = runner.submit(x[:4]), runner.submit(x[4:]), runner.submit(x[2:3])
        got = [third.result(), second.result(), first.result(), first.result()]  # any order, once each
        assert len(runner._idle) == len(x)  # every request came back; none was lost or reused early
    assert [len(g) for g in got] == [1, 7, 4, 4]
    np.testing.assert_allclose(np.concatenate([got[2], got[1]]), expected, atol=1e-4)
    np.testing.assert_allclose(got[0], expected[2:3], atol=1e-4)


def test_watch_pipelines_chunks_and_records_every_file_once(mini_test_images, tmp_path):
    from edgecxr.core.metrics import calibrated_softmax
    from edgecxr.core.results import read_results
    from edgecxr.runtime.classifier import Classifier
    from edgecxr.runtime.selection import choose
    from edgecxr.runtime.watcher import Watcher, WatchOptions

    inbox, bad = tmp_path / "inbox", "bad.jpeg"
    inbox.mkdir()
    for path in mini_test_images[:11]:
        (inbox / path.name).write_bytes(path.read_bytes())
    (inbox / bad).write_bytes(b"not an image")  # a refusal in the middle of a chunk
    bundle = load_bundle(PACKAGED)
    classifier = Classifier(bundle, choose(bundle, "openvino", "fp32"), RunnerOptions())
    options = WatchOptions(inbox=inbox, out=tmp_path / "out", settle_seconds=0, batch_size=3, once=True)
    Watcher(classifier, options, log=lambda m: None).run(threading.Event())
    records = {r["path"]: r for r in read_results(tmp_path / "out")}
    assert sorted(records) == sorted([bad, *(p.name for p in mini_test_images[:11])])
    assert len(read_results(tmp_path / "out")) == 12 and records[bad]["status"] == "error"
    assert classifier.runner._streams is not None  # chunks of 3 went through the async requests
    x = load_model_inputs(mini_test_images[:11], bundle.spec)
    with open_runner("openvino", bundle.find(backend="openvino", precision="fp32")[0].path,
                     RunnerOptions(async_bursts=False)) as plain:
        expected = calibrated_softmax(plain.infer(x), bundle.temperature)[:, 1]
    got = [records[p.name]["probabilities"]["PNEUMONIA"] for p in mini_test_images[:11]]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    classifier.close()


def test_model_cache_is_written_and_reused(ir_and_inputs, tmp_path):
    ir, x = ir_and_inputs
    cache = tmp_path / "cache"
    with open_runner("openvino", ir, RunnerOptions(cache_dir=str(cache))) as runner:
        first = runner.infer(x[:1])
    blobs = sorted(p.name for p in cache.iterdir())
    assert blobs, "no compiled blob in CACHE_DIR"
    with open_runner("openvino", ir, RunnerOptions(cache_dir=str(cache))) as runner:
        np.testing.assert_allclose(runner.infer(x[:1]), first, atol=1e-5)
    assert sorted(p.name for p in cache.iterdir()) == blobs  # reused, not compiled again


def test_unwritable_cache_only_costs_compile_time(ir_and_inputs, tmp_path):
    ir, x = ir_and_inputs
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with open_runner("openvino", ir, RunnerOptions(cache_dir=str(blocker / "cache"))) as runner:
        assert runner.infer(x[:2]).shape == (2, 2)


def test_wrong_input_is_refused_before_openvino(ir_and_inputs):
    ir, x = ir_and_inputs
    with open_runner("openvino", ir, RunnerOptions()) as runner, \
            pytest.raises(EdgecxrError, match=r"takes pixel_values of shape \('N', 3, 128, 128\)"):
        runner.infer(x[:, :, :32])


def test_watch_keeps_compiled_models_beside_its_results(mini_test_images, tmp_path):
    from typer.testing import CliRunner

    from edgecxr.cli.app import app

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for path in mini_test_images[:3]:
        (inbox / path.name).write_bytes(path.read_bytes())
    common = ["watch", str(inbox), "--bundle", str(PACKAGED), "--backend", "openvino", "--precision", "fp32",
              "--once", "--settle-seconds", "0"]
    result = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "a" / "model-cache").iterdir())
    result = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "b"), "--model-cache", "none"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "b" / "model-cache").exists()


def test_the_burst_benchmark_drives_benchmark_app_with_valid_flags(ir_and_inputs):
    from edgecxr.bench.openvino_burst import benchmark_app_fps

    ir, x = ir_and_inputs
    fps, settings = benchmark_app_fps(ir, [1, *x.shape[1:]], 1, 1)
    assert fps > 0  # a rate was parsed; its size is no test
    # like for like with the runner: f32 input on the batch-1 graph, f32 (not bf16) inference, 1 thread
    assert settings["input"] == "f32 [1,3,128,128]"
    assert "float32" in settings["INFERENCE_PRECISION_HINT"] and settings["INFERENCE_NUM_THREADS"] == "1"
