"""The screenshot in docs/status-page.md: the bundled samples (PNG, JPEG, DICOM) and one truncated
file dropped into a real `edgecxr watch --http`, shown in headless Chromium.

    .venv/bin/python -m tests.make_docs_screenshot docs/status-page.png
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from pathlib import Path

from edgecxr.samples import SAMPLE_DIR
from tests.browser import health, open_chromium, rows, start_watch, wait_until

WINDOW = (1280, 1180)


def main(target: Path) -> None:
    root = Path(tempfile.gettempdir()) / "xray"  # a short, fixed path for the refusal message shown
    shutil.rmtree(root, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        inbox, out = root / "inbox", root / "results"
        inbox.mkdir(parents=True)
        proc, url = start_watch(inbox, out)
        driver = open_chromium(Path(tmp) / "profile")
        try:
            driver.set_window_size(*WINDOW)
            driver.get(url)
            wait_until(lambda: health(driver)[0] == "alive", 30, "alive")
            samples = sorted(p for p in SAMPLE_DIR.iterdir() if p.is_file() and p.name != "README.md")
            for first in (False, True):  # NORMAL last, so both labels show near the top of the page
                for path in samples:
                    if path.name.startswith("NORMAL") == first:
                        shutil.copyfile(path, inbox / path.name)
                done = sum(p.name.startswith("NORMAL") <= first for p in samples)
                wait_until(lambda n=done: len(rows(driver)) == n, 60, "the samples' rows")
            cut = samples[0].read_bytes()
            (inbox / "IM-0117-0001.jpeg").write_bytes(cut[: len(cut) // 3])  # a transfer cut short
            wait_until(lambda: len(rows(driver)) == len(samples) + 1, 30, "the refusal")
            wait_until(lambda: all(r["thumb"] for r in rows(driver) if r["status"] == "ok"), 20, "thumbnails")
            wait_until(lambda: "0 ready" in driver.find_element("id", "h-backlog").text, 20, "an empty backlog")
            driver.save_screenshot(str(target))
        finally:
            driver.quit()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            shutil.rmtree(root, ignore_errors=True)
    print(f"wrote {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/status-page.png"))
