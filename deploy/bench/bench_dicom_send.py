"""How fast results leave as DICOM SR: build rate and C-STORE rate to a PACS you started.

    python deploy/bench/bench_dicom_send.py --to ORTHANC@127.0.0.1:4242 [--count 300] [--sc]

Copies the bundled sample DICOMs under fresh SOP Instance UIDs, builds one SR (and with --sc
one Secondary Capture) per copy the way `watch --send-sr` does, then lets one sender thread
deliver them from a fresh outbox (32 objects per association). Prints objects per second
for each step; see docs/pacs.md for the figures.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid

from edgecxr.core.bundle import load_bundle
from edgecxr.core.data.dicom import decode_dicom
from edgecxr.dicomnet.destination import parse_destination
from edgecxr.dicomnet.finding import finding_from_record
from edgecxr.dicomnet.outbox import Outbox
from edgecxr.dicomnet.sc import build_sc
from edgecxr.dicomnet.sender import SenderThread, SendOptions
from edgecxr.dicomnet.sink import _encode
from edgecxr.dicomnet.sr import Algorithm, build_sr
from edgecxr.runtime.default_bundle import resolve_bundle
from edgecxr.samples import SAMPLE_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", required=True, help="AET@HOST:PORT of a PACS that accepts our AE title")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--sc", action="store_true", help="also build and send a Secondary Capture per result")
    parser.add_argument("--ae-title", default="EDGECXR")
    args = parser.parse_args()
    manifest = load_bundle(resolve_bundle(None)).manifest
    record = {"status": "ok", "label": "PNEUMONIA", "probabilities": {"NORMAL": 0.2, "PNEUMONIA": 0.8},
              "bundle": manifest["name"], "bundle_checksum": manifest["checksum"], "backend": "openvino",
              "precision": "int8"}
    finding, algorithm = finding_from_record(record, manifest), Algorithm.from_record(record)
    samples = sorted(SAMPLE_DIR.glob("*.dcm"))
    built, t0 = [], time.perf_counter()
    for i in range(args.count):
        path = samples[i % len(samples)]
        source = dcmread(path)
        source.SOPInstanceUID = generate_uid()
        built.append(_encode(build_sr(source, finding, algorithm)))
        if args.sc:
            pixels = decode_dicom(path.read_bytes(), str(path), max_pixels=10**9).pixels
            built.append(_encode(build_sc(source, pixels, finding, algorithm)))
    build_s = time.perf_counter() - t0
    print(f"built {len(built)} objects from {args.count} results in {build_s:.1f} s: "
          f"{args.count / build_s:.1f} results/s (samples: {', '.join(p.name for p in samples)})")
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp), [parse_destination(args.to)])
        box = outbox.boxes[0]
        for data in built:
            box.add(dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID, data)
        sender = SenderThread(box, SendOptions(calling_ae_title=args.ae_title), print)
        t0 = time.perf_counter()
        sender.start()
        while box.pending() and time.perf_counter() - t0 < 600 and not sender.failing:
            time.sleep(0.05)
        send_s = time.perf_counter() - t0
        sender.stop.set()
        sender.wake.set()
        sender.join(10)
        sent = len(box.sent)
    print(f"sent {sent} of {len(built)} objects to {args.to} in {send_s:.1f} s: {sent / send_s:.1f} objects/s")


if __name__ == "__main__":
    main()
