"""Image-folder data sets: `ROOT/{train,val,test}/<CLASS>/*`.

Classes are the sorted subfolder names and must agree across splits. A missing or small
`val` folder is replaced by a stratified, seeded split carved from `train` by patient
(edgecxr.core.data.patients: no patient on both sides), and that split and its rule are
recorded, so any run can be reproduced file for file. A given `val` folder is used as is, but
the patients it shares with `train` are counted, said (`val_note`) and recorded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecxr.core.data.decode import SUPPORTED_SUFFIXES, decode_bytes
from edgecxr.core.data.fingerprint import dataset_fingerprint, sha256_bytes
from edgecxr.core.data.patients import describe, group_of, numbering_of
from edgecxr.core.data.roots import resolve_recorded
from edgecxr.core.defaults import DEFAULT_SEED
from edgecxr.core.errors import DataError, DecodeError

MIN_VAL_PER_CLASS = 50


@dataclass
class Sample:
    path: Path
    rel: str  # POSIX path relative to the split root, e.g. "NORMAL/IM-0001-0001.jpeg"
    label: int
    sha256: str | None = None


@dataclass
class Split:
    name: str
    root: Path
    classes: list[str]
    samples: list[Sample]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for s in self.samples:
            counts[self.classes[s.label]] += 1
        return counts

    def fingerprint(self) -> str:
        return samples_fingerprint(self.samples)


def hashed_pairs(samples: Sequence[Sample]) -> list[tuple[str, str]]:
    """(relative path, sha256) of samples `hash_and_check` has hashed; an unhashed one is a bug
    in the caller, never a file to record with an empty hash."""
    pairs = [(s.rel, s.sha256) for s in samples if s.sha256 is not None]
    if len(pairs) != len(samples):
        raise RuntimeError(f"hash the samples before fingerprinting them ({len(samples) - len(pairs)} unhashed)")
    return pairs


def samples_fingerprint(samples: Sequence[Sample]) -> str:
    return dataset_fingerprint(hashed_pairs(samples))


@dataclass
class DataSet:
    root: Path
    classes: list[str]
    train: Split
    val: Split
    test: Split | None
    val_source: str  # "folder" or "carved"
    val_note: str = ""
    # the patient groups (edgecxr.core.data.patients): how a carved split grouped files, or for a
    # given val/ folder the groups it shares with train/ (`shared_with_train`)
    val_rule: dict | None = None
    bad_files: list[dict] = field(default_factory=list)


def recorded_samples(root: Path, rels: Sequence[str], classes: Sequence[str]) -> list[Sample]:
    """Samples for relative paths a run.json records under `root` (the first folder is the class)."""
    index = {c: i for i, c in enumerate(classes)}
    return [Sample(root / rel, rel, index[rel.split("/")[0]]) for rel in rels]


def recorded_validation_root(run: dict | None) -> Path | None:
    """Where a run's recorded validation images are: its val/ folder, or train/ for a carved
    split (val_root = train_root); None when the run records no validation images."""
    split = (run or {}).get("split") or {}
    if not split.get("val"):
        return None
    return resolve_recorded(split.get("val_root") or split.get("train_root", ""))


def find_classes(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_split(split_dir: str | Path, name: str | None = None,
               classes: Sequence[str] | None = None) -> Split:
    """List a split's images (no decoding); every class folder must hold at least one."""
    split_dir = Path(split_dir)
    name = name or split_dir.name
    if not split_dir.is_dir():
        raise DataError("folder not found", path=split_dir,
                        fix="give a folder laid out as <CLASS>/<image files>")
    found = find_classes(split_dir)
    if not found:
        raise DataError("no class folders inside", path=split_dir,
                        fix="put each class's images in a subfolder named after the class")
    if classes is not None and list(classes) != found:
        raise DataError(
            f"classes differ: expected {list(classes)}, the {name} split has {found}",
            path=split_dir, fix="give every split the same class folders",
        )
    samples: list[Sample] = []
    for label, cls in enumerate(found):
        files = sorted(
            p for p in (split_dir / cls).rglob("*")
            if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(split_dir).parts)
        )
        if not files:
            raise DataError(f"class {cls!r} has no PNG, JPEG or DICOM images",
                            path=split_dir / cls, fix="add images or remove the empty folder")
        samples.extend(Sample(p, p.relative_to(split_dir).as_posix(), label) for p in files)
    return Split(name, split_dir, found, samples)


