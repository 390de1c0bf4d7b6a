"""Refusing `--calib-data` that holds the source run's test images.

A calibration folder feeds INT8 calibration, the choice between calibration candidates, the
gate's threshold and, when the run's validation images are not here, the temperature and the
decision threshold. Chosen on test images, any of these makes the run's test figures (and the
bundle's) optimistic, so export refuses such a folder outright.

The run records its test split as `data.root`/test and its fingerprint (`data.fingerprints.test`,
over every image's relative path and sha256). When that folder is here, the calibration images
are compared with it by content (a copy or a link of a test image is still a test image). When
it is not, they are compared by content with the sha256 of every test image listed in the run's
test report (`report.json`, when its fingerprint is the recorded one), so a partial copy is
still caught; without that report, a folder whose fingerprint is the recorded one is the test
split itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from edgecxr.core.data.fingerprint import dataset_fingerprint, sha256_file
from edgecxr.core.data.folders import Sample, samples_fingerprint, scan_split
from edgecxr.core.data.roots import resolve_recorded
from edgecxr.core.errors import DataError

CAUSE = ("these images are the test split: a threshold or temperature chosen on them would make the test "
         "figures optimistic")


def refuse_test_images(run: dict | None, calib_data: Path | None, report_path: Path | None = None) -> None:
    """Raise (exit 2) when `calib_data` holds images of the run's recorded test split;
    `report_path`: the run's test report, whose rows name each test image's sha256."""
    if calib_data is None or run is None:
        return  # without run.json there is no recorded test split to compare with
    data = run.get("data") or {}
    recorded = (data.get("fingerprints") or {}).get("test")
    if not recorded:
        return
    calib = scan_split(calib_data, "calibration").samples
    test_dir = resolve_recorded(data["root"]) / "test" if data.get("root") else None
    if test_dir is not None and test_dir.is_dir():
        shared = shared_by_content(calib, scan_split(test_dir, "test").samples)
        found = f"{len(shared)} of its {len(calib)} images are images of the run's test split ({test_dir})"
    elif (listed := _reported_test_hashes(report_path, recorded)) is not None:
        shared = [s for s in calib if sha256_file(s.path) in listed]
        found = (f"{len(shared)} of its {len(calib)} images are images of the run's test split (by content: "
                 f"the sha256 of each test image in {report_path})")
    else:
        shared = _whole_test_split(calib, recorded, (data.get("counts") or {}).get("test") or {})
        found = "its images are the run's test split (their fingerprint is run.json's data.fingerprints.test)"
    if shared:
        raise DataError(f"--calib-data holds test images: {found}, e.g. {shared[0].rel}; {CAUSE} (and so "
                        "would the INT8 calibration and the gate's threshold)", path=calib_data,
                        fix="point --calib-data at training images (the run's train/ folder), never at its test/")


def shared_by_content(samples: Sequence[Sample], test: Sequence[Sample]) -> list[Sample]:
    """The samples whose bytes are those of some test image. Only files whose size some file on
    the other side has are hashed: on real folders that is a handful, not every image."""
    sizes = {s.path.stat().st_size for s in samples} & {t.path.stat().st_size for t in test}
    test_hashes = {sha256_file(t.path) for t in test if t.path.stat().st_size in sizes}
    return [s for s in samples if s.path.stat().st_size in sizes and sha256_file(s.path) in test_hashes]


def _whole_test_split(calib: list[Sample], fingerprint: str, counts: dict) -> list[Sample]:
    """All of `calib` when it is the recorded test split, else none. Hashed only when its size is
    the recorded test count, so a folder of training images costs a directory listing."""
    if len(calib) != sum(counts.values()):
        return []
    for sample in calib:
        sample.sha256 = sha256_file(sample.path)
    return calib if samples_fingerprint(calib) == fingerprint else []


def _reported_test_hashes(report_path: Path | None, fingerprint: str) -> set[str] | None:
    """The sha256 of every image of the run's test report, when it scored the recorded test split."""
    if report_path is None or not report_path.is_file():
        return None
    try:
        pairs = [(row["path"], row["sha256"]) for row in json.loads(report_path.read_text())["rows"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable report: the fingerprint check below still runs
    # the rows themselves must make up the recorded test split: an edited or partial list proves nothing
    if not pairs or not all(isinstance(h, str) and h for _, h in pairs) or dataset_fingerprint(pairs) != fingerprint:
        return None
    return {h for _, h in pairs}
