"""The soak benchmark's peers: a real Orthanc that can be stopped and restarted on the same port and
storage, and a real `edgecxr watch --send-sr` that can be SIGKILLed and restarted (as systemd would).

Copied in spirit from tests/orthanc.py rather than imported, so the benchmark runs without the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

AET = "ORTHANC"
_UNIT = Path(__file__).resolve().parents[2] / "edgecxr" / "service/templates" / "edgecxr-watch.service"
# the Environment= lines of the unit `edgecxr service install` writes, so the soak runs the watcher as systemd does
UNIT_ENVIRONMENT = dict(line.removeprefix("Environment=").split("=", 1)
                        for line in _UNIT.read_text().splitlines() if line.startswith("Environment="))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_sample(pid: int | None) -> dict:
    """RSS (MB), open files and threads of one process, from /proc."""
    if pid is None:
        return {"rss_mb": None, "fds": None, "threads": None}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return {"pid": pid, "rss_mb": round(rss_kb / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd")),
                "threads": len(os.listdir(f"/proc/{pid}/task"))}
    except (OSError, StopIteration):  # it died between the two reads
        return {"pid": pid, "rss_mb": None, "fds": None, "threads": None}


def _stop(process: subprocess.Popen | None, grace: float) -> int | None:
    if process is None or process.poll() is not None:
        return None if process is None else process.returncode
    process.terminate()
    try:
        return process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)


class Orthanc:
    """Debian's Orthanc on loopback, its ports and storage kept across restarts (a PACS rebooted)."""

    def __init__(self, folder: Path, allowed_aets=("EDGECXR",)):
        binary = shutil.which("Orthanc")
        if binary is None:
            raise SystemExit("Orthanc is not installed: `apt install orthanc` (the soak sends its SRs to it)")
        self.binary, self.folder = binary, folder
        self.dicom_port, self.http_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": "edgecxr-soak-pacs", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": AET,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": False, "DicomCheckModalityHost": True, "Plugins": [], "SaveJobs": False,
            "DicomModalities": {aet.lower(): [aet, "127.0.0.1", 104] for aet in allowed_aets},
            "StableAge": 1, "OverwriteInstances": False,
        }))

    @property
    def destination(self) -> str:
        return f"{AET}@127.0.0.1:{self.dicom_port}"

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 (Orthanc writes to it until stopped)
        self.process = subprocess.Popen([self.binary, str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        raise TimeoutError("Orthanc did not answer within 60 s")

    def stop(self) -> None:
        _stop(self.process, 20)
        self.process = None

    def get(self, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def edgecxr_command() -> list[str]:
    """The `edgecxr` of this interpreter's environment (its script, else `python -m edgecxr`)."""
    script = Path(sys.executable).parent / "edgecxr"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgecxr"]


class Watcher:
    """`edgecxr watch INBOX --send-sr PACS`, restarted whenever it dies."""

    def __init__(self, inbox: Path, out: Path, archive: Path, destination: str, log: Path):
        self.args = [*edgecxr_command(), "watch", str(inbox), "--out", str(out), "--backend", "onnxruntime",
                     "--archive", str(archive), "--send-sr", destination, "--send-retry-max", "60", "--quiet"]
        self.out, self.log = out, log
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 (the watcher writes to it until it ends)
        env = {**os.environ, **UNIT_ENVIRONMENT}  # as the systemd unit runs it
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=env)
        log.close()
        self.starts += 1

    def kill_and_restart(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.start()

    def restart_if_dead(self, event) -> None:
        if self.process is not None and self.process.poll() is not None:
            event("watcher_exited", rc=self.process.returncode)  # not planned: reported, then restarted
            self.start()

    def stop(self) -> None:
        rc = _stop(self.process, 30)
        if rc not in (None, 0, -signal.SIGTERM):
            print(f"watcher ended with exit status {rc}", flush=True)
        self.process = None

    def status(self) -> dict:
        try:
            status = json.loads((self.out / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        pending = failed = 0
        for folder in (self.out / "outbox").glob("*/pending"):
            pending += sum(1 for p in folder.glob("*.dcm") if not p.name.startswith("."))
            failed += sum(1 for _ in (folder.parent / "failed").glob("*.dcm"))
        queued = sum(1 for p in (self.out / "outbox" / "queue").glob("*.json") if not p.name.startswith("."))
        return {"backlog": status.get("backlog"), "state": status.get("state"), "queued": queued,
                "pending": pending, "failed": failed}

    def info(self) -> dict:
        try:
            status = json.loads((self.out / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return {k: status.get(k) for k in ("bundle", "backend", "precision", "artifact")}

    def result_paths(self) -> set[str]:
        paths: set[str] = set()
        try:
            with open(self.out / "results.jsonl", encoding="utf-8") as f:
                for line in f:
                    try:
                        paths.add(json.loads(line)["path"])
                    except (ValueError, KeyError):
                        continue
        except OSError:
            pass
        return paths

    def drain(self, inputs: dict, limit: float) -> float:
        """Wait (at most LIMIT s) until every input has a line and the outbox is empty."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            state = self.status()
            if state["pending"] == 0 and state["queued"] == 0 and set(inputs) <= self.result_paths():
                break
            if self.process is not None and self.process.poll() is not None:
                self.start()
            time.sleep(5)
        return round(time.monotonic() - start, 1)
