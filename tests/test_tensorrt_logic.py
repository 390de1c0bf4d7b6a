"""TensorRT's non-TensorRT logic: profiles, engine records, version checks, error paths."""

import pytest

from edgecxr.backends.tensorrt.compat import check_compatible, engine_record, profile_shapes, require_gpu
from edgecxr.backends.tensorrt.engine_artifact import engine_source
from edgecxr.core.errors import EdgecxrError

GPU = {"name": "Orin", "compute_capability": "8.7"}


def test_profile_covers_batch_1_to_8():
    shapes = profile_shapes((None, 3, 256, 256))
    assert shapes == ((1, 3, 256, 256), (1, 3, 256, 256), (8, 3, 256, 256))


def test_profile_rejects_bad_batches_and_shapes():
    with pytest.raises(EdgecxrError):
        profile_shapes((None, 3, 256, 256), min_batch=4, opt_batch=2)
    with pytest.raises(EdgecxrError):
        profile_shapes((None, 3, None, 256))


def test_engine_record_and_matching_machine():
    record = engine_record(GPU, "10.3.0", "int8", profile_shapes((None, 3, 64, 64)))
    assert record["profile"]["max"] == [8, 3, 64, 64]
    check_compatible(record, GPU, "10.3.0", engine="e")  # same machine: fine


@pytest.mark.parametrize(("gpu", "version", "needle"), [
    ({"name": "A100", "compute_capability": "8.0"}, "10.3.0", "built for Orin"),
    (GPU, "10.7.0", "built with TensorRT 10.3.0"),
    (None, "10.3.0", "no NVIDIA GPU"),
    (GPU, None, "not installed"),
])
def test_mismatched_engine_is_refused_with_rebuild_hint(gpu, version, needle):
    record = engine_record(GPU, "10.3.0", "int8", profile_shapes((None, 3, 64, 64)))
    with pytest.raises(EdgecxrError) as info:
        check_compatible(record, gpu, version, engine="model.engine")
    assert needle in str(info.value) and "edgecxr build-engine" in str(info.value)


def test_no_gpu_message():
    with pytest.raises(EdgecxrError, match="build-engine"):
        require_gpu([])


def test_engine_source_picks_the_symmetric_graph_for_int8():
    manifest = {"artifacts": [
        {"name": "onnxruntime-fp32", "role": "reference", "files": [{"path": "onnx/model.fp32.onnx"}]},
        {"name": "onnxruntime-int8", "role": "cpu", "files": [{"path": "onnx/model.int8.onnx"}]},
        {"name": "onnxruntime-int8-symmetric", "role": "tensorrt-source",
         "files": [{"path": "onnx/model.int8-symmetric.onnx"}]},
    ]}
    assert engine_source(manifest, "int8")["name"] == "onnxruntime-int8-symmetric"
    assert engine_source(manifest, "fp16")["name"] == "onnxruntime-fp32"
    with pytest.raises(EdgecxrError, match="--int8"):
        engine_source({"artifacts": manifest["artifacts"][:2]}, "int8")


# -- the runner and builder against a fake `tensorrt` that enforces the documented API -------------

GRAPH = {"inputs": {"pixel_values": [-1, 3, 16, 16]}, "classes": 2}


@pytest.fixture()
def trt(monkeypatch):
    from tests import fake_tensorrt

    fake_tensorrt.install(monkeypatch)
    return fake_tensorrt


def build(tmp_path, graph=GRAPH, max_batch=8, shape=(None, 3, 16, 16)):
    import json

    from edgecxr.backends.tensorrt.onnx_to_engine import build_engine

    onnx = tmp_path / "model.onnx"
    onnx.write_text(json.dumps(graph))
    engine = tmp_path / "model.engine"
    record = build_engine(onnx, engine, precision="int8", gpu=GPU, input_shape=shape, max_batch=max_batch)
    return engine, record


def images(n: int, seed: int = 0):
    import numpy as np

    return np.random.default_rng(seed).standard_normal((n, 3, 16, 16)).astype("float32")


