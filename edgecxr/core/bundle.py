"""The model bundle: a folder a device can take on its own.

`bundle.json` (schema `edgecxr.bundle/1`) names the classes, the preprocessing, the
input/output tensors, the decision rule and every artifact with its sha256. Loading a
bundle checks every hash, so a tampered or half-copied bundle is refused by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgecxr.core.data.fingerprint import sha256_file
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.preprocess import SPEC_FILENAME, PreprocessSpec

BUNDLE_SCHEMA = "edgecxr.bundle/1"
MANIFEST = "bundle.json"
REFERENCE_REPORT = "report.json"


@dataclass
class Artifact:
    """One engine file (or file set, for OpenVINO IR) in the bundle."""

    name: str  # unique id, e.g. "onnxruntime-int8"
    backend: str  # onnxruntime | openvino | tensorrt
    precision: str  # fp32 | fp16 | int8
    path: Path  # the file the backend loads
    record: dict

    @property
    def role(self) -> str:
        return self.record.get("role", "")

    @property
    def size_bytes(self) -> int:
        return sum(f["bytes"] for f in self.record["files"])


class Bundle:
    def __init__(self, folder: Path, manifest: dict):
        self.folder = folder
        self.manifest = manifest
        try:
            self.spec = PreprocessSpec.from_dict(manifest["preprocess"])
        except ValueError as exc:
            raise EdgecxrError(f"the bundle's preprocessing cannot be done by this edgecxr ({exc})",
                               path=folder / MANIFEST, fix="re-export the bundle with this edgecxr") from None
        self.class_names: list[str] = list(manifest["class_names"])
        self.positive_class: str = manifest["positive_class"]
        if self.positive_class not in self.class_names:
            raise EdgecxrError(f"positive_class {self.positive_class!r} is not one of the classes {self.class_names}",
                               path=folder / MANIFEST, fix="re-export the bundle")
        self.temperature = temperature_of(manifest, folder / MANIFEST)
        self.artifacts = [
            Artifact(a["name"], a["backend"], a["precision"], folder / a["files"][0]["path"], a)
            for a in manifest["artifacts"]
        ]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def checksum(self) -> str:
        return self.manifest.get("checksum", "")

    def reference_report_path(self) -> Path | None:
        path = self.folder / REFERENCE_REPORT
        return path if path.is_file() else None

    def find(self, backend: str | None = None, precision: str | None = None,
             role: str | None = None) -> list[Artifact]:
        return [a for a in self.artifacts
                if (backend is None or a.backend == backend)
                and (precision is None or a.precision == precision)
                and (role is None or a.role == role)]


PROBABILITY_CALIBRATION = "probability_calibration"


def temperature_of(manifest: dict, path: Path | str = MANIFEST) -> float:
    """The temperature every engine divides the logits by before softmax (its
    `probability_calibration`, fitted on validation at export); 1.0 for a bundle exported before
    calibration, whose probabilities are then the plain softmax they always were."""
    record = manifest.get(PROBABILITY_CALIBRATION)
    if not record:
        return 1.0
    try:
        value = float(record["temperature"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgecxrError(f"the bundle's {PROBABILITY_CALIBRATION} has no usable temperature ({exc})",
                           path=path, fix="re-export the bundle with `edgecxr export`") from None
    if not (0.0 < value < float("inf")):
        raise EdgecxrError(f"the bundle's temperature {value} is not a positive number", path=path,
                           fix="re-export the bundle with `edgecxr export`")
    return value


def manifest_checksum(manifest: dict) -> str:
    """sha256 of the manifest without its own checksum: identifies the bundle in results."""
    import hashlib

    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def covered_files(folder: Path, names: tuple[str, ...] = (SPEC_FILENAME, REFERENCE_REPORT)) -> list[dict]:
    """The bundle's files besides the engines (its preprocess.json, its reference report), each
    with its sha256, so that they too are verified on load."""
    return [file_entry(folder, name) for name in names if (folder / name).is_file()]


def file_entry(folder: Path, rel: str) -> dict:
    path = folder / rel
    return {"path": rel, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def put_artifact(bundle: Bundle, record: dict) -> None:
    """Add or replace one artifact record in bundle.json, re-checksummed and written atomically."""
    from edgecxr.core.fsutil import atomic_write_json

    manifest = dict(bundle.manifest)
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["name"] != record["name"]] + [record]
    manifest["checksum"] = manifest_checksum(manifest)
    atomic_write_json(bundle.folder / MANIFEST, manifest)


def load_bundle(folder: str | Path, *, verify: bool = True) -> Bundle:
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise EdgecxrError("no bundle.json: not an edgecxr model bundle", path=folder,
                           fix="give the folder written by `edgecxr export`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise EdgecxrError(f"bundle.json is not valid JSON ({exc})", path=manifest_path,
                           fix="copy the bundle again from its source") from exc
    schema = str(manifest.get("schema", ""))
    if not schema.startswith("edgecxr.bundle/"):
        raise EdgecxrError(f"unknown manifest schema {schema!r}", path=manifest_path,
                           fix="give a bundle written by `edgecxr export`")
    if schema != BUNDLE_SCHEMA:
        raise EdgecxrError(f"bundle schema {schema} is not supported by this edgecxr "
                           f"(reads {BUNDLE_SCHEMA})", path=manifest_path,
                           fix="upgrade edgecxr or re-export the bundle")
    if verify:
        verify_files(folder, manifest)
    return Bundle(folder, manifest)


def verify_files(folder: Path, manifest: dict) -> None:
    if manifest.get("checksum") and manifest_checksum(manifest) != manifest["checksum"]:
        raise EdgecxrError("bundle.json was edited after export (its checksum does not match)",
                           path=folder / MANIFEST, fix="re-export the bundle or restore bundle.json")
    covered = [(artifact["name"], entry) for artifact in manifest.get("artifacts", []) for entry in artifact["files"]]
    covered += [(entry["path"], entry) for entry in manifest.get("files", [])]
    for name, entry in covered:
        path = folder / entry["path"]
        if not path.is_file():
            raise EdgecxrError(f"a bundle file is missing (bundle incomplete: {name})",
                               path=path, fix="copy the whole bundle folder again")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise EdgecxrError(f"a bundle file does not match its sha256 in bundle.json "
                               f"(tampered or damaged: {name})", path=path,
                               fix="copy the bundle again from its source, or re-export it")
