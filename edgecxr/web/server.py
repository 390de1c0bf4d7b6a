"""The status page's HTTP server (and `/metrics` for Prometheus): the standard library's ThreadingHTTPServer, read-only.

It lives in the watcher's process on its own threads. Each request reads what the feed has
cached, so an open page polling every two seconds costs the classifier little
(`deploy/bench/bench_status_page.py` measures it). Every response forbids scripts, styles, images
and connections from anywhere but this origin, so the page works with no network and can
reach nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from edgecxr.core.errors import EdgecxrError
from edgecxr.core.results import MAPS, THUMBS, read_status
from edgecxr.web.feed import SHA256, ResultsFeed, StatusView, media_file
from edgecxr.web.metrics import CONTENT_TYPE as METRICS_TYPE
from edgecxr.web.metrics import render as render_metrics
from edgecxr.web.thumbs import ThumbnailSink

POLL_SECONDS = 2.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/style.css": ("style.css", "text/css; charset=utf-8"),
          "/favicon.ico": ("favicon.svg", "image/svg+xml")}


def parse_address(text: str) -> tuple[str, int, bool]:
    """`PORT`, `HOST:PORT` or `[IPv6]:PORT` -> (host, port, loopback). A bare port means loopback."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise EdgecxrError(f"--http {text!r} is not PORT or HOST:PORT",
                           fix="e.g. --http 127.0.0.1:8080, or --http 0.0.0.0:8080 for every interface") from None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False  # a host name: whatever it resolves to, it was asked for explicitly
    return host, port, loopback


class HostCheck:
    """The Host header allow-list: a web page elsewhere cannot read this page through DNS rebinding.

    A rebinding page points its own name at this box, so its requests carry that name as Host:
    only this page's own address, localhost and the names given with --http-allow-host are
    answered. On a wildcard address (0.0.0.0, ::) an IP literal is answered too: a browser sends
    one only when the user typed it, and it cannot be rebound.
    """

    LOCAL = frozenset({"localhost", "127.0.0.1", "::1"})

    def __init__(self, bound: str, extra: tuple[str, ...] = ()):
        self.names = self.LOCAL | {bound.lower().strip("[]")} | {_host_name(n) for n in extra if n.strip()}
        self.any_ip = bound in ("0.0.0.0", "::", "")

    def allows(self, header: str | None) -> bool:
        if not header:
            return False  # HTTP/1.1 requires it; every browser sends it
        name = _host_name(header)
        if name in self.names:
            return True
        if self.any_ip:
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False


def _host_name(header: str) -> str:
    """`Name:8080`, `[::1]:8080`, `name.` -> `name`, `::1`, `name` (lower case, no port)."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text.rstrip(".")


class StatusServer:
    """Serves OUT's status and results until `stop()`."""

    def __init__(self, out: Path, host: str = "127.0.0.1", port: int = 0, thumbs: ThumbnailSink | None = None,
                 allow_hosts: tuple[str, ...] = ()):
        """`thumbs`: the watcher's ThumbnailSink, which makes a thumbnail when a page first asks.

        `allow_hosts`: names the page may be reached by besides its address and localhost
        (`--http-allow-host`); any other Host header is refused (DNS rebinding).
        """
        handler = type("Handler", (_Handler,), {"feed": ResultsFeed(out, thumbs=thumbs), "status": StatusView(out),
                                                "out": out, "thumbs": thumbs, "assets": _load_assets(),
                                                "hosts": HostCheck(host, allow_hosts)})
        server_class = _V6Server if ":" in host else ThreadingHTTPServer
        try:
            self.httpd = server_class((host, port), handler)
        except OSError as exc:
            raise EdgecxrError(f"cannot serve the status page on {host}:{port}: {exc.strerror or exc}",
                               fix="choose a free port or an address of this machine with --http HOST:PORT") from exc
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                       name="status-page", daemon=True)

    @property
    def url(self) -> str:
        host, port = str(self.httpd.server_address[0]), self.httpd.server_address[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def start(self) -> StatusServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _load_assets() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("edgecxr.web") / "static"
    return {route: ((folder / name).read_bytes(), kind) for route, (name, kind) in STATIC.items()}


class _Handler(BaseHTTPRequestHandler):
    feed: ResultsFeed
    status: StatusView
    out: Path
    thumbs: ThumbnailSink | None
    assets: dict[str, tuple[bytes, str]]
    hosts: HostCheck
    server_version = "edgecxr"
    sys_version = ""

    def do_GET(self) -> None:
        if not self.hosts.allows(self.headers.get("Host")):
            body = (f"this page does not answer to the name {self.headers.get('Host')!r}: open it by the address "
                    "the watcher prints, or start the watcher with --http-allow-host NAME\n").encode()
            return self._send(HTTPStatus.MISDIRECTED_REQUEST, body, "text/plain; charset=utf-8")
        url = urlsplit(self.path)
        route = url.path
        if route in self.assets:
            body, kind = self.assets[route]
            return self._send(HTTPStatus.OK, body, kind, cache="no-cache")
        if route == "/api/status":
            return self._json({**self.status.snapshot(), "poll_s": POLL_SECONDS})
        if route == "/api/results":
            return self._results(parse_qs(url.query))
        if route == "/metrics":  # Prometheus scrapes status.json's figures (docs/monitoring.md)
            return self._send(HTTPStatus.OK, render_metrics(read_status(self.out)).encode(), METRICS_TYPE)
        folder, _, name = route.strip("/").partition("/")
        picture = self._media(folder, name)
        if picture is None:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
        self._send(HTTPStatus.OK, picture, "image/png", cache="max-age=86400, immutable")  # named by content

    def _media(self, folder: str, name: str) -> bytes | None:
        if folder == THUMBS and self.thumbs is not None and name.endswith(".png") and SHA256.match(name[:-4]):
            return self.thumbs.png(name[:-4])
        path = media_file(self.out, folder, name) if folder in (THUMBS, MAPS) else None
        try:
            return None if path is None else path.read_bytes()
        except OSError:
            return None

    def _results(self, query: dict) -> None:
        try:
            since = max(0, int(query.get("since", ["0"])[0]))
            limit = min(500, max(1, int(query.get("limit", ["200"])[0])))
        except ValueError:
            return self._send(HTTPStatus.BAD_REQUEST, b"since and limit are whole numbers\n", "text/plain")
        records, last = self.feed.since(since, limit)
        self._json({"next": last, "results": records, "media": self.feed.media()})

    def _json(self, payload: dict) -> None:
        self._send(HTTPStatus.OK, json.dumps(payload).encode(), "application/json", cache="no-store")

    def _send(self, code: HTTPStatus, body: bytes, kind: str, cache: str = "no-store") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """Silent: a page polled every two seconds would flood the watcher's log."""
