"""Audit messages to a syslog collector: RFC 5424 over UDP (RFC 5426), as IHE ATNA's audit repositories take them.

Each message is one datagram: `<85>1 TIMESTAMP HOST edgecxr PID IHE+RFC-3881 - ` then a UTF-8 BOM
and the XML (facility 10 "security/authorization", severity 5 "notice", the MSGID IHE ITI-20
names). UDP never blocks the node and gives no delivery guarantee, which is why the local file
stays the record; a datagram that cannot be sent is counted, never raised.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone

from edgecxr.errors import EdgecxrError

PRI = 10 * 8 + 5  # facility 10 (security/authorization messages), severity 5 (notice)
APP_NAME = "edgecxr"
MSGID = "IHE+RFC-3881"
MAX_DATAGRAM = 65_000  # a UDP datagram's payload limit, with room for the headers


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
        self.failures, self.last_error = 0, None
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
