"""Audit messages to a syslog collector: RFC 5424 over UDP (RFC 5426), TCP (RFC 6587) or TLS (RFC 5425),
as IHE ATNA's audit repositories take them.

Each message is one datagram: `<85>1 TIMESTAMP HOST edgecxr PID IHE+RFC-3881 - ` then a UTF-8 BOM
and the XML (facility 10 "security/authorization", severity 5 "notice", the MSGID IHE ITI-20
names). UDP never blocks the node and gives no delivery guarantee, which is why the local file
stays the record; a datagram that cannot be sent is counted, never raised. Over TCP and TLS each
message is octet-counted (`LENGTH SP MESSAGE`, RFC 6587/5425) and sent by a thread of its own from
a bounded queue, so a slow or absent collector never holds up classification or sending: a message
that finds the queue full, or that cannot be sent after one reconnection, is counted, never raised.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import ssl
import threading
from datetime import datetime, timezone
from pathlib import Path

from edgecxr.core.errors import EdgecxrError

PRI = 10 * 8 + 5  # facility 10 (security/authorization messages), severity 5 (notice)
APP_NAME = "edgecxr"
MSGID = "IHE+RFC-3881"
MAX_DATAGRAM = 65_000  # a UDP datagram's payload limit, with room for the headers


SCHEMES = ("udp", "tcp", "tls")
QUEUE = 1000  # messages waiting for a TCP/TLS collector before new ones are counted as lost
TIMEOUT_S = 5.0


def parse_target(text: str) -> tuple[str, str, int]:
    """(scheme, host, port) of `[udp|tcp|tls://]HOST:PORT`; UDP without a scheme, as before."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "udp", text
    if scheme not in SCHEMES:
        raise EdgecxrError(f"--audit-syslog {text!r}: unknown transport {scheme!r}",
                           fix="give udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT (a bare HOST:PORT is UDP)")
    return (scheme, *parse_collector(rest))


def open_forwarder(text: str, ca: Path | None = None):
    """The forwarder for --audit-syslog (and --audit-syslog-ca, which only TLS takes)."""
    scheme, host, port = parse_target(text)
    if ca is not None and scheme != "tls":
        raise EdgecxrError("--audit-syslog-ca goes with a tls:// collector",
                           fix=f"give --audit-syslog tls://{host}:{port}, or leave out --audit-syslog-ca")
    if scheme == "udp":
        return SyslogForwarder((host, port))
    if scheme == "tcp":
        return StreamForwarder((host, port))
    from edgecxr.dicomnet.send_tls import server_auth_context

    return StreamForwarder((host, port), server_auth_context(ca, "--audit-syslog-ca", "the syslog collector"))


def parse_collector(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) of the syslog collector."""
    host, colon, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgecxrError(f"--audit-syslog {text!r} is not HOST:PORT",
                           fix="give the audit repository's syslog address, e.g. --audit-syslog 10.0.0.7:514")
    return host, int(port)


class SyslogForwarder:
    """Sends each audit message as one RFC 5424 datagram to `collector`."""

    def __init__(self, collector: tuple[str, int]):
        self.collector = collector
        self.hostname = socket.gethostname()[:255] or "-"
        self.failures = 0
        self.last_error: str | None = None
        try:
            info = socket.getaddrinfo(collector[0], collector[1], type=socket.SOCK_DGRAM)[0]
        except OSError as exc:
            raise EdgecxrError(f"cannot resolve the syslog collector {collector[0]!r} ({exc})",
                               fix="give --audit-syslog as IP:PORT or a resolvable HOST:PORT") from exc
        self.family, self.address = info[0], info[4]
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)

    def frame(self, xml: str) -> bytes:
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        header = f"<{PRI}>1 {stamp} {self.hostname} {APP_NAME} {os.getpid()} {MSGID} - "
        return header.encode("ascii", "replace") + b"\xef\xbb\xbf" + xml.encode("utf-8")

    def __call__(self, xml: str) -> None:
        data = self.frame(xml)
        if len(data) > MAX_DATAGRAM:  # the file keeps the whole message; a collector would drop a fragment
            self.failures, self.last_error = self.failures + 1, f"message of {len(data)} bytes too large for UDP"
            return
        try:
            self.sock.sendto(data, self.address)
        except OSError as exc:
            self.failures, self.last_error = self.failures + 1, f"{exc.strerror or exc}"

    def close(self) -> None:
        self.sock.close()


class StreamForwarder(SyslogForwarder):
    """RFC 5424 messages over one TCP (or TLS) connection, octet-counted, from a queue on its own thread."""

    def __init__(self, collector: tuple[str, int], context: ssl.SSLContext | None = None):
        self.collector, self.context = collector, context
        self.hostname = socket.gethostname()[:255] or "-"
        self.failures = 0
        self.last_error: str | None = None
        self._sock: socket.socket | None = None
        self.queue: queue.Queue[bytes | None] = queue.Queue(QUEUE)
        self.thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
        self.thread.start()

    def __call__(self, xml: str) -> None:
        data = self.frame(xml)
        try:
            self.queue.put_nowait(b"%d " % len(data) + data)
        except queue.Full:
            self.failures, self.last_error = self.failures + 1, "the syslog queue is full (collector too slow or away)"

    def _run(self) -> None:
        while (data := self.queue.get()) is not None:
            for attempt in (1, 2):  # a dropped connection is opened once more for this message
                try:
                    self._connection().sendall(data)
                    break
                except (OSError, ssl.SSLError) as exc:
                    self._drop()
                    if attempt == 2:
                        self.failures, self.last_error = self.failures + 1, f"{getattr(exc, 'strerror', None) or exc}"

    def _connection(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection(self.collector, timeout=TIMEOUT_S)
            self._sock = sock if self.context is None else \
                self.context.wrap_socket(sock, server_hostname=self.collector[0])
        return self._sock

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        """Send what is queued (bounded by the timeout), then close."""
        with contextlib.suppress(queue.Full):  # a full queue after the timeout: its messages are in the file
            self.queue.put(None, timeout=TIMEOUT_S)
        self.thread.join(timeout=2 * TIMEOUT_S)
        self._drop()
