"""DICOMweb STOW-RS (PS3.18 10.5): sending built objects to a `WebDestination`, standard library only.

One object per POST {base}/studies (multipart/related; type="application/dicom"), on one kept-alive
connection per batch, so each object gets its own answer and a refusal of one never fails another.
The answers map onto the same three outcomes as a C-STORE status (sender.Outcome), so the sender
thread, the outbox and its give-up rules stay the same for both kinds of destination:

- 200, or 202 without this object in the Failed SOP Sequence: sent;
- the object in the Failed SOP Sequence (202, 409, 4xx with a body): its Failure Reason is a C-STORE
  status and is judged as one (0xA9xx/0xCxxx refused for good; 0x0110 processing failure and
  0xA7xx out of resources "try again", which give up after --send-give-up);
- 400, 409, 413, 415 or another 4xx about the request: refused for good, to failed/;
- 401, 403, 404, 405, 407: the destination's configuration (credentials, URL) is wrong, not the
  object: the destination backs off and the objects stay pending (until the age rule);
- 408, 429, 500: "try again" for this object; 502, 503, 504 and no connection: the destination is
  down and backs off.

A server may accept an object it then filters out (Orthanc 1.10 with DICOMweb 1.7 answers 200 for
an instance its Lua filter drops); like a C-STORE success, only the server's word is available.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from pathlib import Path

from edgecxr.core.errors import EdgecxrError
from edgecxr.dicomnet.destination import WebDestination
from edgecxr.dicomnet.identity import implementation_version_name
from edgecxr.dicomnet.reach import EchoResult
from edgecxr.dicomnet.sender import FAILED, RETRY, SENT, Outcome, SendOptions, classify_status

BOUNDARY = "edgecxr-stow-7c1e0f3b2a"
FAILED_SOP_SEQUENCE, REFERENCED_SOP_INSTANCE_UID, FAILURE_REASON = "00081198", "00081155", "00081197"
DESTINATION_WRONG = (401, 403, 404, 405, 407)
TRY_AGAIN = (408, 429, 500)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_web_destinations(destinations, context: ssl.SSLContext | None, allow_http: bool) -> None:
    """At start: plain http only to loopback (or with --send-allow-http), and TLS options only with https."""
    for d in destinations:
        if not isinstance(d, WebDestination) or d.scheme == "https":
            continue
        if context is not None:
            raise EdgecxrError(f"{d}: --send-tls-* options are given, but this DICOMweb destination is plain http",
                               fix=f"write it as https://{d.url.split('://', 1)[1]}, or leave out the TLS options")
        if d.host not in LOOPBACK and not d.host.startswith("127.") and not allow_http:
            raise EdgecxrError(f"{d}: plain http to another machine would carry each result, with the patient's "
                               "ID and name, unencrypted over the network",
                               fix="use https:// (with --send-tls-ca for the server's CA), or pass "
                                   "--send-allow-http on a network where that is accepted")


def _connection(destination: WebDestination, context: ssl.SSLContext | None,
                timeout_s: float) -> http.client.HTTPConnection:
    if destination.scheme == "https":
        if context is None:  # no --send-tls-ca: the system's trusted CAs, as a browser would
            context = ssl.create_default_context()
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        return http.client.HTTPSConnection(destination.host, destination.port, timeout=timeout_s, context=context)
    return http.client.HTTPConnection(destination.host, destination.port, timeout=timeout_s)


def _headers(accept: str) -> dict[str, str]:
    return {"Accept": accept, "User-Agent": f"edgecxr ({implementation_version_name()})"}


def store(destination: WebDestination, files: list[Path], options: SendOptions) -> list[Outcome]:
    """POST each object in turn; one Outcome per file, in order. A lost connection leaves the rest
    for the next batch, as a lost association does."""
    url = f"{destination.path}/studies"
    headers = {**_headers("application/dicom+json"),
               "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}
    outcomes: list[Outcome] = []
    conn = _connection(destination, options.tls, options.timeout_s)
    try:
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as exc:
                outcomes.append(Outcome(path, FAILED, f"unreadable object in the outbox: {exc.strerror or exc}"))
                continue
            if data[128:132] != b"DICM":  # a damaged file: set aside, never retried forever
                outcomes.append(Outcome(path, FAILED, "unreadable object in the outbox: not a DICOM file"))
                continue
            body = (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
                    + f"\r\n--{BOUNDARY}--\r\n".encode())
            try:
                status, reason, answer = _post(conn, url, body, headers, reused=bool(outcomes))
            except (OSError, http.client.HTTPException) as exc:
                why = _unreachable(destination, exc, options.timeout_s)
                outcomes += [Outcome(p, RETRY, f"{destination}: {why}") for p in files[len(outcomes):]]
                break
            outcomes.append(outcome_of(path, destination, status, reason, answer))
    finally:
        conn.close()
    return outcomes


def _post(conn: http.client.HTTPConnection, url: str, body: bytes, headers: dict[str, str],
          reused: bool) -> tuple[int, str, bytes]:
    """One POST. A kept-alive connection the server has meanwhile closed (Orthanc keeps one for 1 s) fails
    before any answer: that request goes once more on a new connection, which is safe because a
    second store of the same SOP Instance UID is the same object."""
    def once() -> tuple[int, str, bytes]:
        conn.request("POST", url, body, headers)
        response = conn.getresponse()
        return response.status, response.reason, response.read()

    try:
        return once()
    except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
        if not reused:
            raise
        conn.close()  # http.client connects again on the next request
    return once()


def outcome_of(path: Path, destination: WebDestination, status: int, reason: str, body: bytes) -> Outcome:
    """One STOW-RS answer about the object `path` (its file name is its SOP Instance UID)."""
    said = f"{destination}: STOW-RS HTTP {status} {reason}".rstrip()
    failure = _failure_reason(body, path.stem)
    if failure is not None:  # the server named this object as not stored, and why
        code = f"0x{failure:04X}"
        result = classify_status(failure)
        words = "refused it" if result == FAILED else "could not store it now"
        return Outcome(path, result, f"{said}: the server {words} (failure reason {code}{_meaning(failure)}); "
                                     f"status {code}", answered=True)
    if status in (200, 202):
        return Outcome(path, SENT, f"{said}; status {status}", answered=True)
    if status in DESTINATION_WRONG:
        return Outcome(path, RETRY, f"{said}: check the URL and that the server lets this node store "
                                    "(credentials, client certificate)")
    if status in TRY_AGAIN:
        return Outcome(path, RETRY, f"{said}: the server asks to try again later", answered=True)
    if 400 <= status < 500:
        return Outcome(path, FAILED, f"{said}: the server refused the object{_hint(status)}", answered=True)
    return Outcome(path, RETRY, f"{said}: the server is unavailable")  # 502/503/504 and anything unknown


def _failure_reason(body: bytes, uid: str) -> int | None:
    """This object's Failure Reason in the response's Failed SOP Sequence (DICOM JSON), if it is there."""
    try:
        dataset = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(dataset, list):  # some servers answer with a one-element array
        dataset = dataset[0] if dataset and isinstance(dataset[0], dict) else {}
    items = (dataset.get(FAILED_SOP_SEQUENCE) or {}).get("Value") or [] if isinstance(dataset, dict) else []
    for item in items:
        uids = ((item or {}).get(REFERENCED_SOP_INSTANCE_UID) or {}).get("Value") or []
        if uid in uids or (len(items) == 1 and not uids):
            reasons = ((item or {}).get(FAILURE_REASON) or {}).get("Value") or [0xC000]
            return int(reasons[0])
    return None


def _meaning(code: int) -> str:
    meanings = {0x0110: "processing failure", 0x0122: "SOP class not supported",
                0x0124: "not authorized", 0xA700: "out of resources", 0xA900: "data set does not match the SOP class",
                0xC000: "cannot understand", 0xC122: "referenced transfer syntax not supported"}
    found = meanings.get(code) or ("out of resources" if code & 0xFF00 == 0xA700 else None)
    return f": {found}" if found else ""


def _hint(status: int) -> str:
    return {400: " as malformed (it could not read it as DICOM)", 409: " (conflict: it does not store it)",
            413: " as too large", 415: " (it does not take application/dicom)"}.get(status, "")


def _unreachable(destination: WebDestination, exc: BaseException, timeout_s: float) -> str:
    where = f"{destination.host}:{destination.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: the server certificate at {where} is not trusted ({exc.verify_message}); check --send-tls-ca "
                "names the CA that signed it, and that the certificate names this host")
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed ({exc.reason or exc}); check the server speaks https on this port"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: nothing listens at {where} (is the server running, is the port right?)"
    if isinstance(exc, socket.gaierror):
        return f"host {destination.host!r} not found ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} within {timeout_s:g} s (server down, or a firewall drops the packets)"
    if isinstance(exc, http.client.HTTPException | ConnectionError):
        return f"{where} closed the connection ({type(exc).__name__})"
    return f"cannot connect to {where} ({getattr(exc, 'strerror', None) or exc})"


def check(destination: WebDestination, timeout_s: float, context: ssl.SSLContext | None = None) -> EchoResult:
    """The DICOMweb counterpart of C-ECHO: GET {base}/studies?limit=1 (a QIDO-RS search of one study);
    any 2xx answer means the service is up and lets us in. The answer's content is read and dropped."""
    conn = _connection(destination, context, timeout_s)
    start = time.perf_counter()
    try:
        conn.request("GET", f"{destination.path}/studies?limit=1", headers=_headers("application/dicom+json"))
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        return EchoResult(False, None, _unreachable(destination, exc, timeout_s))
    finally:
        conn.close()
    elapsed = round((time.perf_counter() - start) * 1000, 1)
    if 200 <= response.status < 300:
        return EchoResult(True, elapsed, None)
    return EchoResult(False, elapsed, f"{destination}: GET studies?limit=1 answered HTTP {response.status} "
                                      f"{response.reason}".rstrip())
