"""The OpenVINO runner's burst path (async requests on THROUGHPUT streams) and its model cache."""

from __future__ import annotations

import numpy as np
import pytest

from edgecxr.backends import RunnerOptions, open_runner
from edgecxr.bundle import load_bundle
from edgecxr.errors import EdgecxrError
from edgecxr.preprocess import load_model_inputs

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def ir_and_inputs(bundle_dir, mini_test_images):
    bundle = load_bundle(bundle_dir)
    return bundle.find(backend="openvino", precision="fp32")[0].path, load_model_inputs(mini_test_images[:11],
                                                                                       bundle.spec)


def test_burst_gives_each_image_its_own_answer_in_order(ir_and_inputs):
    ir, x = ir_and_inputs
    with open_runner("openvino", ir, RunnerOptions(async_bursts=False)) as plain:
        one_by_one = np.concatenate([plain.infer(x[i:i + 1]) for i in range(len(x))])
    with open_runner("openvino", ir, RunnerOptions()) as runner:
        burst = runner.infer(x)
        assert runner._queue is not None  # the burst went through the async queue
        again = runner.infer(x[::-1])
        single = runner.infer(x[3:4])
    np.testing.assert_allclose(burst, one_by_one, atol=1e-4)
    np.testing.assert_allclose(again, one_by_one[::-1], atol=1e-4)
    np.testing.assert_allclose(single, one_by_one[3:4], atol=1e-4)


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
            pytest.raises(EdgecxrError, match=r"takes pixel_values of shape \('N', 3, 64, 64\)"):
        runner.infer(x[:, :, :32])


def test_watch_keeps_compiled_models_beside_its_results(bundle_dir, mini_test_images, tmp_path):
    from typer.testing import CliRunner

    from edgecxr.cli.app import app

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for path in mini_test_images[:3]:
        (inbox / path.name).write_bytes(path.read_bytes())
    common = ["watch", str(inbox), "--bundle", str(bundle_dir), "--backend", "openvino", "--precision", "fp32",
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
    assert benchmark_app_fps(ir, [1, *x.shape[1:]], 1, 1) > 0  # a rate was parsed; its size is no test
