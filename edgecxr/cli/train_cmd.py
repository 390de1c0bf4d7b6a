"""`edgecxr train` and `edgecxr evaluate` (workstation commands; need the [train] extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecxr.core.defaults import DEFAULT_SEED
from edgecxr.training.presets import PRESETS

_PRESET_HELP = "; ".join(f"{name}: {p['about']}" for name, p in PRESETS.items())


def _torch_device(choices: str):
    """PyTorch's device, named apart from watch's --openvino-device and service install's --device-class;
    --device stays as its older name, since in these commands it can mean nothing else."""
    return typer.Option("--torch-device", "--device", help=f"PyTorch device: {choices}")


def train(
    data: Annotated[Path, typer.Argument(help="Data root holding train/ (and test/, val/), each "
                                              "with one subfolder per class.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
    base: Annotated[str | None, typer.Option(help="Fine-tune this Swin-V2 checkpoint: a local "
                                                  "folder or a Hugging Face id in the local cache.")] = None,
    arch: Annotated[str | None, typer.Option(help=f"Train from random weights. {_PRESET_HELP}.")] = None,
    init: Annotated[str | None, typer.Option(help="With --arch: start from the encoder of `edgecxr pretrain` (RUN/model).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML recipe; flags given here override it.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (seed study: 15).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (seed study: 2e-5).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size per device (32).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay (0.01).")] = None,
    seed: Annotated[int | None, typer.Option(help=f"Seed for init, order, augmentation and (without --split-seed) the validation split (default {DEFAULT_SEED}).")] = None,
    split_seed: Annotated[int | None, typer.Option(help="Seed for the validation split alone (default: --seed), so several seeds or recipes are compared on the same validation images.")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Share of train carved out for validation when val/ is missing or small (0.1).")] = None,
    val_split: Annotated[str | None, typer.Option(help="How validation is carved from train/ by patient: random (seeded by --split-seed; the default) or lowest-numbered (one block of the lowest-numbered patients of each patient numbering, the nearest to the official test split's; no seed).")] = None,
    class_weights: Annotated[str | None, typer.Option(help="auto (inverse class frequency) or none.")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing (0).")] = None,
    early_stopping: Annotated[int | None, typer.Option(help="Stop after this many epochs without a better val accuracy; 0 = off.")] = None,
    layer_decay: Annotated[float | None, typer.Option(help="Layer-wise lr decay for fine-tuning a pretrained encoder: each block down from the head gets this factor more (1.0 = off).")] = None,
    ema_decay: Annotated[float | None, typer.Option(help="Validate and save an exponential moving average of the weights with this decay per step (0 = off).")] = None,
    torch_device: Annotated[str | None, _torch_device("auto (default), cpu or cuda.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, fp32, bf16 or fp16 (fp16 on GPU only).")] = None,
    workers: Annotated[int | None, typer.Option(help="Data-loader processes (default: one per two cores, at most 4).")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images (counted in run.json) instead of failing.")] = False,
    no_test: Annotated[bool, typer.Option("--no-test", help="Never open test/: export then freezes the temperature and threshold before any test image is read; score it afterwards with edgecxr evaluate.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last finished epoch.")] = False,
    stop_after_epoch: Annotated[int | None, typer.Option(hidden=True, help="Stop after this epoch (time-boxed sessions; --resume continues).")] = None,
):
    """Fine-tune (--base, or --arch with --init) or train (--arch) Swin-V2 and write the PyTorch test-set report."""
    from edgecxr.cli.console import out as console

    _prepare("training")
    from edgecxr.training.config import resolve
    from edgecxr.training.trainer import train as run_training

    settings = resolve(
        str(data), str(out), config_file=config, base=base, arch=arch, init=init, epochs=epochs, lr=lr,
        batch_size=batch_size, weight_decay=weight_decay, seed=seed, split_seed=split_seed, val_fraction=val_fraction,
        val_split=val_split,
        class_weights=class_weights, label_smoothing=label_smoothing,
        early_stopping=early_stopping, layer_decay=layer_decay, ema_decay=ema_decay, device=torch_device,
        precision=precision, workers=workers, skip_bad=skip_bad or None,
        evaluate_test=False if no_test else None)
    record = _run_reported(run_training, settings, resume, stop_after_epoch)
    if record is None:
        return
    result = record["result"]
    console.print(f"best epoch {result['best_epoch']}: val accuracy "
                  f"{100 * result['best_val_acc']:.2f}%  ->  {out / 'model'}")
    if "test" in result:
        console.print(f"test accuracy {100 * result['test']['accuracy']:.2f}% on "
                      f"{result['test']['n_images']} images  ->  {out / 'report.md'}")
        from edgecxr.core.reporting import load_report, paper_table

        console.print(paper_table(load_report(out)), markup=False)


def pretrain(
    images: Annotated[Path, typer.Argument(help="Training images (e.g. DATA/train); labels and subfolders are ignored.")],
    arch: Annotated[str, typer.Option(help=f"Architecture preset. {_PRESET_HELP}.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 100,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-4,
    batch_size: Annotated[int, typer.Option(help="Batch size per device.")] = 64,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.05,
    mask_ratio: Annotated[float, typer.Option(help="Share of mask patches hidden (SimMIM: 0.6).")] = 0.6,
    mask_patch_size: Annotated[int, typer.Option(help="Side of a masked square in pixels; a multiple of the model's patch size dividing the image size.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed for init, order, augmentation and masks.")] = DEFAULT_SEED,
    torch_device: Annotated[str, _torch_device("auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16 (fp16 on GPU only).")] = "auto",
    workers: Annotated[int, typer.Option(help="Data-loader processes (-1: one per two cores, at most 4).")] = -1,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images (counted in pretrain.json) instead of failing.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last finished epoch.")] = False,
    stop_after_epoch: Annotated[int | None, typer.Option(hidden=True, help="Stop after this epoch (time-boxed sessions; --resume continues).")] = None,
):
    """Pretrain a Swin-V2 encoder with SimMIM on unlabelled images (for train --init)."""
    from edgecxr.cli.console import out as console

    _prepare("pretraining")
    from edgecxr.training.pretrain import PretrainConfig
    from edgecxr.training.pretrain import pretrain as run_pretraining

    settings = PretrainConfig(
        images=str(images), out=str(out), arch=arch, epochs=epochs, lr=lr, batch_size=batch_size,
        weight_decay=weight_decay, mask_ratio=mask_ratio, mask_patch_size=mask_patch_size,
        seed=seed, device=torch_device, precision=precision, workers=workers, skip_bad=skip_bad)
    record = _run_reported(run_pretraining, settings, resume, stop_after_epoch)
    if record is None:
        return
    console.print(f"final masked L1 loss {record['result']['final_loss']:.4f}  ->  {out / 'model'}; "
                  f"fine-tune with: edgecxr train DATA --arch {arch} --init {out / 'model'} --out RUN")


def _prepare(task: str) -> None:
    """Fail early without the training libraries; then start the processes a launch asked for."""
    from edgecxr.core.optional import require

    require("torch", task)
    require("transformers", task)
    _start_requested_processes()


def _run_reported(run, settings, resume: bool, stop_after_epoch: int | None) -> dict | None:
    """Run with progress bars; the finished record on the main process, else None (another
    process of the run prints nothing; an interrupted run says how to continue)."""
    from edgecxr.cli.console import RichReporter
    from edgecxr.cli.console import out as console

    with RichReporter() as reporter:
        record = run(settings, resume=resume, reporter=reporter, stop_after_epoch=stop_after_epoch)
    if not _is_main_process():
        return None
    if record["status"] != "finished":
        console.print(f"stopped after epoch {stop_after_epoch}; continue with --resume")
        return None
    return record


def _start_requested_processes() -> None:
    """`accelerate launch --cpu --num_processes N` starts one process: start the N here."""
    from edgecxr.training.distributed import cpu_launch_request, relaunch

    request = cpu_launch_request()
    if request is not None:
        raise typer.Exit(relaunch(request))


def _is_main_process() -> bool:
    """Only the main process of a multi-process run prints the result."""
    from accelerate import PartialState

    return PartialState().is_main_process


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Checkpoint folder (RUN/model or RUN).")],
    test_dir: Annotated[Path, typer.Argument(help="Test folder with one subfolder per class.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.json, report.md and figures.")],
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    torch_device: Annotated[str, _torch_device("cpu or cuda.")] = "cpu",
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images instead of failing.")] = False,
):
    """Write the PyTorch test-set report of a checkpoint (the reference for parity-check)."""
    from edgecxr.cli.console import out as console
    from edgecxr.cli.console import task_progress
    from edgecxr.core.optional import require

    require("torch", "evaluate")
    from edgecxr.core.reporting import paper_table
    from edgecxr.training.evaluate import evaluate_checkpoint

    with task_progress() as start:
        report = evaluate_checkpoint(model_dir, test_dir, out, batch_size=batch_size,
                                     device=torch_device, skip_bad=skip_bad,
                                     progress=lambda total: start("evaluating", total))
    console.print(paper_table(report), markup=False)
    console.print(f"accuracy {100 * report['metrics']['accuracy']:.2f}%  ->  {out}")


def compare_runs(
    runs: Annotated[list[Path], typer.Argument(help="Run folders of `edgecxr train` (RUN, with run.json and model/).")],
    val_of: Annotated[Path | None, typer.Option(help="Score every run on this run's validation images (default: the first run's).")] = None,
    data: Annotated[Path | None, typer.Option(help="Data root to read the validation images from, when it moved since training.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for compare.json and compare.md.")] = None,
):
    """Runs side by side on one validation split (seeds of a recipe, or recipes): which one validation prefers, mean and spread, with each run's test figures, and where file names name their series, the error rate per series on validation and test."""
    import json

    from edgecxr.cli.console import out as console
    from edgecxr.core.optional import require

    require("torch", "compare-runs")
    require("transformers", "compare-runs")
    from edgecxr.training.compare import compare, markdown, recipe_runs, series_rates_by_recipe

    result = compare(runs, val_of=val_of, data_root=data)
    table = markdown(result)
    console.print(table, markup=False)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "compare.md").write_text(table)
        console.print(f"->  {out / 'compare.md'}")
        rates = series_rates_by_recipe(result)
        if rates:
            from edgecxr.core.plots import series_png

            names = {k: f"{k}: " + ", ".join(r["run"] for r in recipe_runs(result, k)) for k in rates}
            series_png(rates, out / "series.png", f"images misread per file-name series, validation ({result['val_of']}) "
                                                  "beside test; bars: mean of a recipe's runs, dots: each run", names)
            console.print(f"->  {out / 'series.png'}")
