"""The offline evaluation sets of `edgecxr gate-check`: image FILES, so that every case goes
through the real decoder and the real gate, as a file dropped in the inbox would.

Groups: `in_scope` (a labelled chest folder, referenced in place), `synthetic` (blank, constant,
gradient, noise and checkerboard frames as 8-bit PNG, 16-bit PNG and DICOM DX), `photo`
(photographs that ship inside installed packages), `other_modality` (CT/MR/US/NM/colour DICOM
test objects, copied and also converted to PNG so that the DICOM tags cannot help) and
`wrong_orientation` (chest images turned, inverted, flipped or cropped). The same seed gives
byte-identical files. `cases.jsonl` lists the cases, `manifest.json` the notes and attributions.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgecxr.core.data.decode import SUPPORTED_SUFFIXES, decode_file
from edgecxr.core.defaults import DEFAULT_SEED
from edgecxr.core.errors import DecodeError
from edgecxr.core.optional import available
from edgecxr.parity import gate_sources

GROUPS = ("in_scope", "synthetic", "photo", "other_modality", "wrong_orientation")
SIZES = ((512, 512), (1024, 1024), (2500, 2000))  # rows x columns; the last is a detector's portrait
FORMATS = ("png8", "png16", "dicom")
PATTERNS = ("blank_black", "blank_grey", "blank_white", "constant_0.10", "constant_0.25", "constant_0.75",
            "constant_0.90", "gradient_horizontal", "gradient_vertical", "noise_uniform", "noise_gaussian",
            "salt_and_pepper", "checkerboard")
TRANSFORMS = ("rotated_90", "rotated_180", "rotated_270", "inverted", "flipped_top_bottom", "crop")
WRONG_ORIENTATION_SOURCES = 100
MIN_SIDE = 32  # DICOM test objects smaller than this (3x3, 10x10) are codec tests, not pictures
NOT_ACQUIRED = ("SEG", "RTDOSE", "RTSTRUCT", "RTPLAN", "SR")  # masks and maps, not acquired images


@dataclass(frozen=True)
class Case:
    path: Path
    group: str
    kind: str
    in_scope: bool
    source: str

    def row(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


class GateSets(list[Case]):
    """The cases, plus what was left out and why (`notes`) and who made each package file."""

    def __init__(self, cases: Iterable[Case] = (), notes: dict | None = None, attributions: list | None = None):
        super().__init__(cases)
        self.notes: dict[str, list[str]] = notes or {}
        self.attributions: list[dict] = attributions or []


@dataclass
class _Build:
    out_dir: Path
    seed: int
    advance: Callable | None
    notes: dict[str, list[str]] = field(default_factory=dict)
    attributions: dict[str, dict] = field(default_factory=dict)

    def note(self, group: str, text: str) -> None:
        self.notes.setdefault(group, []).append(text)

    def done(self, case: Case) -> Case:
        if self.advance is not None:
            self.advance(1)
        return case


def build_sets(out_dir: Path, chest_folder: Path | None, *, seed: int = DEFAULT_SEED,
               limit_per_group: int | None = None, advance=None) -> GateSets:
    """Write the out-of-scope files into `out_dir` and list every case (in-scope ones in place).
    `limit_per_group` keeps the first N of each group, taken in turn from each kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    build = _Build(out_dir, seed, advance)
    chests = _chest_files(Path(chest_folder), build) if chest_folder is not None else []
    if chest_folder is None:
        build.note("in_scope", "no in-scope folder given: false refusals are not measured")
        build.note("wrong_orientation", "no in-scope folder given: no chest images to show wrongly")
    cases = [build.done(Case(path.resolve(), "in_scope", kind, True, "in-scope folder"))
             for kind, path in _limited([(kind, path) for path, kind in chests], limit_per_group)]
    cases += _synthetic(build, limit_per_group)
    cases += _photos(build, limit_per_group)
    cases += _other_modality(build, limit_per_group)
    cases += _wrong_orientation(build, chests, limit_per_group)
    result = GateSets(cases, build.notes, sorted(build.attributions.values(), key=lambda a: a["path"]))
    with open(out_dir / "cases.jsonl", "w") as f:
        f.writelines(json.dumps(case.row()) + "\n" for case in result)
    counts = {g: sum(c.group == g for c in result) for g in GROUPS}
    manifest = {"seed": seed, "limit_per_group": limit_per_group, "counts": counts, "notes": build.notes,
                "attributions": result.attributions}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return result


