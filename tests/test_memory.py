"""The watcher's memory over months: a start-up run that reaches the engine's working set before the
first file, and freed pages given back after bursts (edgecxr/runtime/memory.py)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from edgecxr.core.bundle import load_bundle
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.results import read_results
from edgecxr.runtime.classifier import Classifier
from edgecxr.runtime.default_bundle import resolve_bundle
from edgecxr.runtime.memory import Trimmer, warm_up
from edgecxr.runtime.selection import choose
from edgecxr.runtime.watcher import Watcher, WatchOptions


def test_a_burst_soon_after_a_trim_is_trimmed_later_not_skipped():
    trimmer = Trimmer(every_s=0.3)
    assert trimmer.available  # glibc here
    assert trimmer.after_burst() is True
    assert trimmer.after_burst() is False and trimmer.tick() is False  # too soon: waiting, not dropped
    time.sleep(0.35)
    assert trimmer.tick() is True and trimmer.tick() is False  # trimmed once, then nothing is due


def test_the_start_up_run_leaves_no_trace_and_a_failing_engine_stops_the_watcher_with_its_name(tmp_path):
    bundle = load_bundle(resolve_bundle(None))
    classifier = Classifier(bundle, choose(bundle, backend="onnxruntime", precision="fp32"))
    try:
        assert warm_up(classifier, 8) > 0
        inbox, out = tmp_path / "in", tmp_path / "out"
        inbox.mkdir()
        logged: list[str] = []
        watcher, stop = Watcher(classifier, WatchOptions(inbox=inbox, out=out, rescan_seconds=0.2),
                                log=logged.append), threading.Event()
        thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not any("engine ready" in line for line in logged) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(10)
        assert any("engine ready" in line for line in logged)
        assert read_results(out) == [] and watcher.counters.processed == 0  # the zeros reached no line or count
    finally:
        classifier.close()
    failing = Watcher(classifier, WatchOptions(inbox=tmp_path / "in", out=tmp_path / "out2"), log=lambda _: None)
    with pytest.raises(EdgecxrError) as raised:  # the engine is closed: its start-up run fails
        failing.run(threading.Event())
    assert classifier.artifact.name in str(raised.value) and "start-up run" in str(raised.value)
    assert json.loads((tmp_path / "out2" / "status.json").read_text())["state"] == "stopped"  # the page says so
