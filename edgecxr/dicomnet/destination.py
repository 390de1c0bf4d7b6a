"""`AET@HOST:PORT`: the one way a DICOM destination is written on the command line and on disk."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgecxr.errors import EdgecxrError

_AET = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # DICOM AE: 16 characters at most, no backslash or controls
_SAFE = re.compile(r"[^A-Za-z0-9._@-]")


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"

    @property
    def folder_name(self) -> str:
        """A file-system-safe name that still reads as the destination."""
        return _SAFE.sub("_", f"{self.ae_title}@{self.host}_{self.port}")


def parse_destination(text: str) -> Destination:
    """Parse AET@HOST:PORT (IPv6 hosts in brackets); errors say what is wrong and how to write it."""
    fix = "write it as AET@HOST:PORT, e.g. PACS@10.0.0.5:104"
    aet, at, rest = text.rpartition("@")
    host, colon, port = rest.rpartition(":")
    if not at or not colon:
        raise EdgecxrError(f"DICOM destination {text!r} is not AET@HOST:PORT", fix=fix)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not _AET.match(aet) or not aet.strip():
        raise EdgecxrError(f"DICOM destination {text!r}: the AE title {aet!r} is not 1-16 printable characters",
                           fix=fix)
    if not host:
        raise EdgecxrError(f"DICOM destination {text!r} has no host", fix=fix)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgecxrError(f"DICOM destination {text!r}: port {port!r} is not a number from 1 to 65535", fix=fix)
    return Destination(aet.strip(), host, int(port))


def resolved(destination: Destination) -> Destination:
    """The destination with its host as an IP address: a sandboxed unit may reach that address and
    nothing else, DNS included, so names are resolved once, at install time."""
    import ipaddress
    import socket

    try:
        ipaddress.ip_address(destination.host)
        return destination
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(destination.host, destination.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise EdgecxrError(f"cannot resolve the PACS host {destination.host!r} ({exc})",
                           fix="give the PACS by IP address, e.g. PACS@10.0.0.5:104") from exc
    return Destination(destination.ae_title, str(infos[0][4][0]), destination.port)
