"""The screenshot in docs/status-page.md: the bundled samples (PNG, JPEG, DICOM), one truncated file
and two images outside the intended use (a blank grey frame, pydicom's CT test file) dropped into a
real `edgecxr watch --http`, shown in headless Chromium.

    .venv/bin/python -m tests.make_docs_screenshot docs/status-page.png

A watcher with the intended-use gate (issue 20) refuses the two itself and the page is shot live.
A build whose watcher still classifies them gets their result lines rewritten in the gate's
contract format (`"status": "out_of_scope"` with `gate.reason`) and, when the watcher wrote no
drift watch, a `drift` block in status.json; the page is then served from that folder by the
same StatusServer, and the script says so, so a staged picture never passes for a live one.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from edgecxr.samples import SAMPLE_DIR
from tests.browser import health, open_chromium, rows, start_watch, wait_until

WINDOW = (1280, 1180)
OUTSIDE = {  # file -> the refusal the gate gives it (stage, code, reason), used only when the build has no gate
    "failed-exposure.png": ("pixels", "constant", "blank frame: the image has no content (a failed exposure?)"),
    "CT_small.dcm": ("tags", "modality", "not a chest radiograph: the image is a CT"),
}


def drop_inputs(inbox: Path, driver, samples: list[Path]) -> None:
    for first in (False, True):  # NORMAL last, so both labels show near the top of the page
        for path in samples:
            if path.name.startswith("NORMAL") == first:
                shutil.copyfile(path, inbox / path.name)
        done = sum(p.name.startswith("NORMAL") <= first for p in samples)
        wait_until(lambda n=done: len(rows(driver)) == n, 60, "the samples' rows")
    cut = samples[0].read_bytes()
    (inbox / "IM-0117-0001.jpeg").write_bytes(cut[: len(cut) // 3])  # a transfer cut short
    from pydicom.data import get_testdata_file

    Image.new("L", (1024, 1024), 128).save(inbox / "failed-exposure.png")
    shutil.copyfile(get_testdata_file("CT_small.dcm"), inbox / "CT_small.dcm")
    wait_until(lambda: len(rows(driver)) == len(samples) + 3, 30, "the refusals")
    wait_until(lambda: all(r["thumb"] for r in rows(driver) if r["status"] == "ok"), 20, "thumbnails")
    wait_until(lambda: "0 ready" in driver.find_element("id", "h-backlog").text, 20, "an empty backlog")


def stage_gate(out: Path) -> list[str]:
    """Rewrite the lines of OUTSIDE's files in the gate's contract format, add a drift block; return what was staged."""
    results = out / "results.jsonl"
    lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    staged = []
    for line in lines:
        refusal = OUTSIDE.get(line["path"])
        if refusal and line["status"] != "out_of_scope":
            stage, code, reason = refusal
            for key in ("label", "probabilities", "p_positive", "positive_class", "decision", "error", "timings_ms"):
                line.pop(key, None)
            line.update(status="out_of_scope", gate={"stage": stage, "code": code, "reason": reason,
                                                     "score": None, "threshold": None})
            staged.append(line["path"])
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    status = json.loads((out / "status.json").read_text())
    refused = sum(line["status"] == "out_of_scope" for line in lines)
    if "drift" not in status:
        staged.append("drift")
        status["drift"] = {"window": 200, "images": len(lines), "checks": [], "warnings": [
            f"{refused} of the last {len(lines)} images were outside the intended use, against 1% of the "
            "validation images: check what the scanner is sending"]}
    status.update(state="running", updated=datetime.now(timezone.utc).isoformat(), heartbeat_s=3600,
                  out_of_scope=refused, processed=sum(line["status"] == "ok" for line in lines))
    (out / "status.json").write_text(json.dumps(status))
    return staged


def main(target: Path) -> None:
    root = Path(tempfile.gettempdir()) / "xray"  # a short, fixed path for the refusal message shown
    shutil.rmtree(root, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        inbox, out = root / "inbox", root / "results"
        inbox.mkdir(parents=True)
        proc, url = start_watch(inbox, out)
        driver = open_chromium(Path(tmp) / "profile")
        server = None
        try:
            driver.set_window_size(*WINDOW)
            driver.get(url)
            wait_until(lambda: health(driver)[0] == "alive", 30, "alive")
            samples = sorted(p for p in SAMPLE_DIR.iterdir() if p.is_file() and p.name != "README.md")
            drop_inputs(inbox, driver, samples)
            live = {r["path"]: r["status"] for r in rows(driver)}
            if any(live[name] != "out_of_scope" for name in OUTSIDE):
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                print(f"this build's watcher has no intended-use gate ({live}): staged {stage_gate(out)}")
                from edgecxr.web.server import StatusServer

                server = StatusServer(out, "127.0.0.1", 0).start()
                driver.get(server.url)
                wait_until(lambda: len(rows(driver)) == len(samples) + 3 and health(driver)[0] == "alive", 20, "rows")
                wait_until(lambda: all(r["thumb"] for r in rows(driver)[:12] if r["status"] == "ok"), 20,
                           "the thumbnails in view")  # those below were never asked for, so never written
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(target))
        finally:
            driver.quit()
            if server is not None:
                server.stop()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            shutil.rmtree(root, ignore_errors=True)
    print(f"wrote {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/status-page.png"))