def read_cases(out_dir: Path) -> list[Case]:
    rows = [json.loads(line) for line in (Path(out_dir) / "cases.jsonl").read_text().splitlines() if line]
    return [Case(**{**row, "path": Path(row["path"])}) for row in rows]


def _limited(items: list[tuple[str, Any]], limit: int | None) -> list[tuple[str, Any]]:
    """(kind, item) pairs in their order, or, with a limit, the first `limit` taken from each kind
    in turn, so that a small set still holds every kind."""
    if limit is None:
        return items
    by_kind: dict[str, list] = {}
    for pair in items:
        by_kind.setdefault(pair[0], []).append(pair)
    picked: list = []
    queues = list(by_kind.values())
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues):
        picked += [q[depth] for q in queues if depth < len(q)][: limit - len(picked)]
        depth += 1
    return picked


def _chest_files(folder: Path, build: _Build) -> list[tuple[Path, str]]:
    """(path, class) of a labelled folder: CLASS/<files>, or flat files named CLASS-<name> (the
    repository's samples)."""
    if not folder.is_dir():
        build.note("in_scope", f"in-scope folder {folder} not found")
        return []
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        return [(p, c.name) for c in classes for p in sorted(c.iterdir())
                if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES]
    return [(p, p.name.split("-", 1)[0] if "-" in p.name else "unlabelled") for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES]


