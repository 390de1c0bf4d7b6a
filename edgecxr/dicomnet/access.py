"""Who may send: calling AE titles, source networks, and TLS (with client certificates for mutual TLS).

Parsed once at start so that a typo in an option stops the listener with a message naming
the option, instead of silently letting everyone in or no one.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from edgecxr.core.errors import EdgecxrError

AE_TITLE_MAX = 16


def check_ae_title(title: str, option: str) -> str:
    """An AE title is 1-16 characters of the default character repertoire, no backslash."""
    stripped = title.strip()
    if not stripped or len(stripped) > AE_TITLE_MAX or "\\" in stripped or not stripped.isascii() or \
            not stripped.isprintable():
        raise EdgecxrError(f"{option} {title!r} is not a DICOM AE title",
                           fix="use 1 to 16 printable ASCII characters without a backslash")
    return stripped


def require_ae_choice(allow_ae: list[str], allow_any_ae: bool, option: str = "--allow-ae") -> None:
    """A listener on a hospital network must be told who may send: no silent "anyone" default.

    Any machine that can reach the port could otherwise store images into the inbox (and so onto
    the PACS, once classified), so the open door has to be asked for by name.
    """
    any_option = option.replace("--allow-ae", "--allow-any-ae")
    if allow_ae and allow_any_ae:
        raise EdgecxrError(f"{option} and {any_option} contradict each other",
                           fix=f"keep {option} AET[,AET...] to accept only those scanners, or {any_option} alone")
    if not allow_ae and not allow_any_ae:
        raise EdgecxrError("the listener must be told which scanners may send: no calling AE title is allowed yet",
                           fix=f"give {option} AET[,AET...] with the calling AE titles of your modalities "
                               f"(e.g. {option} CR01,DX02), or {any_option} to accept any calling AE title")


@dataclass
class AccessPolicy:
    allowed_ae: list[str] = field(default_factory=list)  # empty: any calling AE
    allowed_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)

    @classmethod
    def parse(cls, allow_ae: list[str], allow_ip: list[str], option: str = "--allow-ip") -> AccessPolicy:
        titles = [check_ae_title(t, "--allow-ae") for t in allow_ae]
        networks = []
        for text in allow_ip:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise EdgecxrError(f"{option} {text!r} is not an address or network ({exc})",
                                   fix="use addresses or CIDR networks, e.g. 10.1.2.0/24,192.168.5.7") from exc
        return cls(titles, networks)

    def ip_allowed(self, address: str) -> bool:
        if not self.allowed_networks:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:10.1.2.3 on a dual-stack socket
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allowed_networks)


def tls_context(cert: Path | None, key: Path | None, ca: Path | None) -> ssl.SSLContext | None:
    """The server's TLS context; with `ca`, every client must present a certificate it signed."""
    if cert is None and key is None and ca is None:
        return None
    if cert is None or key is None:
        raise EdgecxrError("TLS needs both --tls-cert and --tls-key",
                           fix="give the listener's certificate and its private key (PEM files)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for option, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)):
        if path is not None and not path.is_file():
            raise EdgecxrError(f"{option}: file not found", path=path, fix=f"give an existing PEM file to {option}")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise EdgecxrError(f"cannot load the TLS certificate and key ({exc})", path=cert,
                           fix="give a PEM certificate and the unencrypted PEM private key that matches it") from exc
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as exc:
            raise EdgecxrError(f"cannot load the client CA certificates ({exc})", path=ca,
                               fix="give the PEM certificates of the CA that signs the scanners' ones") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context
