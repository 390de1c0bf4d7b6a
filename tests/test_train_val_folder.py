"""Training with a given val/ folder: its patients shared with train/ are said and recorded, and the run resumes."""

from __future__ import annotations

import json

from tests.tools import require_module

require_module("torch")
require_module("transformers")

from typer.testing import CliRunner  # noqa: E402

from edgecxr.cli.app import app  # noqa: E402
from tests.helpers import copy_tree  # noqa: E402
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
        runs.append(out)
        result = run("train", mini, "--out", out, "--epochs", 1, "--val-fraction", 0.25, "--seed", seed,
                     *extra, *FAST)
        assert result.exit_code == 0, result.output
        record = json.loads((out / "run.json").read_text())
        return record["split"]["val"], record["settings"]

    runs: list = []
    own_1, _ = split(1)
    own_2, _ = split(2)
    fixed_2, settings = split(2, "--split-seed", 1)
    assert own_1 != own_2  # the seed alone moves the split ...
    assert fixed_2 == own_1 and settings["split_seed"] == 1 and settings["seed"] == 2  # ... --split-seed holds it

    # compare-runs scores all three on run 1's validation images: the run split by seed 2 trained
    # on some of them, so it is flagged and never preferred; test figures come from each report
    compared = run("compare-runs", *runs, "--out", tmp_path / "cmp")
    assert compared.exit_code == 0, compared.output
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    leaked = {r["run"]: r["leaked"] for r in result["runs"]}
    assert leaked["s1-0"] == leaked["s2-2"] == 0 < leaked["s2-0"] == len(set(own_1) - set(own_2))
    assert result["honest_runs"] == 2 and result["preferred"] in ("s1-0", "s2-2")
    assert result["val_images"] == len(own_1) and result["summary"]["A"]["val_accuracy"]["n"] == 2
    assert leaked_patients(result, "s2-0") > 0
    assert all(r["chosen_on_these"] == (r["run"] != "s2-0") for r in result["runs"])
    rows = {r["run"]: r for r in result["runs"]}
    assert rows["s2-2"]["val_split"] == "random" and rows["s2-2"]["split_seed"] == 1
    report = json.loads((runs[0] / "report.json").read_text())
    assert rows["s1-0"]["test_accuracy"] == report["metrics"]["accuracy"]
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "mean ± sd of 2 runs" in table
    assert "images" in table and "of `s1-0`, random patients, split seed 1;" in table
    # errors per file-name series: every validation image counted once, test counts from the report
    by_source = rows["s1-0"]["val_by_source"]
    assert set(by_source) == {"IM", "NORMAL2-IM", "bacteria", "virus"}
    assert sum(v["images"] for v in by_source.values()) == len(own_1)
    misread = sum(r["prediction"] != r["label"] for r in report["rows"])
    assert sum(v["errors"] for v in rows["s1-0"]["test_by_source"].values()) == misread
    assert "| NORMAL2-IM val (n=" in table and "NORMAL2-IM test (n=" in table
    picture = (tmp_path / "cmp" / "series.png").read_bytes()  # the same, drawn: a recipe of two clean runs
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and len(picture) > 10_000


def test_a_run_recorded_before_the_scanner_augmentations_existed_resumes(mini, tmp_path):
    out = tmp_path / "old"
    first = run("train", mini, "--out", out, "--epochs", 2, "--stop-after-epoch", 1, "--val-fraction", 0.25, *FAST)
    assert first.exit_code == 0, first.output
    record = json.loads((out / "run.json").read_text())
    for key in ("gamma", "blur_p", "blur_sigma", "noise_p", "noise_std", "jpeg_p", "jpeg_quality"):
        del record["settings"]["augment"][key]  # as run.json was written before they existed
    (out / "run.json").write_text(json.dumps(record))
    resumed = run("train", mini, "--out", out, "--epochs", 2, "--val-fraction", 0.25, "--resume", *FAST)
    assert resumed.exit_code == 0, resumed.output
    refused = run("train", mini, "--out", out, "--epochs", 2, "--val-fraction", 0.25, "--resume", *FAST,
                  "--config", _recipe(tmp_path, "gamma = 0.25"))
    assert refused.exit_code == 2 and "gamma" in refused.output  # turning one on is another run


def _recipe(folder, line: str):
    path = folder / "recipe.toml"
    path.write_text(f"[train]\n[train.augment]\n{line}\n")
    return path


def leaked_patients(result: dict, run_name: str) -> int:
    return next(r["leaked_patients"] for r in result["runs"] if r["run"] == run_name)