def _pattern(name: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    rows, cols = shape
    if name.startswith(("blank_", "constant_")):
        level = {"blank_black": 0.0, "blank_grey": 0.5, "blank_white": 1.0}.get(name)
        return np.full(shape, level if level is not None else float(name.split("_")[1]))
    if name == "gradient_horizontal":
        return np.broadcast_to(np.linspace(0.0, 1.0, cols), shape).copy()
    if name == "gradient_vertical":
        return np.broadcast_to(np.linspace(0.0, 1.0, rows)[:, None], shape).copy()
    if name == "noise_uniform":
        return rng.random(shape)
    if name == "noise_gaussian":
        return np.clip(rng.normal(0.5, 0.15, shape), 0.0, 1.0)
    if name == "salt_and_pepper":  # mid-grey with 10% of the pixels black or white
        image = np.full(shape, 0.5)
        hit = rng.random(shape) < 0.10
        image[hit] = rng.random(int(hit.sum())) < 0.5
        return image
    if name == "checkerboard":
        square = max(1, min(shape) // 8)
        return ((np.arange(rows)[:, None] // square + np.arange(cols)[None, :] // square) % 2).astype(float)
    raise ValueError(f"unknown pattern {name}")


def _synthetic(build: _Build, limit: int | None) -> list[Case]:
    # Each pattern in each size and format; ordered so the first 13 cases are every pattern at
    # 512 px with the formats taking turns, so a limited set still holds all three formats.
    formats = FORMATS if available("pydicom") else FORMATS[:2]
    if len(formats) < len(FORMATS):
        build.note("synthetic", "pydicom is not installed: the DICOM DX variants are left out")
    specs = [(step, p, SIZES[step // len(formats)], formats[(step + p) % len(formats)])
             for step in range(len(SIZES) * len(formats)) for p in range(len(PATTERNS))]
    if limit is not None:
        specs = specs[:limit]
    folder = build.out_dir / "synthetic"
    folder.mkdir(exist_ok=True)
    cases = []
    for step, p, shape, fmt in specs:
        name = PATTERNS[p]
        image = _pattern(name, shape, np.random.default_rng([build.seed, step, p]))
        stem = f"{name}-{shape[1]}x{shape[0]}-{fmt}"
        if fmt == "dicom":
            path = _write_dx(image, folder / f"{stem}.dcm", uid_seed=f"{build.seed}-{stem}")
        else:
            path = _write_png(image, folder / f"{stem}.png", sixteen=fmt == "png16")
        what = {"png8": "8-bit PNG", "png16": "16-bit PNG", "dicom": "DICOM DX MONOCHROME2 12-bit"}[fmt]
        cases.append(build.done(Case(path, "synthetic", name, False, f"generated: {what}, {shape[1]}x{shape[0]}")))
    return cases


def _write_png(image: np.ndarray, path: Path, *, sixteen: bool) -> Path:
    """[0, 1] grey or RGB -> PNG; 16-bit only for grey (PNG readers disagree on 16-bit colour)."""
    if image.ndim == 3:
        Image.fromarray(np.round(image * 255).astype(np.uint8), "RGB").save(path)
    elif sixteen:
        Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(path)
    else:
        Image.fromarray(np.round(image * 255).astype(np.uint8), "L").save(path)
    return path


def _write_dx(image: np.ndarray, path: Path, *, uid_seed: str) -> Path:
    """A projection radiograph's tags around a synthetic frame: DX, chest, PA, MONOCHROME2, so only
    the pixels can tell. UIDs derive from `uid_seed`, so the same seed writes the same bytes."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[uid_seed, "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[uid_seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_seed, "series"])
    ds.PatientName, ds.PatientID, ds.AccessionNumber = "Gate^Synthetic", "GATE-SYNTHETIC", "GATE0001"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.round(image * 4095).astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _photos(build: _Build, limit: int | None) -> list[Case]:
    """Each photograph copied as shipped; a colour one also as a greyscale PNG, so that refusing
    colour alone cannot pass the photo target."""
    files, notes = gate_sources.photo_files()
    for text in notes:
        build.note("photo", text)
    folder = build.out_dir / "photo"
    folder.mkdir(exist_ok=True)
    items: list[tuple[str, Any]] = []
    for pf in files:
        stem = f"{pf.package}-{pf.path.stem}"
        copy = folder / f"{stem}{pf.path.suffix.lower()}"
        shutil.copyfile(pf.path, copy)
        pixels = decode_file(copy).pixels
        build.attributions[pf.relpath] = pf.attribution()
        items.append(("colour" if pixels.ndim == 3 else "greyscale", (copy, pf, "as shipped")))
        if pixels.ndim == 3:
            grey = folder / f"{stem}-grey.png"
            Image.open(copy).convert("L").save(grey)
            items.append(("greyscale_from_colour", (grey, pf, "converted to 8-bit grey PNG")))
    return [build.done(Case(path, "photo", kind, False, f"{pf.label} ({how})"))
            for kind, (path, pf, how) in _limited(items, limit)]


def _on_8bit_grid(pixels: np.ndarray) -> bool:
    return bool(np.allclose(pixels * 255, np.round(pixels * 255), atol=1e-3))


def _other_modality(build: _Build, limit: int | None) -> list[Case]:
    """Each acquired DICOM picture once (the same picture in another transfer syntax is left
    out), copied as DICOM and also written as PNG of what a viewer shows (grey in 16 bits)."""
    files, notes = gate_sources.dicom_files()
    for text in notes:
        build.note("other_modality", text)
    folder = build.out_dir / "other_modality"
    folder.mkdir(exist_ok=True)
    seen: dict[str, str] = {}
    items: list[tuple[str, Any]] = []
    for pf in files:
        try:
            with warnings.catch_warnings():  # pydicom's codec test files warn about their own quirks
                warnings.simplefilter("ignore")
                decoded = decode_file(pf.path)
        except DecodeError as exc:
            build.note("other_modality", f"{pf.relpath} left out: edgecxr does not decode it ({exc.code})")
            continue
        modality = decoded.meta.get("Modality", "").upper() or "unknown"
        digest = hashlib.sha256(np.round(decoded.pixels * 255).astype(np.uint8).tobytes()).hexdigest()
        why = ("smaller than a picture" if min(decoded.pixels.shape[:2]) < MIN_SIDE else
               f"{modality} is not an acquired image" if modality in NOT_ACQUIRED else
               f"the same picture as {seen[digest]}" if digest in seen else None)
        if why:
            build.note("other_modality", f"{pf.relpath} left out: {why}")
            continue
        seen[digest] = pf.relpath
        build.attributions[pf.relpath] = pf.attribution()
        stem = f"{pf.package}-{pf.path.stem}"
        copy = folder / f"{stem}.dcm"
        shutil.copyfile(pf.path, copy)
        png = _write_png(decoded.pixels, folder / f"{stem}.png", sixteen=not _on_8bit_grid(decoded.pixels))
        items += [(f"{modality.lower()}_dicom", (copy, pf, "as shipped")),
                  (f"{modality.lower()}_png", (png, pf, "decoded by edgecxr, written as PNG"))]
    mr = gate_sources.matplotlib_mr_slice()
    if mr is not None:  # raw little-endian uint16, 256x256, as matplotlib's image demo reads it
        raw = np.frombuffer(gzip.decompress(mr.path.read_bytes()), "<u2").reshape(256, 256).astype(float)
        png = _write_png(raw / max(raw.max(), 1.0), folder / "matplotlib-s1045.png", sixteen=True)
        build.attributions[mr.relpath] = mr.attribution()
        items.append(("mr_png", (png, mr, "raw MR slice written as 16-bit PNG")))
    return [build.done(Case(path, "other_modality", kind, False, f"{pf.label} ({how})"))
            for kind, (path, pf, how) in _limited(items, limit)]


def _transform(pixels: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    if name.startswith("rotated_"):
        return np.rot90(pixels, int(name.split("_")[1]) // 90)  # counter-clockwise
    if name == "inverted":  # MONOCHROME1 shown as MONOCHROME2, or a negative
        return 1.0 - pixels
    if name == "flipped_top_bottom":
        return pixels[::-1]
    if name == "crop":  # 25-45% of each side, anywhere in the image
        rows, cols = pixels.shape[:2]
        height, width = (max(1, int(side * rng.uniform(0.25, 0.45))) for side in (rows, cols))
        top, left = int(rng.integers(0, rows - height + 1)), int(rng.integers(0, cols - width + 1))
        return pixels[top:top + height, left:left + width]
    raise ValueError(f"unknown transform {name}")


def _wrong_orientation(build: _Build, chests: list[tuple[Path, str]], limit: int | None) -> list[Case]:
    """A seeded sample of the in-scope images, each shown wrongly in every way; 16-bit PNG where
    the decoded source has more than 8 bits (DICOM), else 8-bit (lossless for a JPEG source)."""
    if not chests:
        return []
    rng = np.random.default_rng([build.seed, 1])
    picked = sorted(rng.choice(len(chests), size=min(WRONG_ORIENTATION_SOURCES, len(chests)), replace=False))
    chosen = _limited([(t, (int(i), t)) for i in picked for t in TRANSFORMS], limit)
    folder = build.out_dir / "wrong_orientation"
    folder.mkdir(exist_ok=True)
    cases: list[Case] = []
    cache: dict[int, np.ndarray | None] = {}
    for kind, (index, transform) in sorted(chosen, key=lambda pair: pair[1]):
        source, label = chests[index]
        if index not in cache:
            cache.clear()  # sorted by source: one decoded image in memory at a time
            try:
                cache[index] = decode_file(source).pixels
            except DecodeError as exc:
                cache[index] = None
                build.note("wrong_orientation", f"{label}/{source.name} left out: not decoded ({exc.code})")
        pixels = cache[index]
        if pixels is None:
            continue
        image = np.ascontiguousarray(_transform(pixels, transform, np.random.default_rng([build.seed, index, 2])))
        path = _write_png(image, folder / f"{label}-{source.stem}-{transform}.png", sixteen=not _on_8bit_grid(pixels))
        cases.append(build.done(Case(path, "wrong_orientation", kind, False, f"{label}/{source.name}, {transform}")))
    return cases
