"""Soak benchmark: a real `edgecxr watch --send-sr` fed for MINUTES with everything a hospital does.

    python deploy/bench/soak.py --minutes 60 --out /tmp/soak-run

A trickle of distinct images (the bundled samples, each copy made distinct: DICOMs with new
Study/Series/SOP Instance UIDs, JPEGs with a comment segment), bursts of 30 files, the PACS (a
real Orthanc on loopback) stopped for a while and restarted on the same port and storage,
SIGKILLs of the watcher (restarted at once, as systemd would), blank frames (out of scope) and
resends of instances already sent. Every 30 s it samples the watcher's RSS, open files and
threads, and the backlog and outbox from status.json. After a drain with the PACS up it checks
that every input has exactly one result line, that every classified DICOM has exactly one SR in
Orthanc, that resends are "duplicate" lines with no second SR, and that out-of-scope images got
none. Writes OUT/soak.json and prints a summary; exit 1 when a check fails.

A benchmark, not a test: it runs as long as asked. Needs Debian's Orthanc (`apt install orthanc`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak_check import check
from soak_peers import UNIT_ENVIRONMENT, Orthanc, Watcher, proc_sample

SAMPLES = Path(__file__).resolve().parents[2] / "edgecxr" / "samples" / "chest-xrays"
SAMPLE_EVERY_S = 30.0
DRAIN_LIMIT_S = 600.0


class Stop(Exception):
    """SIGINT/SIGTERM: leave the loop and clean up."""


def _on_signal(signum, _frame):
    raise Stop(signal.Signals(signum).name)


class Feeder:
    """Writes distinct copies of the samples into INBOX/study-N/series-1/, atomically (temp name + rename)."""

    def __init__(self, inbox: Path, rng: random.Random):
        import pydicom

        self.pydicom = pydicom
        self.inbox, self.rng, self.n = inbox, rng, 0
        self.dicoms = sorted(SAMPLES.glob("*.dcm"))
        self.jpegs = sorted(SAMPLES.glob("*.jpeg"))
        if not self.dicoms or not self.jpegs:
            raise SystemExit(f"no sample DICOMs or JPEGs in {SAMPLES}: run this from a clone of edgecxr")
        self.inputs: dict[str, dict] = {}  # path relative to the inbox -> what we expect
        self.sent_dicoms: list[tuple[str, bytes]] = []  # (path, bytes) of DICOMs written, for resends

    def _write(self, data: bytes, suffix: str, kind: str, study: str | None = None, source: str = "") -> str:
        self.n += 1
        rel = f"study-{self.n:06d}/series-1/img-{self.n:06d}{suffix}"
        target = self.inbox / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
        self.inputs[rel] = {"kind": kind, "study": study, "source": source, "written_at": time.time()}
        return rel

    def _dicom(self, source: Path, *, blank: bool = False) -> tuple[bytes, str]:
        from io import BytesIO

        from pydicom.uid import generate_uid

        ds = self.pydicom.dcmread(source)
        study = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if blank:  # a uniform frame: nothing to read, the gate refuses it
            ds.PixelData = bytes(len(ds.PixelData))
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue(), study

    def image(self) -> str:
        if self.rng.random() < 0.3:
            source = self.rng.choice(self.dicoms)
            data, study = self._dicom(source)
            rel = self._write(data, ".dcm", "dicom", study, source.name)
            self.sent_dicoms.append((rel, data))
            return rel
        source = self.rng.choice(self.jpegs)
        data = source.read_bytes()
        comment = f"edgecxr soak copy {self.n} {self.rng.random()}".encode()
        # a COM segment right after SOI: new bytes (new sha256), the same pixels
        data = data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]
        return self._write(data, ".jpeg", "jpeg", source=source.name)

    def blank(self) -> str:
        explicit_le = "1.2.840.10008.1.2.1"  # uncompressed, so the pixels can be zeroed in place
        uncompressed = [p for p in self.dicoms if self.pydicom.dcmread(p).file_meta.TransferSyntaxUID == explicit_le]
        data, study = self._dicom(uncompressed[0], blank=True)
        return self._write(data, ".dcm", "blank", study, uncompressed[0].name)

    def resend(self) -> str | None:
        """A DICOM already written (and by now classified, sent and maybe archived) written again."""
        if not self.sent_dicoms:
            return None
        rel, data = self.sent_dicoms[max(0, len(self.sent_dicoms) - 5)]  # one old enough to be sent
        return self._write(data, ".dcm", "resend", self.inputs[rel]["study"], rel)


def plan(minutes: float, rng: random.Random, kill_window: float = 0.6) -> list[tuple[float, str]]:
    """Timed events (seconds from start): bursts, PACS outages, SIGKILLs (within the first `kill_window`
    share of the run), blanks, resends."""
    total = minutes * 60
    events: list[tuple[float, str]] = []
    n_bursts = max(1, int(minutes // 5))
    for i in range(n_bursts):
        events.append(((i + 0.6) * total / n_bursts, "burst"))
    n_outages = max(1, int(minutes // 20))
    for i in range(n_outages):
        events.append(((i + 0.3) * total / n_outages, "pacs_down"))
    # the kills fall in the first KILL_WINDOW share so that the last watcher process runs long enough to show a trend;
    # every other one lands 3 s into a burst, with a micro-batch in flight
    n_kills = max(1, int(minutes // 15))
    bursts = [t for t, name in events if name == "burst"]
    outages = [t for t, name in events if name == "pacs_down"]
    for i in range(n_kills):
        at = (i + 0.5 + rng.uniform(-0.1, 0.1)) * kill_window * total / n_kills
        if i % 2 == 1:
            at = min(bursts, key=lambda b: abs(b - at)) + 3.0
        elif i % 4 == 2:  # 20 s into an outage, with SRs waiting in the outbox
            at = min(outages, key=lambda o: abs(o - at)) + 20.0
        events.append((at, "kill"))
    for i in range(max(1, int(minutes // 20))):
        events.append(((i + 0.8) * total / max(1, int(minutes // 20)), "blank"))
        events.append(((i + 0.7) * total / max(1, int(minutes // 20)), "resend"))
    return sorted(events)


def run(args) -> int:
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    inbox, results = out / "inbox", out / "results"
    for folder in (inbox, results):
        folder.mkdir(parents=True)
    rng = random.Random(args.seed)
    outage_s = min(60.0, args.minutes * 60 / 10)
    pacs = Orthanc(out / "pacs")
    watcher = Watcher(inbox, results, out / "archive", pacs.destination, out / "watcher.log")
    feeder = Feeder(inbox, rng)
    report: dict = {"minutes": args.minutes, "seed": args.seed, "kill_window": args.kill_window,
                    "environment": UNIT_ENVIRONMENT, "outage_s": outage_s, "samples": [],
                    "events": [], "watcher_args": watcher.args}
    samples: list[dict] = report["samples"]

    def event(name: str, **extra) -> None:
        report["events"].append({"t": round(time.monotonic() - t0, 1), "event": name, **extra})
        print(f"[{time.monotonic() - t0:7.1f} s] {name} {extra or ''}", flush=True)

    def sample() -> None:
        row = {"t": round(time.monotonic() - t0, 1), **proc_sample(watcher.pid), **watcher.status()}
        samples.append(row)
        print(f"[{row['t']:7.1f} s] rss={row.get('rss_mb')} MB fds={row.get('fds')} threads={row.get('threads')} "
              f"backlog={row.get('backlog')} pending={row.get('pending')} inputs={len(feeder.inputs)}", flush=True)

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    try:
        pacs.start()
        watcher.start()
        time.sleep(5)
        report["engine"] = watcher.info()
        sample()
        events = plan(args.minutes, rng, args.kill_window)
        end = t0 + args.minutes * 60
        next_image, next_sample = time.monotonic(), time.monotonic() + SAMPLE_EVERY_S
        pacs_back_at: float | None = None
        while time.monotonic() < end:
            now = time.monotonic()
            if pacs_back_at is not None and now >= pacs_back_at:
                pacs.start()
                pacs_back_at = None
                event("pacs_up")
            while events and now - t0 >= events[0][0]:
                _, name = events.pop(0)
                if name == "burst":
                    for _ in range(30):
                        feeder.image()
                    event("burst", files=30)
                elif name == "pacs_down" and pacs_back_at is None:
                    pacs.stop()
                    pacs_back_at = now + outage_s
                    event("pacs_down", seconds=outage_s)
                elif name == "kill":
                    event("kill", pid=watcher.pid)
                    watcher.kill_and_restart()
                    event("restarted", pid=watcher.pid)
                elif name == "blank":
                    event("blank", path=feeder.blank())
                elif name == "resend":
                    event("resend", path=feeder.resend())
            if now >= next_image:
                feeder.image()
                next_image = now + rng.uniform(3.0, 9.0)
            if now >= next_sample:
                sample()
                next_sample = now + SAMPLE_EVERY_S
            watcher.restart_if_dead(event)
            time.sleep(0.5)
        if pacs_back_at is not None:
            pacs.start()
            event("pacs_up")
        event("feeding_stopped", inputs=len(feeder.inputs))
        report["drain_s"] = watcher.drain(feeder.inputs, DRAIN_LIMIT_S)
        event("drained", seconds=report["drain_s"])
        sample()
        watcher.stop()
        report["checks"] = check(results, pacs, feeder.inputs)
    except Stop as stop:
        report["interrupted"] = str(stop)
        print(f"interrupted ({stop}): cleaning up", flush=True)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        watcher.stop()
        pacs.stop()
    report["inputs"] = {kind: sum(1 for i in feeder.inputs.values() if i["kind"] == kind)
                        for kind in ("dicom", "jpeg", "blank", "resend")}
    report["duration_s"] = round(time.monotonic() - t0, 1)
    report["watcher_starts"] = watcher.starts
    report["per_process"] = per_process([s for s in report["samples"] if s.get("rss_mb") is not None])
    (out / "soak.json").write_text(json.dumps(report, indent=1))
    return summarise(report)


def summarise(report: dict) -> int:
    samples = [s for s in report["samples"] if s.get("rss_mb") is not None]
    print("\n== soak summary ==")
    print(f"duration {report['duration_s'] / 60:.1f} min, inputs {report['inputs']}, "
          f"watcher starts {report['watcher_starts']}")
    events = [e["event"] for e in report["events"]]
    print(f"PACS outages {events.count('pacs_down')}, SIGKILLs {events.count('kill')}, bursts {events.count('burst')}")
    for key in ("rss_mb", "fds", "threads"):
        if samples:
            values = [s[key] for s in samples]
            print(f"{key}: start {values[0]} -> end {values[-1]}, max {max(values)}, min {min(values)}")
    for row in per_process(samples):
        print(f"watcher pid {row['pid']}: {row['samples']} samples over {row['span_s']} s, rss {row['rss_mb']}, "
              f"fds {row['fds']}, threads {row['threads']} (first -> last, max)")
    checks = report.get("checks")
    if not checks:
        print("no checks (interrupted)")
        return 1
    for name, value in checks.items():
        print(f"{name}: {value}")
    return 0 if checks["passed"] else 1


def per_process(samples: list[dict]) -> list[dict]:
    """First, last and max of each sampled value per watcher process (a SIGKILL starts a new one)."""
    rows = []
    for pid in dict.fromkeys(s["pid"] for s in samples):
        mine = [s for s in samples if s["pid"] == pid]
        row = {"pid": pid, "samples": len(mine), "span_s": round(mine[-1]["t"] - mine[0]["t"], 1)}
        for key in ("rss_mb", "fds", "threads"):
            row[key] = [mine[0][key], mine[-1][key], max(s[key] for s in mine)]
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long to feed the watcher")
    parser.add_argument("--out", default="/tmp/edgecxr-soak", help="work folder (emptied first)")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--kill-window", type=float, default=0.6,
                        help="the SIGKILLs fall within this share of the run, so the last process lives the rest")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
