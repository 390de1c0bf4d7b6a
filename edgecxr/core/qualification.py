"""Which engines were verified on this hardware class: parity-check writes the verdicts,
engine selection (watch, classify, bench) reads them. Torch-free; imports no engine.

The same INT8 graph can answer differently on different CPUs (AVX2 without VNNI saturates
16-bit sums that VNNI does not), so a verdict only holds for the hardware class it was
measured on: the machine, the INT8-relevant ISA features the backend's kernels will use (what
CPUID reports, less what an ISA cap the backend honours forbids: ONEDNN_MAX_CPU_ISA=AVX2
makes OpenVINO on a VNNI CPU an AVX2-class engine, while ONNX Runtime ignores it), that cap,
and the backend's version. The CPU model is recorded for people but not matched: two CPUs
with the same features run the same kernels.

Records live in a box-local folder (a shipped bundle is read-only on a device):
$EDGECXR_QUALIFICATION_DIR, else $XDG_STATE_HOME/edgecxr/qualification (default
~/.local/state/edgecxr/qualification); `service install` sets it to /etc/edgecxr/qualification.
A bundle may also ship a `qualification.json` with the verdicts of its maker's machines;
a record made on this box wins over a shipped one.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgecxr.core.bundle import Artifact, Bundle
from edgecxr.core.fsutil import atomic_write_json
from edgecxr.core.provenance import utc_now

SCHEMA = "edgecxr.qualification/1"
ENV = "EDGECXR_QUALIFICATION_DIR"
SHIPPED = "qualification.json"


def default_dir() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "edgecxr" / "qualification"


def hardware_class(backend: str) -> dict:
    """What a verdict for an engine of this backend depends on, here and now."""
    from edgecxr.core.sysinfo import backend_features, backends, cpu_info, isa_caps

    cpu = cpu_info()
    found = {
        "machine": cpu["machine"],
        "isa": sorted(f for f, on in backend_features(backend, cpu["features"]).items() if on),
        "isa_caps": isa_caps(backend),
        "backend": backend, "backend_version": backends().get(backend),
    }
    if backend == "tensorrt":
        from edgecxr.core.sysinfo import gpus

        found["gpu"] = [g.get("name") for g in gpus()]
    return {**found, "cpu_model": cpu["model"]}


def same_class(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "cpu_model"} == {k: v for k, v in b.items() if k != "cpu_model"}


def describe(hw: dict) -> str:
    caps = "".join(f", {k}={v}" for k, v in hw.get("isa_caps", {}).items())
    isa = [f for f in hw["isa"] if f != "amx_bf16"] or ["no AVX2"]
    return f"{hw['machine']} {'+'.join(isa)}{caps}, {hw['backend']} {hw['backend_version']}"


def record_path(bundle: Bundle, folder: Path | None = None) -> Path:
    return (folder or default_dir()) / f"{bundle.name}.{bundle.checksum[:16]}.json"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if data.get("schema") == SCHEMA else {}


def record(bundle: Bundle, engines: list[dict], data: dict, folder: Path | None = None) -> Path:
    """Merge parity-check's per-engine verdicts into this box's record; one entry per hardware class.

    Read, merge and write happen under an exclusive lock beside the record, so two
    parity-checks finishing together (e.g. one per backend) both keep their verdicts.
    """
    path = record_path(bundle, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path):
        current = _read(path) or {"schema": SCHEMA, "bundle": {"name": bundle.name, "checksum": bundle.checksum},
                                   "engines": {}}
        for e in engines:
            hw = hardware_class(e["backend"])
            entry = {"verdict": e["verdict"], "agreement": e["agreement"], "flips": len(e["flipped"]),
                     "failures": e["failures"], "images": data["n_images"], "data_fingerprint": data["fingerprint"],
                     "created": utc_now(), "hardware": hw}
            kept = [x for x in current["engines"].get(e["artifact"], []) if not same_class(x["hardware"], hw)]
            current["engines"][e["artifact"]] = [*kept, entry]
        current["updated"] = utc_now()
        atomic_write_json(path, current)
    return path


@contextmanager
def _exclusive(path: Path):
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class Verdict:
    status: str  # "PASS", "FAIL" or "none"
    detail: str  # one line for logs: what was measured where, or why nothing counts


def verdict_here(bundle: Bundle, artifact: Artifact, folder: Path | None = None) -> Verdict:
    """This artifact's qualification on this hardware class: the box's record first, then the bundle's."""
    hw = hardware_class(artifact.backend)
    sources = [(record_path(bundle, folder), "this box"), (bundle.folder / SHIPPED, "the bundle")]
    for path, where in sources:
        data = _read(path)
        if data.get("bundle", {}).get("checksum") not in (None, bundle.checksum):
            continue
        for entry in data.get("engines", {}).get(artifact.name, []):
            if same_class(entry["hardware"], hw):
                flips = f"agreement {100 * entry['agreement']:.1f}%, {entry['flips']} flips on {entry['images']} images"
                why = f"; {entry['failures'][0]}" if entry["failures"] else ""
                return Verdict(entry["verdict"], f"{entry['verdict']} on {describe(hw)} ({flips}{why}; "
                                                 f"recorded by {where} {entry['created'][:10]})")
    return Verdict("none", f"never checked on {describe(hw)}")
