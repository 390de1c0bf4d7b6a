"""The train stage end to end on a tiny Swin-V2 and the committed 44-image sample."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.tools import require_module

torch = require_module("torch")
require_module("transformers")

from safetensors.numpy import load_file  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgecxr.cli.app import app  # noqa: E402
from tests.helpers import copy_tree, tiny_swinv2_checkpoint  # noqa: E402

runner = CliRunner()
FAST = ["--arch", "swinv2-nano-64", "--batch-size", "8", "--workers", "0", "--val-fraction",
        "0.25"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(mini, tmp_path_factory):
    """Two epochs straight through; also the uninterrupted run the resume test compares with (read only)."""
    out = tmp_path_factory.mktemp("runs") / "nano"
    result = run("train", mini, "--out", out, "--epochs", 2, *FAST)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def interrupted(mini, tmp_path_factory):
    """The same run stopped after its first epoch; each test resumes a copy of it."""
    out = tmp_path_factory.mktemp("runs") / "interrupted"
    first = run("train", mini, "--out", out, "--epochs", 2, "--stop-after-epoch", 1, *FAST)
    assert first.exit_code == 0, first.output
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    return out


def test_run_folder_has_every_file(trained):
    for name in ("run.json", "history.csv", "curves.png", "report.json", "report.md",
                 "confusion_matrix.png", "samples.png", "model/model.safetensors",
                 "model/config.json", "model/preprocess.json", "model/preprocessor_config.json",
                 "checkpoint/trainer_state.json"):
        assert (trained / name).is_file(), name
    config = json.loads((trained / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "NORMAL", "1": "PNEUMONIA"}
    history = (trained / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history[0].startswith("epoch,train_loss")


def test_run_json_records_settings_data_and_split(trained, mini):
    record = json.loads((trained / "run.json").read_text())
    assert record["status"] == "finished"
    assert record["settings"]["arch"] == "swinv2-nano-64"
    assert record["settings"]["lr"] == 1e-3  # from the preset's recipe
    assert record["settings"]["seed"] == 1216
    assert set(record["data"]["fingerprints"]) == {"train", "val", "test"}
    assert record["data"]["val_source"] == "carved"
    assert record["data"]["val_groups"]["rule"] == "kermany-patient/1"
    assert len(record["split"]["val"]) == 6 and len(record["split"]["train"]) == 18
    assert record["versions"]["torch"]
    assert record["preprocess"]["height"] == 64


def test_report_schema_and_numbers_match_sklearn(trained):
    report = json.loads((trained / "report.json").read_text())
    assert report["schema"] == "edgecxr.report/1"
    assert report["n_images"] == 20 and len(report["rows"]) == 20
    row = report["rows"][0]
    assert set(row) == {"path", "sha256", "label", "prediction", "probabilities"}
    assert len(row["sha256"]) == 64
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    y = [r["label"] for r in report["rows"]]
    p = [r["prediction"] for r in report["rows"]]
    ref = skm.classification_report(y, p, output_dict=True, zero_division=0)
    m = report["metrics"]
    assert m["accuracy"] == pytest.approx(ref["accuracy"])
    for name in ("NORMAL", "PNEUMONIA"):
        assert m["classes"][name]["f1"] == pytest.approx(ref[name]["f1-score"])
        assert m["classes"][name]["recall"] == pytest.approx(ref[name]["recall"])
    assert m["macro_avg"]["f1"] == pytest.approx(ref["macro avg"]["f1-score"])
    assert m["weighted_avg"]["f1"] == pytest.approx(ref["weighted avg"]["f1-score"])
    pos = [r["label"] == "PNEUMONIA" for r in report["rows"]]
    score = [r["probabilities"]["PNEUMONIA"] for r in report["rows"]]
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(pos, score))
    assert m["sensitivity"] == pytest.approx(ref["PNEUMONIA"]["recall"])
    assert m["specificity"] == pytest.approx(ref["NORMAL"]["recall"])
    assert report["model"]["sha256"] and report["data"]["fingerprint"]
    assert "| NORMAL |" in (trained / "report.md").read_text()


def test_evaluate_command_reproduces_the_report(trained, mini, tmp_path):
    result = run("evaluate", trained / "model", mini / "test", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    a = json.loads((trained / "report.json").read_text())
    b = json.loads((tmp_path / "report.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert a["data"]["fingerprint"] == b["data"]["fingerprint"]


def test_resume_equals_uninterrupted_run(trained, interrupted, mini, tmp_path):
    straight, broken = trained, copy_tree(interrupted, tmp_path / "broken")
    second = run("train", mini, "--out", broken, "--epochs", 2, "--resume", *FAST)
    assert second.exit_code == 0, second.output
    a = load_file(straight / "checkpoint" / "model.safetensors")
    b = load_file(broken / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    strip = ("seconds", "images_per_s", "data_wait_share")

    def history(folder):
        rows = json.loads((folder / "checkpoint" / "trainer_state.json").read_text())["history"]
        return [{k: v for k, v in r.items() if k not in strip} for r in rows]

    assert history(straight) == history(broken)


def test_fine_tune_from_local_checkpoint_with_other_head(mini, tmp_path):
    base = tiny_swinv2_checkpoint(tmp_path / "base", num_labels=3)
    out = tmp_path / "ft"
    result = run("train", mini, "--out", out, "--base", base, "--epochs", 1, "--batch-size", 8,
                 "--workers", 0)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["num_labels"] == 2 if "num_labels" in config else len(config["id2label"]) == 2
    spec = json.loads((out / "model" / "preprocess.json").read_text())
    assert spec["mean"] == [0.5, 0.5, 0.5]  # from the base's image-processor config
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["source"] == "pretrained"
    assert record["settings"]["lr"] == 2e-5  # the seed study's fine-tuning default


# -- bad input: one line naming the path, the cause and the fix; exit code 2 ----------------

def _assert_clean_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = result.stderr.strip().splitlines()[-1]  # progress lines may come before it
    assert text.startswith("error:"), result.stderr
    for needle in needles:
        assert needle in text, text


def test_missing_data_folder(tmp_path):
    _assert_clean_error(run("train", tmp_path / "nope", "--out", tmp_path / "o", *FAST),
                        "nope", "data folder not found", "Fix:")


def test_classes_differ_between_splits(mini, tmp_path):
    root = copy_tree(mini, tmp_path / "d")
    (root / "test" / "PNEUMONIA").rename(root / "test" / "SICK")
    _assert_clean_error(run("train", root, "--out", tmp_path / "o", *FAST),
                        "['NORMAL', 'PNEUMONIA']", "['NORMAL', 'SICK']")


def test_corrupt_image_fails_listing_it_or_is_skipped(mini, tmp_path):
    root = copy_tree(mini, tmp_path / "d")
    (root / "train" / "NORMAL" / "zz-broken.jpeg").write_bytes(b"\xff\xd8\xffnot really")
    _assert_clean_error(run("train", root, "--out", tmp_path / "o", "--epochs", 1, *FAST),
                        "zz-broken.jpeg", "--skip-bad")
    ok = run("train", root, "--out", tmp_path / "o2", "--epochs", 1, "--skip-bad", *FAST)
    assert ok.exit_code == 0, ok.output
    record = json.loads((tmp_path / "o2" / "run.json").read_text())
    assert [b["path"].endswith("zz-broken.jpeg") for b in record["data"]["skipped_bad"]] == [True]


def test_base_that_is_not_swinv2(mini, tmp_path):
    base = tmp_path / "vit"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "vit"}')
    _assert_clean_error(run("train", mini, "--out", tmp_path / "o", "--base", base),
                        "not swinv2", str(base))


def test_base_id_without_weights_or_network(mini, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    _assert_clean_error(
        run("train", mini, "--out", tmp_path / "o", "--base", "microsoft/swinv2-tiny-patch4-window8-256"),
        "not available locally", "--base DIR")


def test_resume_with_other_settings_is_refused(trained, mini):
    _assert_clean_error(run("train", mini, "--out", trained, "--epochs", 2, "--resume",
                            *FAST, "--lr", "0.01"), "lr: 0.001 -> 0.01", str(trained))


def test_existing_run_folder_needs_resume(trained, mini):
    _assert_clean_error(run("train", mini, "--out", trained, "--epochs", 2, *FAST),
                        "not empty", "--resume")


def test_unknown_arch(mini, tmp_path):
    _assert_clean_error(run("train", mini, "--out", tmp_path / "o", "--arch", "resnet"),
                        "unknown --arch", "swinv2-tiny-256")


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "train", tmp_path / "nope", "--out", tmp_path / "o", *FAST)
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_resume_on_changed_data_is_refused(interrupted, mini, tmp_path):
    root = copy_tree(mini, tmp_path / "d")  # the same images (the fingerprints hold names and hashes, not the root)
    out = copy_tree(interrupted, tmp_path / "run")
    victim = sorted((root / "test" / "NORMAL").iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    _assert_clean_error(run("train", root, "--out", out, "--epochs", 2, "--resume", *FAST),
                        "the data changed since this run started (test differ)")
