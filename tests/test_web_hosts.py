"""The status page answers only to its own names: a web page elsewhere cannot read it by DNS rebinding."""

from __future__ import annotations

import http.client
import json
from datetime import datetime, timezone

from edgecxr.web.server import StatusServer


def _get(port: int, path: str, host: str | None, bind: str = "127.0.0.1") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(bind, port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _status(folder):
    (folder / "status.json").write_text(json.dumps({"state": "running", "updated": datetime.now(timezone.utc)
                                                    .isoformat(), "processed": 3, "refused": 0, "pid": 1}))


def test_a_foreign_host_header_is_refused_and_own_names_are_answered(tmp_path):
    _status(tmp_path)
    server = StatusServer(tmp_path, "127.0.0.1", 0, allow_hosts=("xray-room.local",)).start()
    port = server.httpd.server_address[1]
    try:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}",
                     f"xray-room.local:{port}", "Xray-Room.Local."):
            code, body = _get(port, "/api/status", host)
            assert code == 200 and json.loads(body)["processed"] == 3, host
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.attacker.example:{port}",
                     f"192.168.1.20:{port}", "", None):
            for path in ("/", "/api/status", "/api/results?since=0", "/metrics"):
                code, body = _get(port, path, host)
                assert code == 421, (host, path, code)
                assert b"processed" not in body and b"--http-allow-host" in body
    finally:
        server.stop()


def test_on_every_interface_an_ip_address_is_answered_but_a_name_is_not(tmp_path):
    _status(tmp_path)
    server = StatusServer(tmp_path, "0.0.0.0", 0).start()
    port = server.httpd.server_address[1]
    try:
        assert _get(port, "/api/status", f"192.168.1.20:{port}")[0] == 200  # the box's address, typed by a user
        assert _get(port, "/api/status", f"127.0.0.1:{port}")[0] == 200
        assert _get(port, "/api/status", f"rebind.attacker.example:{port}")[0] == 421
    finally:
        server.stop()


def test_watch_http_allow_host_names_a_further_name(tmp_path):
    from urllib.parse import urlsplit

    from tests.browser import start_watch

    inbox = tmp_path / "in"
    inbox.mkdir()
    proc, url = start_watch(inbox, tmp_path / "out", "--http-allow-host", "xray-room.local")
    try:
        port = urlsplit(url).port
        assert _get(port, "/api/status", f"xray-room.local:{port}")[0] == 200
        assert _get(port, "/api/status", f"127.0.0.1:{port}")[0] == 200
        assert _get(port, "/api/status", f"attacker.example:{port}")[0] == 421
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
