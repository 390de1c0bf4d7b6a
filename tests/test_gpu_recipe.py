"""The GPU recipe (edgecxr.training.gpu) on the CPU: a nano Swin-V2 and the committed sample."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tests.tools import not_applicable, require_module

torch = require_module("torch")
require_module("transformers")

from safetensors.torch import load_file  # noqa: E402

from edgecxr.core.data.decode import decode_file  # noqa: E402
from edgecxr.core.data.folders import hash_and_check, load_dataset, scan_split  # noqa: E402
from edgecxr.core.data.patients import group_of  # noqa: E402
from edgecxr.core.errors import EdgecxrError  # noqa: E402
from edgecxr.core.preprocess import PreprocessSpec  # noqa: E402
from edgecxr.training.gpu.augment import DeviceAugment, augment_batch  # noqa: E402
from edgecxr.training.gpu.config import GpuConfig  # noqa: E402
from edgecxr.training.gpu.data import decode_split, normalize, to_unit  # noqa: E402
from edgecxr.training.gpu.loop import train_gpu  # noqa: E402

SPEC = PreprocessSpec(height=64, width=64, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))
OFF = DeviceAugment(hflip=0.0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotate_degrees=0.0, gamma=0.0,
                    contrast=0.0, brightness=0.0, blur_p=0.0, noise_p=0.0)


def config(mini, out, **changes) -> GpuConfig:
    return replace(GpuConfig(data=str(mini), out=str(out), preset="swinv2-nano-64", epochs=2, batch_size=8,
                             lr=1e-3, val_fraction=0.25, ema_decay=0.9, device="cpu",
                             eval_batch_size=16), **changes)


@pytest.fixture(scope="module")
def train_images(mini):
    split = scan_split(mini / "train", "train")
    return split, decode_split(split.samples, SPEC, workers=2)


def test_uint8_tensor_holds_the_shared_preprocessing_to_half_a_grey_level(train_images):
    split, images = train_images
    assert images.pixels.dtype == torch.uint8 and images.pixels.shape == (len(split.samples), 1, 64, 64)
    assert images.labels.tolist() == [s.label for s in split.samples]
    reference = np.stack([SPEC(decode_file(s.path).pixels) for s in split.samples])
    resized = np.stack([SPEC.resize(decode_file(s.path).pixels) for s in split.samples])
    assert np.abs(images.pixels[:, 0].numpy() / 255.0 - resized).max() <= 0.5 / 255 + 1e-6
    model_input = normalize(to_unit(images.pixels), SPEC).numpy()
    assert model_input.shape == reference.shape
    assert np.abs(model_input - reference).max() <= 0.5 / 255 / min(SPEC.std) + 1e-5


def test_decoding_hashes_each_file_as_the_data_check_does(train_images, mini):
    split, _ = train_images
    again = scan_split(mini / "train", "train")
    hash_and_check(again.samples)
    assert split.fingerprint() == again.fingerprint()


def test_augmentation_keeps_shape_dtype_and_range_and_repeats_under_a_seed(train_images):
    unit = to_unit(train_images[1].pixels[:6])
    for batch in (unit, unit.expand(-1, 3, -1, -1).contiguous()):
        first = augment_batch(batch, DeviceAugment(blur_p=1.0, noise_p=1.0), torch.Generator().manual_seed(3))
        again = augment_batch(batch, DeviceAugment(blur_p=1.0, noise_p=1.0), torch.Generator().manual_seed(3))
        other = augment_batch(batch, DeviceAugment(blur_p=1.0, noise_p=1.0), torch.Generator().manual_seed(4))
        assert first.shape == batch.shape and first.dtype == torch.float32
        assert first.min() >= 0.0 and first.max() <= 1.0
        assert torch.equal(first, again)
        assert not torch.allclose(first, other)
        assert not torch.allclose(first, batch)


def test_augmentation_switched_off_is_the_identity_and_flip_mirrors(train_images):
    unit = to_unit(train_images[1].pixels[:4])
    same = augment_batch(unit, OFF, torch.Generator().manual_seed(0))
    assert torch.allclose(same, unit, atol=1e-5)
    mirrored = augment_batch(unit, replace(OFF, hflip=1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(mirrored, unit.flip(3), atol=1e-5)


@pytest.fixture(scope="module")
def run(mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-recipe") / "run"
    return out, train_gpu(config(mini, out))


def test_run_writes_the_checkpoint_export_reads(run, mini):
    from edgecxr.exporters.operating_point import validation_samples
    from edgecxr.exporters.source import resolve_source
    from edgecxr.training.model import load_checkpoint

    out, record = run
    assert record["status"] == "finished" and record["result"]["epochs_run"] == 2
    source = resolve_source(out)
    assert source.model_dir == out / "model" and source.report_path == out / "report.json"
    _model, spec, classes = load_checkpoint(source.model_dir)
    assert classes == ["NORMAL", "PNEUMONIA"] and spec.height == 64
    assert spec == PreprocessSpec.from_dict(record["preprocess"])
    val = validation_samples(source.run)
    assert val is not None and {s.rel for s in val} == set(record["split"]["val"])
    assert json.loads((out / "report.json").read_text())["n_images"] == 20


def test_validation_is_grouped_by_patient_and_the_checkpoint_chosen_on_it(run, mini):
    out, record = run
    assert record["data"]["val_source"] == "carved"
    assert record["data"]["val_groups"]["rule"] == "kermany-patient/1"
    val_groups = {group_of(rel) for rel in record["split"]["val"]}
    assert not val_groups & {group_of(rel) for rel in record["split"]["train"]}
    assert record["split"]["val"] == [s.rel for s in load_dataset(mini, val_fraction=0.25).val.samples]
    history = (out / "history.csv").read_text().splitlines()
    rows = [dict(zip(history[0].split(","), line.split(","))) for line in history[1:]]
    best = max(rows, key=lambda r: (float(r["val_acc"]), -float(r["val_loss"])))
    assert record["result"]["best_epoch"] == int(best["epoch"])
    assert all(0.0 <= float(r["val_auc"]) <= 1.0 for r in rows)


def test_resume_continues_at_the_next_epoch_and_ends_with_the_same_weights(run, mini, tmp_path):
    out, _ = run
    partial = tmp_path / "resumed"
    stopped = train_gpu(config(mini, partial, evaluate_test=False), stop_after_epoch=1)
    assert stopped["status"] == "interrupted"
    assert len((partial / "history.csv").read_text().splitlines()) == 2
    with pytest.raises(EdgecxrError, match="other settings"):
        train_gpu(config(mini, partial, lr=5e-4), resume=True)
    resumed = train_gpu(config(mini, partial, evaluate_test=False), resume=True)
    assert resumed["result"]["epochs_run"] == 2 and resumed["created"] == stopped["created"]
    whole = torch.load(out / "checkpoint" / "state.pt", weights_only=True)
    again = torch.load(partial / "checkpoint" / "state.pt", weights_only=True)
    assert whole["trainer_state"]["history"][1]["train_loss"] == again["trainer_state"]["history"][1]["train_loss"]
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, again["model"][name]), name
    assert whole["average"]["updates"] == again["average"]["updates"] == 4
    for name, tensor in whole["average"]["module"].items():
        assert torch.equal(tensor, again["average"]["module"][name]), name
    best = load_file(out / "model" / "model.safetensors")
    best_again = load_file(partial / "model" / "model.safetensors")
    assert all(torch.equal(best[k], best_again[k]) for k in best)


def test_cuda_without_a_gpu_is_refused_with_the_fix(mini, tmp_path):
    if torch.cuda.is_available():
        not_applicable("a GPU is visible to torch: the refusal cannot be shown")
    with pytest.raises(EdgecxrError, match="no CUDA GPU"):
        train_gpu(config(mini, tmp_path / "x", device="cuda"))