def test_no_test_never_opens_the_test_split(mini, tmp_path):
    """A broken file in test/ stops a normal run at the image check; with --no-test it is never read."""
    root = tmp_path / "data"
    for split in ("train", "test"):
        copy_tree(mini / split, root / split)
    (root / "test" / "NORMAL" / "broken.jpeg").write_bytes(b"not a jpeg")
    common = ["--epochs", 1, "--val-fraction", 0.25, *FAST]
    opened = run("train", root, "--out", tmp_path / "opened", *common)
    assert opened.exit_code == 2 and "broken.jpeg" in opened.output
    out = tmp_path / "closed"
    closed = run("train", root, "--out", out, "--no-test", *common)
    assert closed.exit_code == 0, closed.output
    assert "test/ left unopened (--no-test)" in " ".join(closed.output.split())
    record = json.loads((out / "run.json").read_text())
    assert "test" not in record["data"]["fingerprints"] and "test" not in record["result"]
    assert record["settings"]["evaluate_test"] is False and not (out / "report.json").exists()


def test_val_split_lowest_numbered_is_recorded_resumed_and_old_records_still_resume(mini, tmp_path):
    out = tmp_path / "low"
    first = run("train", mini, "--out", out, "--epochs", 2, "--stop-after-epoch", 1, "--val-fraction", 0.25,
                "--val-split", "lowest-numbered", *FAST)
    assert first.exit_code == 0, first.output
    record = json.loads((out / "run.json").read_text())
    assert record["settings"]["val_split"] == "lowest-numbered"
    assert sorted(record["split"]["val"]) == LOWEST_OF_MINI
    changed = run("train", mini, "--out", out, "--epochs", 2, "--resume", "--val-fraction", 0.25, *FAST)
    assert changed.exit_code != 0 and "val_split: 'lowest-numbered' -> 'random'" in " ".join(changed.output.split())
    resumed = run("train", mini, "--out", out, "--epochs", 2, "--resume", "--val-fraction", 0.25,
                  "--val-split", "lowest-numbered", "--split-seed", 7, *FAST)  # no seed splits it: one is ignored
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "run.json").read_text())["split"]["val"] == record["split"]["val"]

    # a run recorded before --val-split existed was split at random, and resumes as such
    old = tmp_path / "old"
    assert run("train", mini, "--out", old, "--epochs", 2, "--stop-after-epoch", 1, *FAST).exit_code == 0
    record = json.loads((old / "run.json").read_text())
    del record["settings"]["val_split"]
    (old / "run.json").write_text(json.dumps(record))
    again = run("train", mini, "--out", old, "--epochs", 2, "--resume", *FAST)
    assert again.exit_code == 0, again.output


def test_split_seed_of_is_the_one_rule_for_train_resume_and_compare():
    from edgecxr.core.data.folders import split_seed_of

    assert split_seed_of({"seed": 2, "split_seed": None, "val_split": "random"}) == 2
    assert split_seed_of({"seed": 2, "split_seed": 1216, "val_split": "random"}) == 1216
    assert split_seed_of({"seed": 2, "split_seed": 0}) == 0  # a record from before --val-split; 0 is a seed
    assert split_seed_of({"seed": 2, "split_seed": 1216, "val_split": "lowest-numbered"}) is None


# the kermany-mini training folder's lowest-numbered quarter of each series (6 IM, 6 NORMAL2-IM,
# 8 bacteria, 4 virus images, one per patient): 2, 2, 2 and 1 patients
LOWEST_OF_MINI = sorted([
    "NORMAL/IM-0115-0001.jpeg", "NORMAL/IM-0288-0001.jpeg",
    "NORMAL/NORMAL2-IM-0472-0001.jpeg", "NORMAL/NORMAL2-IM-0623-0001.jpeg",
    "PNEUMONIA/person382_bacteria_1745.jpeg", "PNEUMONIA/person467_bacteria_1988.jpeg",
    "PNEUMONIA/person309_virus_631.jpeg",
])


def test_compare_score_refuses_a_split_whose_classes_differ_from_the_checkpoint(trained_run):
    """Figures are read by class name: a split ordered otherwise than the checkpoint would swap them."""
    from pathlib import Path

    import pytest

    from edgecxr.core.data.folders import Split
    from edgecxr.core.errors import EdgecxrError
    from edgecxr.training.compare import read_run, score, validation_split

    split = validation_split(read_run(trained_run))
    assert "val_accuracy" in score(Path(trained_run), split)
    swapped = Split("val", split.root, list(reversed(split.classes)), split.samples)
    with pytest.raises(EdgecxrError, match="are not the validation split's"):
        score(Path(trained_run), swapped)
