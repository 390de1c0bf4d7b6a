"""Can we reach a PACS, and if not, why, in words a PACS administrator can act on.

pynetdicom only says "no association" when a connection or a TLS handshake fails (the cause
goes to its log). When an association could not be opened, `why_unreachable` tries the same
address once more with a plain socket (and the same TLS context) to name the cause: nothing
listening, no answer, an unknown host, or the certificate check that failed. It runs only
after a failure, so a healthy PACS never sees the extra connection.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass

from edgecxr.dicomnet.destination import Destination
from edgecxr.dicomnet.identity import new_ae

VERIFICATION = "1.2.840.10008.1.1"


def tls_args(destination: Destination, context: ssl.SSLContext | None):
    """pynetdicom's tls_args: the context, and the PACS host for the certificate's name check."""
    return None if context is None else (context, destination.host)


def why_unreachable(destination: Destination, context: ssl.SSLContext | None, timeout_s: float) -> str:
    """One connection attempt, to put the failure in words."""
    where = f"{destination.host}:{destination.port}"
    try:
        with socket.create_connection((destination.host, destination.port), timeout=timeout_s) as raw:
            if context is None:
                return f"{where} accepted the connection, then closed or aborted the association"
            raw.settimeout(timeout_s)
            with context.wrap_socket(raw, server_hostname=destination.host):
                return f"{where}: TLS handshake succeeds, but the association was aborted"
    except ssl.SSLCertVerificationError as exc:
        return (f"TLS: the PACS certificate at {where} is not trusted ({exc.verify_message}); check --send-tls-ca "
                "names the CA that signed the PACS certificate, and that the certificate names this host")
    except ssl.SSLError as exc:
        return (f"TLS handshake with {where} failed ({exc.reason or exc}); check the PACS expects TLS on this port "
                "and accepts our certificate (--send-tls-cert/--send-tls-key)")
    except ConnectionRefusedError:
        return f"connection refused: nothing listens at {where} (is the PACS running, is the port right?)"
    except socket.gaierror as exc:
        return f"host {destination.host!r} not found ({exc.strerror})"
    except TimeoutError:
        return f"no answer from {where} within {timeout_s:g} s (PACS down, or a firewall drops the packets)"
    except OSError as exc:
        return f"cannot connect to {where} ({exc.strerror or exc})"


@dataclass
class EchoResult:
    ok: bool
    rtt_ms: float | None  # the whole check: connect, associate, C-ECHO, release
    error: str | None


def echo(destination: Destination, calling_ae: str, timeout_s: float,
         context: ssl.SSLContext | None = None) -> EchoResult:
    """One C-ECHO on its own association, every step bounded by `timeout_s`."""
    ae = new_ae(calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = timeout_s
    ae.add_requested_context(VERIFICATION)
    start = time.perf_counter()
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                         tls_args=tls_args(destination, context))
    if not assoc.is_established:
        if assoc.is_rejected:
            return EchoResult(False, None, f"{destination} rejected the association: check the PACS knows our AE "
                                           f"title {calling_ae} and answers to {destination.ae_title}")
        return EchoResult(False, None, why_unreachable(destination, context, timeout_s))
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    elapsed = round((time.perf_counter() - start) * 1000, 1)
    code = getattr(status, "Status", None)
    if code is None:
        return EchoResult(False, None, f"{destination} did not answer the C-ECHO within {timeout_s:g} s")
    if int(code) != 0:
        return EchoResult(False, elapsed, f"{destination} answered the C-ECHO with status 0x{int(code):04X}")
    return EchoResult(True, elapsed, None)
