"""SimMIM pretraining and fine-tuning from its encoder, on a tiny Swin-V2 and the sample."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.tools import require_module

torch = require_module("torch")
require_module("transformers")

from safetensors.torch import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgecxr.cli.app import app  # noqa: E402
from edgecxr.core.errors import EdgecxrError  # noqa: E402
from edgecxr.training.model import build_from_preset  # noqa: E402
from edgecxr.training.pretrain import list_images  # noqa: E402
from edgecxr.training.simmim import load_encoder, random_mask  # noqa: E402

runner = CliRunner()
NANO = ["--arch", "swinv2-nano-64", "--batch-size", "8", "--workers", "0"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def pretrained(mini, tmp_path_factory):
    """Two epochs, interrupted after the first and resumed, as a time-boxed session would."""
    out = tmp_path_factory.mktemp("pre") / "simmim"
    args = ["pretrain", mini / "train", "--out", out, "--epochs", 2, "--mask-patch-size", 16, *NANO]
    first = run(*args, "--stop-after-epoch", 1)
    assert first.exit_code == 0, first.output
    assert json.loads((out / "pretrain.json").read_text())["status"] == "interrupted"
    second = run(*args, "--resume")
    assert second.exit_code == 0, second.output
    assert "resuming after epoch 1 of 2" in second.output
    return out


def test_mask_hides_the_ratio_in_whole_squares():
    mask = random_mask(np.random.default_rng(0), 64, 4, 16, 0.6)
    assert mask.shape == (256,) and mask.dtype == bool
    grid = mask.reshape(16, 16)
    squares = grid.reshape(4, 4, 4, 4).transpose(0, 2, 1, 3).reshape(16, 16)
    assert all(row.all() or not row.any() for row in squares)  # each 16 px square all or nothing
    assert squares.all(axis=1).sum() == 10  # ceil(0.6 * 16)


def test_pretrain_run_folder(pretrained):
    for name in ("pretrain.json", "history.csv", "loss.png", "reconstructions.png",
                 "model/model.safetensors", "model/config.json", "model/preprocess.json",
                 "checkpoint/history.json"):
        assert (pretrained / name).is_file(), name
    record = json.loads((pretrained / "pretrain.json").read_text())
    assert record["status"] == "finished" and record["result"]["epochs_run"] == 2
    assert record["data"]["images"] == 24 and record["settings"]["mask_ratio"] == 0.6
    config = json.loads((pretrained / "model" / "config.json").read_text())
    assert config["architectures"] == ["Swinv2ForMaskedImageModeling"]
    with open(pretrained / "history.csv", newline="") as handle:
        losses = [float(r["loss"]) for r in csv.DictReader(handle)]
    assert len(losses) == 2 and all(np.isfinite(losses)) and min(losses) > 0


def test_encoder_is_copied_into_the_classifier(pretrained):
    model, _ = build_from_preset("swinv2-nano-64", ["NORMAL", "PNEUMONIA"])
    copied = load_encoder(model, pretrained)  # the RUN folder works as well as RUN/model
    saved = load_file(str(pretrained / "model" / "model.safetensors"))
    own = model.state_dict()
    assert copied == sum(k.startswith("swinv2.") for k in own) > 10
    assert all(torch.equal(own[k], saved[k]) for k in own if k.startswith("swinv2."))


def test_train_init_fine_tunes_from_the_encoder(pretrained, mini, tmp_path):
    out = tmp_path / "ft"
    result = run("train", mini, "--out", out, "--epochs", 1, "--init", pretrained / "model",
                 "--val-fraction", 0.25, *NANO)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["source"] == "preset+simmim"
    assert record["settings"]["init"] == str(pretrained / "model")
    assert record["data"]["val_groups"]["rule"] == "kermany-patient/1"


def test_refusals(pretrained, mini, tmp_path):
    model, _ = build_from_preset("swinv2-micro-128", ["NORMAL", "PNEUMONIA"])
    with pytest.raises(EdgecxrError, match="does not fit this --arch"):
        load_encoder(model, pretrained)
    with pytest.raises(EdgecxrError, match="test/ split"):
        list_images(mini)
    result = run("train", mini, "--out", tmp_path / "x", "--init", pretrained / "model")
    assert result.exit_code == 2 and "--init needs --arch" in result.output
    result = run("pretrain", mini / "train", "--out", tmp_path / "y", "--mask-patch-size", 12, *NANO)
    assert result.exit_code == 2 and "mask-patch-size" in result.output


def test_committed_simmim_encoder_loads_into_the_micro_preset():
    """The measured stage-1 encoder kept in train/simmim-runs is what its README says it is."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "train" / "simmim-runs" / "pretrain"
    record = json.loads((folder / "pretrain.json").read_text())
    assert record["status"] == "finished" and record["settings"]["epochs"] == 40
    model, _ = build_from_preset(record["model"]["arch"], ["NORMAL", "PNEUMONIA"])
    assert load_encoder(model, folder / "model") > 100
    saved = load_file(str(folder / "model" / "model.safetensors"))
    for name, value in model.state_dict().items():
        if name.startswith("swinv2."):
            assert torch.equal(value, saved[name]), name
