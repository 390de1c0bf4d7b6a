"""Train a Swin-V2 from scratch on one GPU, the whole data set held on the device.

    python train/gpu_train.py ../shared/data/kermany --out runs/gpu-tiny-256

Defaults: --preset swinv2-tiny-256, 60 epochs, batch 128, bf16 autocast. Data: ROOT/train/CLASS/*
(validation carved from it by patient), ROOT/test/CLASS/* scored once the checkpoint is frozen.
The run folder is exported like any other: `edgecxr export runs/gpu-tiny-256 --out bundle`.
Continue an interrupted run with the same command plus --resume. See docs/training.md, "On a GPU".
"""

from __future__ import annotations

import argparse
import sys

from edgecxr.core.errors import EdgecxrError
from edgecxr.core.progress import Reporter


class PrintReporter(Reporter):
    def log(self, message: str) -> None:
        print(message, flush=True)

    def epoch_end(self, row: dict) -> None:
        print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}, "
              f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} AUC {row['val_auc']}, {row['seconds']:.1f} s "
              f"({row['images_per_s']:.0f} img/s){'  best' if row['best'] else ''}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from edgecxr.training.gpu.config import GpuConfig

    defaults = GpuConfig(data="", out="")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="ROOT with train/CLASS/* (and test/CLASS/*)")
    parser.add_argument("--out", required=True, help="run folder (new, or the one to --resume)")
    parser.add_argument("--preset", default=defaults.preset)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--split-seed", type=int, default=None,
                        help="seed of the validation split alone (default: --seed), as edgecxr train --split-seed")
    parser.add_argument("--val-split", choices=("random", "lowest-numbered"), default=defaults.val_split,
                        help="how validation is carved from train/, as edgecxr train --val-split")
    parser.add_argument("--torch-device", "--device", dest="device", choices=("cuda", "cpu"), default=defaults.device,
                        help="PyTorch device, as edgecxr train --torch-device (--device is the same)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=defaults.precision)
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    parser.add_argument("--no-test", action="store_true", help="do not score test/ at the end")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    args = parser.parse_args(argv)

    from edgecxr.training.gpu.loop import train_gpu

    config = GpuConfig(data=args.data, out=args.out, preset=args.preset, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay, seed=args.seed,
                       split_seed=args.split_seed, val_split=args.val_split,
                       device=args.device, precision=args.precision, compile=args.compile,
                       evaluate_test=not args.no_test)
    try:
        record = train_gpu(config, resume=args.resume, reporter=PrintReporter())
    except EdgecxrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = record.get("result", {})
    print(f"best epoch {result.get('best_epoch')}: val acc {result.get('best_val_acc')}; "
          f"test {result.get('test', {}).get('accuracy', 'not scored')}; "
          f"{result.get('train_seconds')} s training; run folder {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
