"""The GPU recipe's run folder, in the layout `edgecxr train` writes and `edgecxr export` reads.

`run.json` has the keys of `edgecxr.training.trainer`'s record (schema `edgecxr.run/1`):
export reads `classes`, `created` and `split` (the validation images, where the
temperature and the decision threshold are fitted, and the training images INT8
calibration draws from). `model/` is `edgecxr.training.model.save_checkpoint`'s folder.
`checkpoint/state.pt` is this recipe's own resume state (plain torch, no accelerate).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from edgecxr.core.data.folders import DataSet
from edgecxr.core.fsutil import atomic_write_json
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.core.progress import Reporter
from edgecxr.core.provenance import utc_now
from edgecxr.training.gpu.config import GpuConfig
from edgecxr.training.presets import PRESETS
from edgecxr.training.trainer import TrainState
from edgecxr.training.trainer import run_record as train_run_record

if TYPE_CHECKING:
    from edgecxr.training.gpu.loop import Parts

HISTORY = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_auc", "lr", "seconds",
           "images_per_s"]
STATE_FILE = "state.pt"


def run_record(config: GpuConfig, data: DataSet, spec: PreprocessSpec, fingerprints: dict, model,
               device: torch.device, bf16: bool) -> dict:
    described = {"source": "preset", "name": config.preset, "parameters": sum(p.numel() for p in model.parameters()),
                 "architecture": PRESETS[config.preset]["model"]}
    record = train_run_record(config, data, spec, fingerprints, described, device=str(device),
                              precision="bf16" if bf16 else "fp32", num_processes=1, skipped_bad=[])
    record["data"]["stored_as"] = "uint8 at the model's size (decode + PreprocessSpec.resize, rounded)"
    return record


def save_model(model, spec: PreprocessSpec, folder: Path) -> None:
    """The checkpoint folder, written beside and renamed over the previous best."""
    from edgecxr.training.model import save_checkpoint

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, spec, tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def save_state(folder: Path, parts: Parts, state: TrainState) -> None:
    """Everything a resumed epoch needs that (seed, epoch) does not give, beside then renamed."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({"model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
                "scheduler": parts.scheduler.state_dict(),
                "average": parts.average.state_dict() if parts.average is not None else None,
                "trainer_state": dict(state.__dict__)}, tmp / STATE_FILE)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_state(folder: Path, parts: Parts) -> TrainState:
    saved = torch.load(folder / STATE_FILE, map_location=next(parts.model.parameters()).device,
                       weights_only=True)
    parts.model.load_state_dict(saved["model"])
    parts.optimizer.load_state_dict(saved["optimizer"])
    parts.scheduler.load_state_dict(saved["scheduler"])
    if parts.average is not None:
        parts.average.load_state_dict(saved["average"])
    return TrainState(**saved["trainer_state"])


def write_history(path: Path, history: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def finish(out: Path, record: dict, data: DataSet, config: GpuConfig, device: torch.device,
           reporter: Reporter) -> None:
    """Curves, then the frozen checkpoint's test report (the first time test/ is opened)."""
    from edgecxr.core.optional import available

    if available("matplotlib"):
        from edgecxr.core.plots import curves_png

        curves_png(out / "history.csv", out / "curves.png")
    if data.test is not None and config.evaluate_test:
        from edgecxr.training.evaluate import evaluate_checkpoint

        reporter.log("evaluating the checkpoint chosen on validation on the test split")
        report = evaluate_checkpoint(out / "model", data.test.root, out, batch_size=config.eval_batch_size,
                                     device=str(device), progress=lambda total: reporter.task("test set", total))
        record["data"]["fingerprints"]["test"] = report["data"]["fingerprint"]
        record["result"]["test"] = {"accuracy": report["metrics"]["accuracy"],
                                    "fingerprint": report["data"]["fingerprint"], "n_images": report["n_images"]}
    shutil.rmtree(out / "checkpoint.tmp", ignore_errors=True)
    record.update(status="finished", updated=utc_now())
    atomic_write_json(out / "run.json", record)
