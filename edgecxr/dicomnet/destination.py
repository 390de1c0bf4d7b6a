"""`AET@HOST:PORT` (DIMSE) or `https://HOST[:PORT]/PATH` (DICOMweb STOW-RS): the one way a DICOM destination
is written on the command line and on disk."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgecxr.core.errors import EdgecxrError

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


@dataclass(frozen=True)
class WebDestination(Destination):
    """A DICOMweb service (STOW-RS): `url` is its base, e.g. https://pacs:8042/dicom-web. It stays a
    Destination (ae_title is the URL, as the audit trail names the peer) so the outbox, the sender thread
    and the status rows take it unchanged; sender.store and the health check dispatch on the type."""

    url: str = ""
    path: str = ""  # the base path, without a trailing slash
    scheme: str = "https"

    def __str__(self) -> str:
        return self.url

    @property
    def folder_name(self) -> str:
        return _SAFE.sub("_", f"{self.scheme}_{self.host}_{self.port}{self.path}")


def parse_destination(text: str) -> Destination:
    """Parse AET@HOST:PORT (IPv6 hosts in brackets) or a DICOMweb base URL; errors say what is wrong and
    how to write it."""
    if text.lower().startswith(("http://", "https://")):
        return _parse_url(text)
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


def _parse_url(text: str) -> WebDestination:
    from urllib.parse import urlsplit

    fix = "write it as https://HOST[:PORT]/PATH, e.g. https://pacs.example.org/dicom-web"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise EdgecxrError(f"DICOMweb destination {text!r} is not a URL ({exc})", fix=fix) from exc
    if not parts.hostname:
        raise EdgecxrError(f"DICOMweb destination {text!r} has no host", fix=fix)
    if parts.username or parts.password:  # it would be written to state.json, the logs and the audit trail
        raise EdgecxrError(f"DICOMweb destination {parts.scheme}://{parts.hostname}/...: a user name or password "
                           "in the URL is not supported (it would be written to the logs)",
                           fix="give the URL without credentials; use a client certificate (--send-tls-cert)")
    if parts.query or parts.fragment:
        raise EdgecxrError(f"DICOMweb destination {text!r}: a query or fragment is not part of a base URL", fix=fix)
    scheme = parts.scheme.lower()
    port = port or (443 if scheme == "https" else 80)
    path = parts.path.rstrip("/")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    url = f"{scheme}://{host}:{port}{path}"
    return WebDestination(url, parts.hostname, port, url=url, path=path, scheme=scheme)


def resolved(destination: Destination) -> Destination:
    """The destination with its host as an IP address: a sandboxed unit may reach that address and
    nothing else, DNS included, so names are resolved once, at install time."""
    import ipaddress
    import socket

    if isinstance(destination, WebDestination):
        try:
            ipaddress.ip_address(destination.host)
            return destination
        except ValueError:  # https checks the certificate against the URL's host: a name cannot become an address
            raise EdgecxrError(f"DICOMweb destination {destination}: the service's sandbox lets it reach IP addresses "
                               "only (no DNS), and a host name cannot be replaced by its address in an https URL",
                               fix="give the URL with the server's IP address (its certificate must name that "
                                   "address), e.g. https://10.0.0.5:8042/dicom-web") from None
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
