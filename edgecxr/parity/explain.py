"""`parity-check --explain`: are the maps the device draws faithful to its engine, do they agree
with the PyTorch model's maps, and do they depend on what the model learned at all?

Every model explains the same class per image (PyTorch's prediction, read from the reference
report), with the same occlusion code and the same random baseline maps, so the figures differ
only by the model. The PyTorch side is imported lazily and only when its checkpoint is here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecxr.backends import RunnerOptions, open_runner
from edgecxr.core.bundle import Bundle
from edgecxr.core.metrics import calibrated_softmax
from edgecxr.core.optional import available
from edgecxr.explain.faithfulness import deletion_insertion, random_heat, spearman
from edgecxr.explain.occlusion import DEFAULT_GRID, Grid, Infer, occlusion_map

DEFAULT_IMAGES = 40
RANDOMISED_MAX_CORRELATION = 0.5  # maps of a model with fresh random weights must not look like the trained one's
REPO = Path(__file__).resolve().parents[2]


def pick(samples, ref_rows: dict, class_names: list[str], n: int) -> list[int]:
    """Evenly spread over each class, plus up to a quarter that PyTorch got wrong (the figure's wrong cases)."""
    wrong = [i for i, s in enumerate(samples) if ref_rows[s.rel]["prediction"] != class_names[s.label]]
    chosen = set(_evenly(wrong, min(len(wrong), n // 4)))
    for label in range(len(class_names)):
        pool = [i for i, s in enumerate(samples) if s.label == label and i not in chosen]
        chosen |= set(_evenly(pool, (n - len(chosen)) // (len(class_names) - label)))
    return sorted(chosen)


def _evenly(items: list, k: int) -> list:
    return [items[round(j * len(items) / k)] for j in range(k)] if k and items else []


def model_maps(infer: Infer, inputs: np.ndarray, targets: list[int], grid: Grid, advance, seed: int = 0,
               temperature: float = 1.0) -> dict:
    """Maps, deletion/insertion areas and those of random maps (same seed for every model: same baseline),
    on the bundle's calibrated probabilities (`temperature`) for every model alike."""
    rng = np.random.default_rng(seed)
    found: dict = {"falls": [], "heat": [], "reason": [], "deletion": [], "insertion": [], "random_deletion": [],
             "random_insertion": [], "ms": []}
    for tensor, target in zip(inputs, targets):
        ex = occlusion_map(infer, tensor, target=target, grid=grid, temperature=temperature)
        deletion, insertion = deletion_insertion(infer, tensor, ex.heat, target, rng, temperature=temperature)
        r_deletion, r_insertion = deletion_insertion(infer, tensor, random_heat(grid, tensor.shape[1:], rng),
                                                     target, rng, temperature=temperature)
        for key, value in (("falls", ex.falls), ("heat", ex.heat), ("reason", ex.reason), ("deletion", deletion),
                           ("insertion", insertion), ("random_deletion", r_deletion),
                           ("random_insertion", r_insertion), ("ms", ex.ms)):
            found[key].append(value)
        advance(1)
    blank = np.broadcast_to(inputs.mean(axis=(0, 2, 3))[:, None, None], inputs.shape[1:])[None]
    found["blank"] = calibrated_softmax(infer(np.ascontiguousarray(blank, np.float32)), temperature)[0]
    return found


def summary(maps: dict, targets: list[int], class_names: list[str]) -> dict:
    keys = ("deletion", "insertion", "random_deletion", "random_insertion")
    out: dict = {k: float(np.mean(maps[k])) for k in keys}
    out["by_class"] = {}
    for label, name in enumerate(class_names):
        rows = [i for i, t in enumerate(targets) if t == label]
        if rows:
            out["by_class"][name] = {"n": len(rows), **{k: float(np.mean([maps[k][i] for i in rows])) for k in keys}}
    out["no_map"] = sum(r is not None for r in maps["reason"])
    out["ms_per_map_median"] = float(np.median(maps["ms"]))
    out["blank_frame_probabilities"] = {n: float(p) for n, p in zip(class_names, maps["blank"])}
    out["faithful"] = out["insertion"] > out["random_insertion"] and out["deletion"] < out["random_deletion"]
    return out


def agreement(ours: dict, theirs: dict) -> dict:
    """Spearman correlation, square by square, image by image."""
    rho = [spearman(a, b) for a, b in zip(ours["falls"], theirs["falls"])]
    return {"mean": float(np.mean(rho)), "median": float(np.median(rho)), "min": float(np.min(rho)),
            "per_image": [round(r, 4) for r in rho]}


def find_checkpoint(bundle: Bundle, given: Path | None) -> tuple[Path | None, str | None]:
    """The bundle's source checkpoint, checked by its weights' sha256; (None, why) when it is not here."""
    from edgecxr.core.data.fingerprint import sha256_file

    source = bundle.manifest.get("source", {})
    wanted = source.get("checkpoint_sha256")
    candidates = [given] if given else [Path(source.get("checkpoint", "")), REPO / "train" / "reference-run" / "model"]
    for folder in candidates:
        weights = folder / "model.safetensors"
        if weights.is_file() and (given or wanted is None or sha256_file(weights) == wanted):
            return folder, None
    if given:
        return None, f"{given} has no model.safetensors"
    return None, f"the bundle's source checkpoint ({source.get('checkpoint')}) is not here; give --checkpoint"


def run_explain(bundle: Bundle, artifacts, inputs: np.ndarray, samples, ref_rows: dict, options: RunnerOptions, *,
                images: int = DEFAULT_IMAGES, grid: Grid = DEFAULT_GRID, checkpoint: Path | None = None,
                progress=None) -> tuple[dict, dict]:
    """(the report's `explain` section, the in-memory maps for the figure)."""
    progress = progress or (lambda description, total: (lambda n=1: None))
    names = bundle.class_names
    chosen = pick(samples, ref_rows, names, images)
    x = inputs[chosen]
    targets = [names.index(ref_rows[samples[i].rel]["prediction"]) for i in chosen]
    maps: dict = {}
    section: dict = {"images": len(chosen), "grid": {"patch": grid.patch, "stride": grid.stride,
                                                         **grid.describe(*x.shape[2:])},
                         "explained_class": "PyTorch's prediction", "engines": [], "pytorch": None,
                         "randomisation": None}
    folder, why = find_checkpoint(bundle, checkpoint)
    if folder is not None and not available("torch"):
        folder, why = None, "torch is not installed (pip install 'edgecxr[train]')"
    if folder is not None:
        from edgecxr.training.reference_maps import torch_infer

        maps["PyTorch"] = model_maps(torch_infer(folder), x, targets, grid, progress("PyTorch maps", len(x)),
                                     temperature=bundle.temperature)
        randomised = model_maps(torch_infer(folder, randomised=True), x, targets, grid,
                                progress("randomised-weight maps", len(x)), temperature=bundle.temperature)
        section["pytorch"] = {"checkpoint": str(folder), **summary(maps["PyTorch"], targets, names)}
        rho = agreement(randomised, maps["PyTorch"])
        section["randomisation"] = {"rank_correlation_with_trained": rho, "no_map": summary(randomised, targets,
                                                                                             names)["no_map"],
                                    "limit": RANDOMISED_MAX_CORRELATION,
                                    "maps_differ": rho["mean"] < RANDOMISED_MAX_CORRELATION}
    else:
        section["pytorch_skipped"] = why
    for artifact in artifacts:
        runner = open_runner(artifact.backend, artifact.path, options)
        try:
            maps[artifact.name] = model_maps(runner.infer, x, targets, grid, progress(f"{artifact.name} maps", len(x)),
                                             temperature=bundle.temperature)
        finally:
            runner.close()
        entry = {"artifact": artifact.name, **summary(maps[artifact.name], targets, names)}
        if "PyTorch" in maps:
            entry["rank_correlation_with_pytorch"] = agreement(maps[artifact.name], maps["PyTorch"])
        section["engines"].append(entry)
    section["deployed"] = _deployed(bundle, [a.name for a in artifacts])
    section["rows"] = [{"path": samples[i].rel, "truth": names[samples[i].label], "explained": names[t]}
                       for i, t in zip(chosen, targets)]
    section["failures"] = failures(section)
    return section, {"inputs": x, "targets": targets, "chosen": chosen, "maps": maps}


def _deployed(bundle: Bundle, names: list[str]) -> str:
    """The engine `watch --backend auto --precision auto` runs here, when it was checked; else the first checked."""
    from edgecxr.core.errors import EdgecxrError
    from edgecxr.runtime.selection import choose

    try:
        chosen = choose(bundle, "auto", "auto").artifact.name
    except EdgecxrError:
        chosen = None
    return chosen if chosen in names else names[0]


def failures(section: dict) -> list[str]:
    found = [f"{e['artifact']}: maps no better than random (insertion {e['insertion']:.3f} vs "
             f"{e['random_insertion']:.3f}, deletion {e['deletion']:.3f} vs {e['random_deletion']:.3f})"
             for e in section["engines"] if not e["faithful"]]
    r = section["randomisation"]
    if r is not None and not r["maps_differ"]:
        found.append(f"maps of a randomised-weight model correlate {r['rank_correlation_with_trained']['mean']:.2f} "
                     f"with the trained model's (limit {r['limit']}): the maps do not show what the model learned")
    return found
