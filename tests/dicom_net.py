"""Helpers for the DICOM network tests: a listener on a free loopback port, a pynetdicom scanner, TLS certificates.

Everything binds 127.0.0.1; the listener runs in-process (fast) unless a test needs to kill it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.tools import require_tool

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO / "edgecxr" / "samples" / "chest-xrays").glob("*.dcm"))
DX = "1.2.840.10008.5.1.4.1.1.1.1"


class LogLines(list):
    """The listener's `say`: keeps each line's fields so tests can assert on them."""

    def __call__(self, message: str, **fields) -> None:
        self.append({"message": message, **{k: v for k, v in fields.items() if v is not None}})

    def associations(self) -> list[dict]:
        return [line for line in self if line.get("event") == "association"]

    def wait_associations(self, count: int, seconds: float = 10.0) -> list[dict]:
        """The association lines once `count` have been logged (each is logged as its connection closes)."""
        deadline = time.monotonic() + seconds
        while len(self.associations()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.associations()


def start_listener(inbox: Path, **options):
    """An in-process listener on a free loopback port: (listener, port, log lines)."""
    from edgecxr.dicomnet.listener import Listener, ListenOptions

    lines = LogLines()
    listener = Listener(ListenOptions(inbox=inbox, host="127.0.0.1", port=0, **options), lines)
    return listener, listener.start(), lines


def scanner(port: int, *, calling: str = "SCANNER", called: str = "EDGECXR", tls=None, syntaxes=None,
            evt_handlers=None):
    """A pynetdicom association as a modality would open it (Verification + DX storage)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.add_requested_context(DX, syntaxes or ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls, evt_handlers=evt_handlers or [])


def store_once(port: int, path: Path, **options):
    """One instance on its own association, as most modalities send; the C-STORE reply.

    One message per association also keeps clear of a race in pynetdicom's requestor, which
    on a loaded machine can take the reply to a second message for an unexpected request.
    """
    assoc = scanner(port, **options)
    try:
        return assoc.send_c_store(path)
    finally:
        if assoc.is_established:
            assoc.release()


def dx_dataset(path: Path, *, size: int = 64, study: str | None = None, seed: int = 0):
    """A small DX file with fresh UIDs (or a given StudyInstanceUID, however malformed)."""
    import pydicom

    from tests.dicom_write import write_dx_dicom

    pixels = np.random.default_rng(seed).random((size, size))
    write_dx_dicom(pixels, path)
    if study is not None:
        settings = pydicom.config.settings
        ds, before = pydicom.dcmread(path), settings.writing_validation_mode
        settings.writing_validation_mode = pydicom.config.IGNORE
        try:
            ds.StudyInstanceUID = study
            ds.save_as(path)
        finally:
            settings.writing_validation_mode = before
    return pydicom.dcmread(path)


def inbox_files(inbox: Path) -> list[Path]:
    """Every file below the inbox, temporary names included (nothing half-written may be there)."""
    return sorted(p for p in inbox.rglob("*") if p.is_file())


def run_dcmtk(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool(tool), *args], capture_output=True, text=True, timeout=60)


def spawn_listener(inbox: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """`edgecxr dicom-listen` as a real process (JSON logs on stderr); returns it and its port once listening."""
    proc = subprocess.Popen([sys.executable, "-m", "edgecxr", "dicom-listen", "--inbox", str(inbox), "--port", "0",
                             "--host", "127.0.0.1", "--log-format", "json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "400"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        record = json.loads(line)
        if record.get("event") == "listening":
            return proc, record["port"]
    proc.kill()
    raise AssertionError(f"dicom-listen did not start: {proc.stderr.read()}")


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate and a client certificate it signs, and a rogue self-signed client (openssl)."""
    openssl = require_tool("openssl")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    files = {name: folder / name for name in ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem",
                                               "client.key", "rogue.pem", "rogue.key")}

    def run(*args):
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True, timeout=60)

    for name, subject in (("ca", "/CN=edgecxr test CA"), ("rogue", "/CN=rogue scanner")):
        run("req", "-x509", *ec, "-keyout", files[f"{name}.key"], "-out", files[f"{name}.pem"], "-days", "2",
            "-subj", subject, "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    ext = folder / "leaf.ext"
    ext.write_text("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nsubjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid\n")
    for name in ("server", "client"):
        csr = folder / f"{name}.csr"
        run("req", *ec, "-keyout", files[f"{name}.key"], "-out", csr, "-subj", f"/CN={name}")
        run("x509", "-req", "-in", csr, "-CA", files["ca.pem"], "-CAkey", files["ca.key"], "-CAcreateserial",
            "-out", files[f"{name}.pem"], "-days", "2", "-extfile", ext)
    return files


def client_tls(files: dict[str, Path], cert: str | None):
    """The scanner's TLS arguments for pynetdicom: trusts the test CA, presents `cert` (client, rogue or None)."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files["ca.pem"]))
    context.check_hostname = False
    if cert is not None:
        context.load_cert_chain(files[f"{cert}.pem"], files[f"{cert}.key"])
    return (context, None)
