"""Layer-wise lr decay and the weight average: the groups they build and the runs they make."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.tools import require_module

torch = require_module("torch")
require_module("transformers")

from safetensors.numpy import load_file  # noqa: E402

from edgecxr.training.ema import WeightAverage  # noqa: E402
from edgecxr.training.model import build_from_preset  # noqa: E402
from edgecxr.training.optim_groups import layer_id, param_groups  # noqa: E402
from tests.test_train import FAST, run  # noqa: E402

OPTIONS = ["--layer-decay", "0.7", "--ema-decay", "0.9"]


def test_layer_ids_follow_the_forward_order():
    depths = [2, 2, 2, 2]
    assert layer_id("swinv2.embeddings.patch_embeddings.projection.weight", depths) == 0
    assert layer_id("swinv2.encoder.layers.0.blocks.0.attention.self.query.weight", depths) == 1
    assert layer_id("swinv2.encoder.layers.1.blocks.1.output.dense.bias", depths) == 4
    assert layer_id("swinv2.encoder.layers.1.downsample.reduction.weight", depths) == 4
    assert layer_id("swinv2.encoder.layers.3.blocks.1.layernorm_after.weight", depths) == 8
    assert layer_id("swinv2.layernorm.weight", depths) == 9
    assert layer_id("classifier.weight", depths) == 9


def test_groups_scale_the_lr_per_layer_and_keep_every_parameter_once():
    model, _ = build_from_preset("swinv2-micro-128", ["NORMAL", "PNEUMONIA"])
    groups = param_groups(model, 0.05, 1e-3, 0.5, list(model.config.depths))
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    lrs = {g["layer"]: g["lr"] for g in groups}
    assert lrs[9] == pytest.approx(1e-3) and lrs[0] == pytest.approx(1e-3 * 0.5 ** 9)
    head = [g for g in groups if g["layer"] == 9]
    assert {g["weight_decay"] for g in head} == {0.0, 0.05}
    flat = param_groups(model, 0.05, 1e-3)  # without layer decay: the two groups of old
    assert [(g["weight_decay"], g["lr"]) for g in flat] == [(0.05, 1e-3), (0.0, 1e-3)]


def test_weight_average_warms_up_then_follows_slowly():
    live = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(live.weight)
    average = WeightAverage(live, decay=0.99)
    live.weight.data.fill_(1.0)
    average.update(live)  # warm-up decay (1+1)/(10+1): the average moves most of the way
    assert average.module.weight.item() == pytest.approx(1 - 2 / 11)
    for _ in range(200):
        average.update(live)
    assert average.module.weight.item() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError):
        WeightAverage(live, decay=1.0)


def test_run_with_both_resumes_exactly_and_saves_the_average(mini, tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    first = run("train", mini, "--out", straight, "--epochs", 2, *FAST, *OPTIONS)
    assert first.exit_code == 0, first.output
    settings = json.loads((straight / "run.json").read_text())["settings"]
    assert settings["layer_decay"] == 0.7 and settings["ema_decay"] == 0.9
    assert run("train", mini, "--out", broken, "--epochs", 2, "--stop-after-epoch", 1,
               *FAST, *OPTIONS).exit_code == 0
    second = run("train", mini, "--out", broken, "--epochs", 2, "--resume", *FAST, *OPTIONS)
    assert second.exit_code == 0, second.output
    for name in ("model/model.safetensors", "checkpoint/model.safetensors"):
        a, b = load_file(straight / name), load_file(broken / name)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")
    # the checkpoint holds the raw weights, model/ the average: they differ
    raw = load_file(straight / "checkpoint" / "model.safetensors")
    saved = load_file(straight / "model" / "model.safetensors")
    assert any(not np.array_equal(raw[k], saved[k]) for k in raw if k in saved)


def test_out_of_range_values_are_refused(mini, tmp_path):
    for option, value in (("--layer-decay", "1.5"), ("--ema-decay", "1")):
        result = run("train", mini, "--out", tmp_path / option, "--epochs", 1, *FAST, option, value)
        assert result.exit_code == 2 and option in result.output, result.output
