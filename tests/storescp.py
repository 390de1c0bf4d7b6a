"""dcmtk's storescp as a real peer on a free loopback port, with its debug log kept for assertions."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.orthanc import free_port
from tests.tools import require_tool


class StoreSCP:
    """`storescp -d` writing to `folder`; `extra` adds options (e.g. the +tls ones) before the port."""

    def __init__(self, folder: Path, *extra: str, aet: str = "STORESCP"):
        self.binary = require_tool("storescp")
        self.folder, self.extra, self.aet = folder, extra, aet
        self.port = free_port()
        self.log_path = folder / "storescp.log"
        self.process: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def destination(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> StoreSCP:
        log = open(self.log_path, "ab")  # noqa: SIM115 (storescp writes to it until stopped)
        self.process = subprocess.Popen([self.binary, "-d", "-aet", self.aet, "-od", str(self.folder), *self.extra,
                                         str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"storescp exited: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("storescp did not listen within the deadline")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def received(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file() and p.name != self.log_path.name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
