"""Training with a given val/ folder: its patients shared with train/ are said and recorded, and the run resumes."""

from __future__ import annotations

import json

from tests.tools import require_module

require_module("torch")
require_module("transformers")

from typer.testing import CliRunner  # noqa: E402

from edgecxr.cli.app import app  # noqa: E402
from tests.test_folders import _given_val  # noqa: E402

FAST = ["--arch", "swinv2-nano-64", "--batch-size", "8", "--workers", "0"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_val_folder_sharing_a_patient_is_warned_recorded_and_resumed(mini, tmp_path):
    root = _given_val(mini, tmp_path, [("PNEUMONIA", "person1000_virus_7.jpeg")])
    out = tmp_path / "run"
    first = run("train", root, "--out", out, "--epochs", 2, "--stop-after-epoch", 1, *FAST)
    assert first.exit_code == 0, first.output
    assert "val/ shares 1 patient(s) with train/" in " ".join(first.output.split())
    record = json.loads((out / "run.json").read_text())
    assert record["data"]["val_source"] == "folder" and "person1000" in record["data"]["val_note"]
    assert record["data"]["val_groups"]["shared_with_train"]["examples"] == ["person1000"]
    assert record["split"]["val_root"].endswith("d/val") and len(record["split"]["val"]) == 101
    second = run("train", root, "--out", out, "--epochs", 2, "--resume", *FAST)  # the val/ folder, read again
    assert second.exit_code == 0, second.output
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_split_seed_keeps_the_validation_images_while_the_seed_changes(mini, tmp_path):
    """Seeds of one recipe are chosen between on the same validation images (--split-seed)."""
    def split(seed, *extra):
        out = tmp_path / f"s{seed}-{len(extra)}"
        result = run("train", mini, "--out", out, "--epochs", 1, "--val-fraction", 0.25, "--seed", seed,
                     *extra, *FAST)
        assert result.exit_code == 0, result.output
        record = json.loads((out / "run.json").read_text())
        return record["split"]["val"], record["settings"]

    own_1, _ = split(1)
    own_2, _ = split(2)
    fixed_2, settings = split(2, "--split-seed", 1)
    assert own_1 != own_2  # the seed alone moves the split ...
    assert fixed_2 == own_1 and settings["split_seed"] == 1 and settings["seed"] == 2  # ... --split-seed holds it
