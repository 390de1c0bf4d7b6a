"""Score runs on the validation images that the shipped model never trained on (issue 21).

The shipped `train/reference-run` was chosen on a random image split, so 450 of the 522 shared
validation images (split seed 1216) were in its training set. The 72 left (`clean72.json`'s
`images`) are the only ones on which the shipped model and an honestly trained run are judged
on equal terms. 72 images is about 1.4 points per image: a check that a candidate is not worse,
too small to rank runs.

    python train/patient-split-runs/clean72.py RUN [RUN ...] [--data ../shared/data/kermany] [--out FILE]

RUN: full run folders of `edgecxr train` (with model/), or `train/reference-run`. Prints one
markdown table; `--out` also writes the scores as JSON in clean72.json's layout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecxr.core.data.folders import Split
from edgecxr.training.compare import read_run, validation_split
from edgecxr.training.compare import score as compare_score

HERE = Path(__file__).parent


def score(folder: Path, images: list[str], data: Path | None) -> dict:
    """compare-runs' validation figures of the run's checkpoint, on the clean images only."""
    split = validation_split(read_run(folder), data)
    wanted = set(images)
    samples = [s for s in split.samples if s.rel in wanted]
    if len(samples) != len(wanted):
        raise SystemExit(f"{folder}: its validation split lacks {len(wanted) - len(samples)} of the clean images; "
                         "give runs trained with --split-seed 1216 on the random patient split (or the shipped run)")
    if "PNEUMONIA" not in split.classes:
        raise SystemExit(f"{folder}: the classes {split.classes} have no PNEUMONIA")
    figures = compare_score(folder, Split("val", split.root, split.classes, samples))
    figures.pop("val_by_source")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=None, help="data root (default: each run's recorded one)")
    parser.add_argument("--out", type=Path, default=None, help="also write the scores here as JSON")
    args = parser.parse_args()
    images = json.loads((HERE / "clean72.json").read_text())["images"]
    scores = {str(run): score(run, images, args.data) for run in args.runs}
    print(f"| run ({len(images)} clean validation images) | acc | AUC | NORMAL recall | PNEUMONIA recall |")
    print("|---|---:|---:|---:|---:|")
    for run, s in scores.items():
        print(f"| `{Path(run).name}` | {100 * s['val_accuracy']:.1f} | {s['val_auc']:.3f} | "
              f"{100 * s['val_recall_NORMAL']:.1f} | {100 * s['val_recall_PNEUMONIA']:.1f} |")
    if args.out is not None:
        args.out.write_text(json.dumps({"images": images, "scores": scores}, indent=1) + "\n")


if __name__ == "__main__":
    main()