def test_batch_above_the_profile_is_split_to_its_maximum(trt, tmp_path):
    import numpy as np

    from edgecxr.backends import open_runner

    engine, record = build(tmp_path)
    assert record["profile"]["max"] == [8, 3, 16, 16]
    batch = images(21)
    with open_runner("tensorrt", engine) as runner:
        assert (runner.input_name, runner.max_batch, runner.input_shape) == ("pixel_values", 8, (None, 3, 16, 16))
        logits = runner.infer(batch)
        context = runner.context
    assert context.executed == [8, 8, 5]
    np.testing.assert_allclose(logits, trt.reference_logits(batch, 2), rtol=1e-5)


def test_parity_scoring_in_batches_of_16_works_on_an_engine_of_max_8(trt, tmp_path):
    import numpy as np

    from edgecxr.backends import RunnerOptions
    from edgecxr.core.bundle import Artifact
    from edgecxr.core.metrics import softmax
    from edgecxr.parity.check import score

    engine, _ = build(tmp_path)
    batch = images(20, seed=1)
    seen = []
    probs, _ = score(Artifact("tensorrt-int8", "tensorrt", "int8", engine, {}), batch, RunnerOptions(), seen.append,
                  batch_size=16)
    np.testing.assert_allclose(probs, softmax(trt.reference_logits(batch, 2)), rtol=1e-5)
    assert seen == [16, 4]


def test_set_input_shape_refusal_is_an_error_not_garbage(trt, tmp_path):
    from edgecxr.backends import open_runner

    engine, _ = build(tmp_path, max_batch=4)
    with open_runner("tensorrt", engine) as runner:
        with pytest.raises(EdgecxrError, match=r"refused input shape \(5, 3, 16, 16\)"):
            runner._run(images(5))  # past the split: TensorRT's own False must stop it
        assert runner.context.executed == []


def test_input_check_names_the_expected_shape(trt, tmp_path):
    import numpy as np

    from edgecxr.backends import open_runner

    engine, _ = build(tmp_path)
    with open_runner("tensorrt", engine) as runner:
        with pytest.raises(EdgecxrError, match=r"takes pixel_values of shape \('N', 3, 16, 16\), got \(2, 3, 32, 32\)"):
            runner.infer(np.zeros((2, 3, 32, 32), np.float32))
        with pytest.raises(EdgecxrError, match="got \\(0, 3, 16, 16\\)"):
            runner.infer(np.zeros((0, 3, 16, 16), np.float32))
        with pytest.raises(EdgecxrError, match="float32 input, got int64"):
            runner.infer(np.zeros((1, 3, 16, 16), np.int64))


def test_batch_under_the_profile_minimum_is_padded(trt, tmp_path):
    import numpy as np

    from edgecxr.backends import open_runner

    engine = tmp_path / "min2.engine"
    engine.write_bytes(trt.serialize("pixel_values", (-1, 3, 16, 16), ((2, 3, 16, 16), (4, 3, 16, 16),
                                                                       (4, 3, 16, 16)), 3))
    batch = images(1)
    with open_runner("tensorrt", engine) as runner:
        logits = runner.infer(batch)
        assert runner.context.executed == [2]
    assert logits.shape == (1, 3)
    np.testing.assert_allclose(logits, trt.reference_logits(batch, 3), rtol=1e-5)


def test_engine_from_elsewhere_is_refused_with_rebuild_hint(trt, tmp_path):
    from edgecxr.backends import open_runner

    engine = tmp_path / "other.engine"
    engine.write_bytes(b"serialized by another TensorRT")
    with pytest.raises(EdgecxrError, match="build-engine"):
        open_runner("tensorrt", engine)


@pytest.mark.parametrize(("graph", "needle"), [
    ("not json", "cannot parse the ONNX graph"),
    ({"inputs": {"a": [-1, 3, 16, 16], "b": [-1, 3, 16, 16]}, "classes": 2}, "has 2 inputs"),
    ({"inputs": {"pixel_values": [-1, 3, 32, 32]}, "classes": 2}, "does not fit"),
])
def test_builder_refuses_graphs_the_profile_cannot_serve(trt, tmp_path, graph, needle):
    import json

    from edgecxr.backends.tensorrt.onnx_to_engine import build_engine

    onnx = tmp_path / "model.onnx"
    onnx.write_text(graph if isinstance(graph, str) else json.dumps(graph))
    with pytest.raises(EdgecxrError, match=needle):
        build_engine(onnx, tmp_path / "e", precision="fp16", gpu=GPU, input_shape=(None, 3, 16, 16))
    assert not (tmp_path / "e").exists()
