"""The audit trail to a syslog collector over TCP and TLS (RFC 6587 / RFC 5425 octet counting): the same
messages as the file, in order; a collector whose certificate we do not trust gets nothing, and the
node goes on regardless."""

from __future__ import annotations

import signal
import socket
import ssl
import threading
from pathlib import Path

import pytest

from tests.dicom_net import make_certificates, run_dcmtk, spawn_listener
from tests.test_dicom_audit import kind, messages
from tests.tools import require_module

require_module("pynetdicom")
require_module("lxml")


class Collector:
    """A TCP (or TLS) syslog collector on loopback that keeps the octet-counted frames it receives."""

    def __init__(self, context: ssl.SSLContext | None = None):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(20)
        self.context, self.frames, self.errors = context, [], []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.getsockname()[1]

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            conn.settimeout(20)
            buffer = b""
            while chunk := conn.recv(65536):
                buffer += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    if len(rest) < int(length):
                        break
                    self.frames.append(rest[:int(length)])
                    buffer = rest[int(length):]
        except (OSError, ssl.SSLError) as exc:  # a refused handshake ends here: kept for the test to read
            self.errors.append(exc)
        finally:
            self.server.close()


def run_listener_with(collector_url: str, tmp_path: Path, *extra: str) -> Path:
    inbox, trail = tmp_path / "inbox", tmp_path / "audit.log"
    inbox.mkdir()
    proc, port = spawn_listener(inbox, "--allow-ae", "SCANNER", "--audit-log", str(trail), "--audit-syslog",
                                collector_url, *extra)
    try:
        run_dcmtk("echoscu", "-aet", "INTRUDER", "-aec", "EDGECXR", "127.0.0.1", str(port))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return trail


def xml_of(frame: bytes) -> str:
    header, bom, xml = frame.partition(b"\xef\xbb\xbf")
    assert bom and header.startswith(b"<85>1 ") and b" edgecxr " in header and b" IHE+RFC-3881 - " in header
    return xml.decode("utf-8")


def test_audit_messages_reach_a_tcp_collector_octet_counted(tmp_path):
    collector = Collector()
    trail = run_listener_with(f"tcp://127.0.0.1:{collector.port}", tmp_path)
    collector.thread.join(timeout=20)
    assert [xml_of(f) for f in collector.frames] == trail.read_text().splitlines()
    assert [kind(d)[:2] for d in messages(trail)] == [("110100", "110120"), ("110113", "110126"),
                                                      ("110100", "110121")]


@pytest.mark.parametrize("trusted", [True, False])
def test_audit_messages_over_tls_only_to_a_collector_we_trust(tmp_path, trusted):
    (tmp_path / "certs").mkdir()
    certs = make_certificates(tmp_path / "certs")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs["server.pem"], certs["server.key"])
    collector = Collector(context)
    ca = certs["ca.pem"] if trusted else certs["rogue.pem"]
    trail = run_listener_with(f"tls://127.0.0.1:{collector.port}", tmp_path, "--audit-syslog-ca", str(ca))
    collector.thread.join(timeout=20)
    lines = trail.read_text().splitlines()
    assert len(lines) == 3  # the file is the record either way
    if trusted:
        assert [xml_of(f) for f in collector.frames] == lines
    else:
        assert collector.frames == [] and collector.errors  # our side refused the handshake: nothing sent


def test_the_transport_is_checked_at_start():
    from edgecxr.core.errors import EdgecxrError
    from edgecxr.dicomnet.audit_syslog import open_forwarder

    with pytest.raises(EdgecxrError, match="unknown transport 'http'"):
        open_forwarder("http://127.0.0.1:514")
    with pytest.raises(EdgecxrError, match="--audit-syslog-ca goes with a tls:// collector"):
        open_forwarder("tcp://127.0.0.1:514", Path("/etc/hostname"))
