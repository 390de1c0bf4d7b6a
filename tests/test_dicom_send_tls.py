"""`watch --send-sr` over TLS to dcmtk's storescp (+tls, mutual TLS), with test certificates made here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.dicomnet.outbox import summary
from tests.dicom_net import SAMPLES, make_certificates
from tests.storescp import StoreSCP
from tests.tools import require_module

require_module("pynetdicom")
require_module("onnxruntime")


@pytest.fixture
def certs(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "tls"
    folder.mkdir()
    return make_certificates(folder)


@pytest.fixture
def tls_pacs(tmp_path, certs):
    """storescp with TLS, asking for a client certificate signed by the test CA (its default, -rc)."""
    scp = StoreSCP(tmp_path / "storescp", "+tls", str(certs["server.key"]), str(certs["server.pem"]),
                   "+cf", str(certs["ca.pem"])).start()
    yield scp
    scp.stop()


def send_once(tmp_path: Path, destination: str, *tls: str):
    """One DICOM sample classified and its SR sent (`watch --once`); the CLI result and the outbox row."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    shutil.copyfile(SAMPLES[0], inbox / SAMPLES[0].name)
    result = CliRunner().invoke(app, ["watch", str(inbox), "--once", "--settle-seconds", "0", "--backend",
                                      "onnxruntime", "--out", str(out), "--send-sr", destination,
                                      "--send-echo-interval", "0", *tls])
    return result, summary(out)[0]


def test_tls_send_with_a_valid_certificate_arrives(tmp_path, certs, tls_pacs):
    result, row = send_once(tmp_path, tls_pacs.destination, "--send-tls-cert", str(certs["client.pem"]),
                            "--send-tls-key", str(certs["client.key"]), "--send-tls-ca", str(certs["ca.pem"]))
    assert result.exit_code == 0, result.output
    assert (row["sent"], row["pending"], row["failed"]) == (1, 0, 0), row
    received = tls_pacs.received()
    assert len(received) == 1 and received[0].name.startswith("SR"), received  # storescp names files by modality
    log = tls_pacs.log()
    assert "Transport connection: TLS over TCP/IP" in log and "Peer X.509v3 Certificate" in log, log[-2000:]


def test_tls_send_with_the_wrong_ca_fails_clearly_and_stays_pending(tmp_path, certs, tls_pacs):
    result, row = send_once(tmp_path, tls_pacs.destination, "--send-tls-cert", str(certs["client.pem"]),
                            "--send-tls-key", str(certs["client.key"]), "--send-tls-ca", str(certs["rogue.pem"]))
    assert result.exit_code == 0, result.output  # classification succeeded; the SR waits in the outbox
    assert (row["sent"], row["pending"], row["failed"]) == (0, 1, 0), row
    assert "TLS: the PACS certificate" in row["last_error"] and "not trusted" in row["last_error"], row
    assert "--send-tls-ca" in row["last_error"]  # the fix is named
    assert tls_pacs.received() == []


def test_plain_dicom_to_a_tls_port_is_not_counted_as_sent(tmp_path, tls_pacs):
    result, row = send_once(tmp_path, tls_pacs.destination)
    assert result.exit_code == 0, result.output
    assert (row["sent"], row["pending"]) == (0, 1) and "no association" in row["last_error"], row
    assert tls_pacs.received() == []


def test_tls_options_are_checked_at_start(tmp_path, certs):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    base = ["watch", str(inbox), "--once", "--backend", "onnxruntime", "--out", str(tmp_path / "out")]
    half = CliRunner().invoke(app, [*base, "--send-sr", "PACS@127.0.0.1:104", "--send-tls-cert",
                                    str(certs["client.pem"])])
    assert half.exit_code != 0 and "--send-tls-cert and --send-tls-key go together" in half.output, half.output
    missing = CliRunner().invoke(app, [*base, "--send-sr", "PACS@127.0.0.1:104", "--send-tls-ca",
                                       str(tmp_path / "nope.pem")])
    assert missing.exit_code != 0 and "--send-tls-ca: file not found" in missing.output, missing.output
    alone = CliRunner().invoke(app, [*base, "--send-tls-ca", str(certs["ca.pem"])])
    assert alone.exit_code != 0 and "need --send-sr" in alone.output, alone.output
