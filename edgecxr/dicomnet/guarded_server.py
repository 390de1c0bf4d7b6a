"""pynetdicom's threaded server with the checks it lacks: source addresses and a TLS handshake off the accept loop.

pynetdicom completes the TLS handshake inside its accept loop, so one client that connects
and stays silent would stop every other scanner; here the handshake runs in the
connection's own thread with a deadline. A connection from outside --allow-ip is answered
with an A-ASSOCIATE-RJ (rejected permanent, no reason given) so the scanner logs a
refusal rather than a network fault.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct

from pynetdicom.transport import ThreadedAssociationServer

from edgecxr.dicomnet.access import AccessPolicy
from edgecxr.dicomnet.assoc_log import AssociationLog

HANDSHAKE_SECONDS = 10.0
REQUEST_MAX_BYTES = 1 << 20  # an A-ASSOCIATE-RQ is a few kB; more is not a DICOM peer
A_ASSOCIATE_RQ = 0x01
# A-ASSOCIATE-RJ PDU: type 3, length 4, reserved, result 1 (permanent), source 1 (service user), reason 1
REJECT_PERMANENT = bytes([0x03, 0x00]) + struct.pack(">I", 4) + bytes([0x00, 0x01, 0x01, 0x01])


class GuardedServer(ThreadedAssociationServer):
    policy: AccessPolicy
    log: AssociationLog
    daemon_threads = True

    def get_request(self):
        client, address = self.socket.accept()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def finish_request(self, request, client_address) -> None:
        ip, port = str(client_address[0]), int(client_address[1])
        if self.ssl_context is not None and not self._handshake(request, ip, port):
            return
        if not self.policy.ip_allowed(ip):
            calling = _answer_refusal(request)
            self.log.refused_connection(ip, port, "ip_not_allowed", calling)
            _close(request)
            return
        super().finish_request(request, client_address)

    def _handshake(self, request: ssl.SSLSocket, ip: str, port: int) -> bool:
        previous = request.gettimeout()
        try:
            request.settimeout(HANDSHAKE_SECONDS)
            request.do_handshake()
            request.settimeout(previous)
            return True
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            self.log.refused_connection(ip, port, f"tls_failed: {reason}")
            _close(request)
            return False

    def handle_error(self, request, client_address) -> None:
        """A failure in one connection is one log line, never a traceback on stderr or a stop."""
        import sys

        exc = sys.exc_info()[1]
        self.log.say(f"connection from {client_address[0]} failed: {type(exc).__name__}: {exc}",
                     event="connection_error", ip=str(client_address[0]), error=type(exc).__name__)


def _answer_refusal(sock: socket.socket) -> str | None:
    """Read the A-ASSOCIATE-RQ, answer A-ASSOCIATE-RJ, wait for the peer to close; the calling AE title."""
    calling = None
    try:
        sock.settimeout(HANDSHAKE_SECONDS)
        header = _read_exactly(sock, 6)
        kind, length = header[0], struct.unpack(">I", header[2:6])[0]
        if kind == A_ASSOCIATE_RQ and 36 <= length <= REQUEST_MAX_BYTES:
            body = _read_exactly(sock, length)
            calling = body[20:36].decode("ascii", "replace").strip() or None
        sock.sendall(REJECT_PERMANENT)
        sock.recv(1)  # the requestor closes after reading the reject; stop at that or the timeout
    except (OSError, ValueError):
        pass
    return calling


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ValueError("connection closed")
        data += chunk
    return data


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
