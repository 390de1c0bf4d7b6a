"""What the audit trail and storage commitment cost when sending results: C-STORE rate with both on
against both off, same objects, same PACS, alternating rounds; prints the ratio.

    python deploy/bench/bench_pacs_security.py --to ORTHANC@127.0.0.1:4242 --commit-port 11113 [--count 192]

The PACS must accept C-STORE from our AE title (EDGECXR) and send storage commitment results to
EDGECXR at this host's --commit-port (Orthanc: "DicomModalities": {"edgecxr": {"AET": "EDGECXR",
"Host": "127.0.0.1", "Port": 11113}}). "On" is what a node with --audit-log and commitment does per
batch of 32: C-STORE, one audit message per batch outcome (headers read from each object), then an
N-ACTION and the wait for its N-EVENT-REPORT. "Off" is the C-STORE alone. With --outbox both go
through the outbox's own sender thread instead, as `watch --send-sr` runs it ("on": --send-commit and
--audit-log: an object counts once committed).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid

from edgecxr.core.bundle import load_bundle
from edgecxr.dicomnet.audit import AuditLog
from edgecxr.dicomnet.commit_outbox import CommitOptions
from edgecxr.dicomnet.commitment import CommitmentReceiver, commit
from edgecxr.dicomnet.destination import parse_destination
from edgecxr.dicomnet.finding import finding_from_record
from edgecxr.dicomnet.identity import stamp_dataset
from edgecxr.dicomnet.outbox import DestinationBox
from edgecxr.dicomnet.sender import BATCH, SENT, SenderThread, SendOptions, store
from edgecxr.dicomnet.sr import Algorithm, build_sr
from edgecxr.runtime.default_bundle import resolve_bundle
from edgecxr.samples import SAMPLE_DIR


def template_sr() -> bytes:
    manifest = load_bundle(resolve_bundle(None)).manifest
    record = {"status": "ok", "label": "PNEUMONIA", "probabilities": {"NORMAL": 0.2, "PNEUMONIA": 0.8},
              "bundle": manifest["name"], "bundle_checksum": manifest["checksum"], "backend": "openvino",
              "precision": "int8"}
    source = dcmread(sorted(SAMPLE_DIR.glob("*.dcm"))[0])
    sr = build_sr(source, finding_from_record(record, manifest), Algorithm.from_record(record))
    stamp_dataset(sr)
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def fresh_copies(template: bytes, folder: Path, count: int) -> list[Path]:
    """`count` copies of the SR under new SOP Instance UIDs (a PACS stores each as new)."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        ds = dcmread(io.BytesIO(template))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        paths.append(folder / f"{i:05d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def run(paths: list[Path], destination, options: SendOptions, secured: tuple | None) -> float:
    """Objects per second; `secured` = (audit, receiver) adds the audit hook and a commitment per batch."""
    start = time.perf_counter()
    for i in range(0, len(paths), BATCH):
        batch = paths[i:i + BATCH]
        outcomes = store(destination, batch, options)
        if any(o.result != SENT for o in outcomes):
            raise SystemExit(f"the PACS did not take every object: {outcomes[0].detail}")
        if secured is not None:
            audit, receiver = secured
            audit.send_outcomes(options.calling_ae_title)(destination, outcomes)
            headers = [dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
                       for p in batch]
            objects = [(str(h.SOPClassUID), str(h.SOPInstanceUID)) for h in headers]
            result = commit(destination, objects, receiver, calling_ae=options.calling_ae_title, wait_s=60)
            if result.error or result.failed:
                raise SystemExit(f"commitment failed: {result.error or next(iter(result.failed.values()))}")
    return len(paths) / (time.perf_counter() - start)


def run_outbox(paths: list[Path], destination, options: SendOptions, secured: tuple | None) -> float:
    """Objects per second through a fresh outbox and its SenderThread, until every object is in sent.jsonl
    (with `secured`: committed, and audited)."""
    box = DestinationBox(paths[0].parent / "outbox", destination)
    for path in paths:
        box.add(str(dcmread(path, stop_before_pixels=True).SOPInstanceUID), path.read_bytes())
    if secured is not None:
        audit, receiver = secured
        options = SendOptions(calling_ae_title=options.calling_ae_title, commit=CommitOptions(receiver, wait_s=60),
                              audit=audit.send_outcomes(options.calling_ae_title))
    sender = SenderThread(box, options, print)
    start = time.perf_counter()
    sender.start()
    deadline = time.monotonic() + 600
    while len(box.sent) < len(paths) and time.monotonic() < deadline and not any(box.failed_dir.glob("*.json")):
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    sender.stop.set()
    sender.wake.set()
    sender.join(30)
    if len(box.sent) != len(paths):
        raise SystemExit(f"the outbox did not deliver every object: {box.folder}")
    return len(paths) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", required=True, help="AET@HOST:PORT of the PACS")
    parser.add_argument("--commit-port", type=int, required=True, help="where the PACS sends commitment results")
    parser.add_argument("--commit-host", default="127.0.0.1", help="address to take commitment results on")
    parser.add_argument("--count", type=int, default=192, help="objects per round (a multiple of 32 is fairest)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--outbox", action="store_true", help="send through the outbox's sender thread")
    args = parser.parse_args()
    destination, options = parse_destination(args.to), SendOptions()
    template = template_sr()
    receiver = CommitmentReceiver(options.calling_ae_title, args.commit_host, args.commit_port)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            audit = AuditLog(Path(tmp) / "audit.log", "EDGECXR@bench")
            for r in range(args.rounds):
                for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):  # alternate, so drift hits both
                    paths = fresh_copies(template, Path(tmp) / f"{mode}-{r}", args.count)
                    how = run_outbox if args.outbox else run
                    rates[mode].append(how(paths, destination, options, (audit, receiver) if mode == "on" else None))
                    print(f"round {r + 1} {mode:>3}: {rates[mode][-1]:.1f} objects/s", flush=True)
            audit.close()
    finally:
        receiver.stop()
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(f"median over {args.rounds} rounds of {args.count} SRs to {args.to}: off {off:.1f} objects/s, "
          f"audit + commitment on {on:.1f} objects/s; ratio on/off {on / off:.2f}")


if __name__ == "__main__":
    main()
