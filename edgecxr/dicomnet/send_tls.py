"""TLS when sending to a PACS (`watch --send-sr` with --send-tls-cert/--send-tls-key/--send-tls-ca).

The client side of what `dicom-listen --tls-*` does as a server: TLS 1.2 or newer, the PACS
certificate checked against the given CA (or the system's trusted CAs when none is given)
and against the PACS host we connect to, and our own certificate presented for a PACS that
requires mutual TLS. Built once at start, so a wrong path stops the watcher with the option named.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from edgecxr.core.errors import EdgecxrError


def server_auth_context(ca: Path | None, option: str, peer: str) -> ssl.SSLContext:
    """TLS 1.2+ to a server whose certificate is checked against `ca` (the system's CAs when None)
    and its host; `option` and `peer` name them in errors ("--send-tls-ca", "the PACS")."""
    if ca is not None and not ca.is_file():
        raise EdgecxrError(f"{option}: file not found", path=ca, fix=f"give an existing PEM file to {option}")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    except (ssl.SSLError, OSError) as exc:
        raise EdgecxrError(f"cannot load the CA certificates for {peer} ({exc})", path=ca,
                           fix=f"give the PEM certificate of the CA that signed {peer}'s certificate") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_context(cert: Path | None, key: Path | None, ca: Path | None) -> ssl.SSLContext | None:
    """None when no --send-tls-* option is given: plain DICOM, as before."""
    if cert is None and key is None and ca is None:
        return None
    if (cert is None) != (key is None):
        raise EdgecxrError("--send-tls-cert and --send-tls-key go together",
                           fix="give both (our client certificate and its private key), or neither")
    for option, path in (("--send-tls-cert", cert), ("--send-tls-key", key)):
        if path is not None and not path.is_file():
            raise EdgecxrError(f"{option}: file not found", path=path, fix=f"give an existing PEM file to {option}")
    context = server_auth_context(ca, "--send-tls-ca", "the PACS")
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise EdgecxrError(f"cannot load our TLS client certificate and key ({exc})", path=cert,
                               fix="give a PEM certificate and the unencrypted PEM key that matches it") from exc
    return context
