"""Secondary check for issue 21: the six seeds of recipes A and B on the part of their shared
validation split (`--split-seed 1216`) that `--val-split lowest-numbered` would also hold out.

Those images are held out of all six runs, so the runs need no retraining; the subset was fixed
by the `lowest_numbered_split` rule (committed before any of this was read), not chosen here.
It is small, so it is a preview, not the experiment: that is the two runs trained with
`--val-split lowest-numbered` (docs/training.md).

    python train/patient-split-runs/lowest_numbered_subset.py runs/ref-s1216 runs/ref-s2 runs/ref-s3 \
        runs/scan-s1216 runs/scan-s2 runs/scan-s3 --data ../shared/data/kermany
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgecxr.core.data.folders import Split, load_dataset
from edgecxr.training.compare import read_run, score, validation_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()

    records = {run: read_run(run) for run in args.runs}
    first = next(iter(records.values()))
    shared = validation_split(first, args.data)
    fraction = first["settings"]["val_fraction"]
    lowest = {s.rel for s in load_dataset(args.data, val_fraction=fraction, val_split="lowest-numbered").val.samples}
    subset = Split("val", shared.root, shared.classes, [s for s in shared.samples if s.rel in lowest])
    counts = subset.counts()
    lines = [f"# {len(subset.samples)} of the {len(shared.samples)} shared validation images are lowest-numbered "
             f"({', '.join(f'{k} {v}' for k, v in counts.items())})", "",
             "| run | recipe | accuracy | AUC | NORMAL recall | PNEUMONIA recall | NORMAL2-IM misread |",
             "|---|---|---:|---:|---:|---:|---:|"]
    by_recipe: dict[str, list[dict]] = {}
    for run, record in records.items():
        if set(record["split"]["val"]) != {s.rel for s in shared.samples}:
            raise SystemExit(f"{run}: chose its checkpoint on other validation images")
        recipe = "B" if record["settings"].get("ema_decay") else "A"
        figures = score(run, subset)
        n2 = figures["val_by_source"].get("NORMAL2-IM", {"images": 0, "errors": 0})
        figures["n2"] = n2["errors"] / max(n2["images"], 1)
        by_recipe.setdefault(recipe, []).append(figures)
        lines.append(f"| {run.name} | {recipe} | {100 * figures['val_accuracy']:.1f} | {figures['val_auc']:.3f} | "
                     f"{100 * figures['val_recall_NORMAL']:.1f} | {100 * figures['val_recall_PNEUMONIA']:.1f} | "
                     f"{n2['errors']}/{n2['images']} |")
    def ms(rows: list[dict], key: str, scale: float = 100.0, digits: int = 1) -> str:
        values = np.array([r[key] for r in rows]) * scale
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"

    for recipe, rows in sorted(by_recipe.items()):
        lines.append(f"| mean ± sd ({len(rows)}) | {recipe} | {ms(rows, 'val_accuracy')} | "
                     f"{ms(rows, 'val_auc', 1, 3)} | {ms(rows, 'val_recall_NORMAL')} | "
                     f"{ms(rows, 'val_recall_PNEUMONIA')} | {ms(rows, 'n2')} % |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
