"""The documentation site shows its diagrams with no network: mermaid and fonts come from the site itself."""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.tools import require_module, require_tool

REPO = Path(__file__).resolve().parent.parent
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"  # every other host unresolvable
EXTERNAL = re.compile(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(https?://[^"]+)"')  # what a page loads


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_module("mkdocs")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=180, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def offline_dom(url: str) -> str:
    chromium = require_tool("chromium")
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", OFFLINE,
                             "--virtual-time-budget=15000", "--dump-dom", url], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_pages_load_no_script_style_or_font_from_another_host(site):
    out, _ = site
    for page in out.rglob("*.html"):
        assert not EXTERNAL.findall(page.read_text()), page


@pytest.mark.parametrize("page", ["", "watch/"])
def test_mermaid_diagrams_render_offline(site, page):
    out, url = site
    source = (out / page / "index.html").read_text()
    blocks = source.count('<pre class="mermaid">')
    assert blocks >= 1
    dom = offline_dom(f"{url}/{page}")
    # Material swaps each rendered diagram's source block for a <div class="mermaid"> holding the SVG
    assert dom.count('<div class="mermaid">') == blocks
    assert "flowchart" not in dom