def stratified_split(samples: Sequence[Sample], fraction: float, seed: int, n_classes: int,
                     group_of: Callable[[str], str] = group_of) -> tuple[list[Sample], list[Sample]]:
    """Seeded split by patient group, stratified by class; returns (train, val) in input order.

    Each group goes whole to one side; a group is counted under its most frequent class.
    Per class, shuffled groups are taken into validation while that class's validation
    image count stays at or below its share (at least one group, never all of them).
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1, got {fraction}",
                        fix="use e.g. --val-fraction 0.1")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(group_of(s.rel), []).append(i)
    by_class: dict[int, list[str]] = {label: [] for label in range(n_classes)}
    for key, ids in groups.items():
        labels = [samples[i].label for i in ids]
        by_class[max(set(labels), key=lambda lab: (labels.count(lab), -lab))].append(key)
    rng = np.random.default_rng(seed)
    val_ids: set[int] = set()
    for label in range(n_classes):
        keys = sorted(by_class[label])
        if len(keys) < 2:
            continue
        target = round(sum(len(groups[k]) for k in keys) * fraction)
        taken: list[str] = []
        size = 0
        for key in (keys[j] for j in rng.permutation(len(keys))):
            if len(taken) == len(keys) - 1 or (taken and size + len(groups[key]) > target):
                continue
            taken.append(key)
            size += len(groups[key])
        for key in taken:
            val_ids.update(groups[key])
    train = [s for i, s in enumerate(samples) if i not in val_ids]
    val = [s for i, s in enumerate(samples) if i in val_ids]
    return train, val


VAL_SPLITS = ("random", "lowest-numbered")


def split_seed_of(settings: Mapping[str, Any]) -> int | None:
    """The seed a run's validation split is drawn with: `split_seed` (--split-seed), else `seed`;
    None for a split that takes no seed (lowest-numbered). Reads a training config's `to_dict()`
    or run.json's settings; a record from before --val-split split at random."""
    if settings.get("val_split", "random") != "random":
        return None
    return settings.get("seed") if settings.get("split_seed") is None else settings["split_seed"]


