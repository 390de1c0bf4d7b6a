"""TensorRT's non-TensorRT logic: profiles, engine records, version checks, error paths."""

import pytest

from edgecxr.backends.tensorrt.compat import check_compatible, engine_record, profile_shapes, require_gpu
from edgecxr.backends.tensorrt.engine_artifact import engine_source
from edgecxr.errors import EdgecxrError

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
