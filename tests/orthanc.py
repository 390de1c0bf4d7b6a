"""A real PACS for the tests: Debian's Orthanc on free loopback ports, with its own storage in tmp_path.

Orthanc 1.10 cannot bind its DICOM port to one address, so it is locked down instead: the HTTP
API answers only to localhost (RemoteAccessAllowed false), the called AE title is checked,
and C-STORE is accepted only from the modalities declared here, at 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.tools import require_tool, wait_for

AET = "ORTHANC"
DICOMWEB_PLUGINS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    def __init__(self, folder: Path, *, dicom_port: int | None = None, allowed_aets=("EDGECXR",),
                 dicomweb: bool = False):
        self.binary = require_tool("Orthanc")
        self.folder = folder
        self.dicom_port = dicom_port or free_port()
        self.http_port = free_port()
        self.process: subprocess.Popen | None = None
        self.config = folder / "orthanc.json"
        folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps({
            "Name": "edgecxr-test-pacs", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": AET,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": False, "DicomCheckModalityHost": True, "Plugins": [], "SaveJobs": False,
            "DicomModalities": {aet.lower(): [aet, "127.0.0.1", 104] for aet in allowed_aets},
            "StableAge": 1, "OverwriteInstances": False,
        }))
        if dicomweb:  # the DICOMweb plugin (Debian package orthanc-dicomweb) at /dicom-web/
            plugin = next((p for p in DICOMWEB_PLUGINS if Path(p).is_file()), None) or require_tool(
                "orthanc-dicomweb-plugin")  # never on PATH: skips (fails under CI) with the install hint
            config = json.loads(self.config.read_text())
            config.update(Plugins=[plugin], DicomWeb={"Enable": True, "Root": "/dicom-web/"})
            self.config.write_text(json.dumps(config))

    @property
    def destination(self) -> str:
        return f"{AET}@127.0.0.1:{self.dicom_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def start(self, timeout: float = 60.0) -> Orthanc:
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 (Orthanc writes to it until stopped)
        self.process = subprocess.Popen([self.binary, str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.get("/system")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        raise TimeoutError("Orthanc did not answer within the deadline")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def discard(self) -> None:
        """Stop for good at the end of a test: SIGKILL, since its storage is thrown away with tmp_path.
        A graceful stop() costs 3.4 s on the 2-core EPYC (Orthanc 1.10 waits 2 s for its HTTP server
        and 1 s for its DICOM server to wind down), about 100 s over the suite; stop() stays for a PACS
        a test restarts on the same storage or shuts down as an outage it observes."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def instances(self) -> list[dict]:
        """Every stored instance's tags (simplified: keyword -> value)."""
        return [self.get(f"/instances/{i}/simplified-tags") for i in self.get("/instances")]

    def file(self, sop_instance_uid: str) -> bytes:
        """The stored DICOM file of one instance, as the PACS will hand it to a viewer."""
        for orthanc_id in self.get("/instances"):
            if self.get(f"/instances/{orthanc_id}/simplified-tags").get("SOPInstanceUID") == sop_instance_uid:
                url = f"http://127.0.0.1:{self.http_port}/instances/{orthanc_id}/file"
                with urllib.request.urlopen(url, timeout=10) as response:
                    return response.read()
        raise KeyError(sop_instance_uid)

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition"):
        value = wait_for(predicate, timeout, poll=0.2)
        if not value:
            raise TimeoutError(f"Orthanc: {what} not reached within {timeout} s")
        return value