def lowest_numbered_split(samples: Sequence[Sample], fraction: float, n_classes: int,
                          class_names: Sequence[str] | None = None) -> tuple[list[Sample], list[Sample]]:
    """Validation from the lowest-numbered patients of each patient numbering; returns (train, val).

    The official Kermany test split holds whole blocks of patient numbers, and its normal patients
    are numbered below every training patient. Validation built the same way resembles that shift
    more than a random patient split does: per class and numbering (`person`, `IM-`,
    `NORMAL2-IM-`: `numbering_of`), patients in ascending number, one block from the lowest,
    while the block's images stay within `fraction` of the numbering's (at least one patient
    where the numbering has two or more; never all numbered patients of a class). Deterministic:
    no seed. Images whose names carry no patient number stay in training; a class with fewer than
    two numbered patients is refused.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1, got {fraction}",
                        fix="use e.g. --val-fraction 0.1")
    groups: dict[str, list[int]] = {}
    number: dict[str, tuple[str, int]] = {}
    for i, s in enumerate(samples):
        numbered = numbering_of(s.rel)
        if numbered is not None:
            key = group_of(s.rel)
            groups.setdefault(key, []).append(i)
            number[key] = numbered
    blocks: dict[tuple[int, str], list[str]] = {}
    for key, ids in groups.items():
        labels = [samples[i].label for i in ids]
        label = max(set(labels), key=lambda lab: (labels.count(lab), -lab))
        blocks.setdefault((label, number[key][0]), []).append(key)
    val_ids: set[int] = set()
    for label in range(n_classes):
        class_keys = [k for (lab, _), keys in blocks.items() if lab == label for k in keys]
        if len(class_keys) < 2:
            name = class_names[label] if class_names else label
            raise DataError(f"--val-split lowest-numbered needs patient numbers in the file names "
                            f"(person<N>_..., IM-<P>-...), and class {name!r} has {len(class_keys)} "
                            "numbered patient(s)",
                            fix="use --val-split random (a seeded split by patient)")
        taken_in_class = 0
        for (lab, _numbering), keys in sorted(blocks.items()):
            if lab != label or len(keys) < 2:
                continue
            keys.sort(key=lambda k: (number[k][1], k))
            target = round(sum(len(groups[k]) for k in keys) * fraction)
            size = 0
            for key in keys:
                if taken_in_class == len(class_keys) - 1 or (size and size + len(groups[key]) > target):
                    break
                val_ids.update(groups[key])
                size += len(groups[key])
                taken_in_class += 1
    train = [s for i, s in enumerate(samples) if i not in val_ids]
    val = [s for i, s in enumerate(samples) if i in val_ids]
    return train, val


def replayed_val_files(recorded: dict | None) -> list[str] | None:
    """What `load_dataset(val_files=...)` replays when a run resumes: its carved validation split.
    A given val/ folder is read again instead (its files are relative to it, not to train/), and
    the recorded fingerprints check that it is unchanged."""
    if recorded is None or recorded["data"].get("val_source") == "folder":
        return None
    return recorded["split"]["val"]


def load_dataset(root: str | Path, *, val_fraction: float = 0.1, seed: int | None = DEFAULT_SEED,
                 val_files: Sequence[str] | None = None, val_split: str = "random") -> DataSet:
    """Read the layout of ROOT; `val_files` replays a recorded carved split. Without a val/
    folder, validation is carved from train/ by patient: `random` (seeded by `seed`) or
    `lowest-numbered` (`lowest_numbered_split`)."""
    if val_split not in VAL_SPLITS:
        raise DataError(f"unknown validation split {val_split!r}",
                        fix=f"use --val-split {' or '.join(VAL_SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError("data folder not found", path=root,
                        fix="give the folder that holds train/ (and test/, optionally val/)")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError("no train/ folder", path=root,
                        fix="lay the data out as ROOT/train/<CLASS>/*, ROOT/test/<CLASS>/*")
    train = scan_split(train_dir, "train")
    classes = train.classes
    test = scan_split(root / "test", "test", classes) if (root / "test").is_dir() else None
    val_note = ""
    val_dir = root / "val"
    if val_dir.is_dir() and val_files is None:
        val = scan_split(val_dir, "val", classes)
        small = {c: n for c, n in val.counts().items() if n < MIN_VAL_PER_CLASS}
        if not small:
            shared = shared_patients(train.samples, val.samples)
            return DataSet(root, classes, train, val, test, "folder", shared_note(shared),
                           {**describe(s.rel for s in val.samples), "shared_with_train": shared})
        val_note = (f"val/ ignored: fewer than {MIN_VAL_PER_CLASS} images per class "
                    f"({', '.join(f'{c}: {n}' for c, n in small.items())})")
    if val_files is not None:
        wanted = set(val_files)
        kept = [s for s in train.samples if s.rel not in wanted]
        carved = [s for s in train.samples if s.rel in wanted]
        if len(carved) != len(wanted):
            raise DataError("the recorded validation split names files that are not in train/",
                            path=train_dir, fix="resume only on the data the run started with")
    elif val_split == "lowest-numbered":
        kept, carved = lowest_numbered_split(train.samples, val_fraction, len(classes), classes)
    else:
        kept, carved = stratified_split(train.samples, val_fraction, DEFAULT_SEED if seed is None else seed,
                                        len(classes))
    return DataSet(
        root, classes,
        Split("train", train_dir, classes, kept),
        Split("val", train_dir, classes, carved),
        test, "carved", val_note, describe(s.rel for s in train.samples),
    )


def shared_patients(train: Sequence[Sample], val: Sequence[Sample]) -> dict:
    """Patient groups (edgecxr.core.data.patients) with images in both a given val/ folder and
    train/: the checkpoint would be chosen on near-duplicates of training images."""
    train_groups = {group_of(s.rel) for s in train}
    both = sorted({group_of(s.rel) for s in val} & train_groups)
    in_both = set(both)
    return {"groups": len(both), "val_images": sum(group_of(s.rel) in in_both for s in val),
            "train_images": sum(group_of(s.rel) in in_both for s in train), "examples": both[:3]}


def shared_note(shared: dict) -> str:
    """The warning (and run.json's data.val_note) when a given val/ shares patients with train/."""
    if not shared["groups"]:
        return ""
    return (f"val/ shares {shared['groups']} patient(s) with train/ ({shared['val_images']} validation and "
            f"{shared['train_images']} training images, e.g. {shared['examples'][0]}): validation figures and "
            "the checkpoint choice are optimistic; move those patients' images to one side, or remove val/ "
            "to have a validation split carved from train/ by patient")


def hash_and_check(samples: Sequence[Sample], *, skip_bad: bool = False,
                   on_progress: Callable[[int], None] | None = None,
                   workers: int | None = None) -> list[dict]:
    """Hash every file and decode it once, so training never meets a broken image midway.

    Fills `Sample.sha256`. Returns the bad files (path, code, reason); without `skip_bad`
    any bad file raises one error that lists them all.
    """
    def check(sample: Sample):
        try:
            data = sample.path.read_bytes()
        except OSError as exc:
            return sample, None, DecodeError("unreadable", str(exc), path=sample.path)
        digest = sha256_bytes(data)
        try:
            decode_bytes(data, str(sample.path))
        except DecodeError as exc:
            return sample, digest, exc
        return sample, digest, None

    bad: list[dict] = []
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        for sample, digest, error in pool.map(check, samples):
            sample.sha256 = digest
            if error is not None:
                bad.append({"path": str(sample.path), "code": error.code, "reason": error.cause})
            if on_progress:
                on_progress(1)
    if bad and not skip_bad:
        listing = "; ".join(f"{b['path']} ({b['reason']})" for b in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"{len(bad)} unreadable image(s): {listing}{more}",
                        fix="remove or replace them, or pass --skip-bad to leave them out")
    return bad


def drop_bad(split: Split, bad: list[dict]) -> Split:
    bad_paths = {b["path"] for b in bad}
    return Split(split.name, split.root, split.classes,
                 [s for s in split.samples if str(s.path) not in bad_paths])
