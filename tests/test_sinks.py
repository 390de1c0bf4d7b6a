"""Result sinks see every new line after it is durable, with the input still in the inbox,
and a failing sink never stops the watcher."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from edgecxr.core.bundle import load_bundle
from edgecxr.core.results import read_results
from edgecxr.runtime.classifier import Classifier
from edgecxr.runtime.default_bundle import resolve_bundle
from edgecxr.runtime.selection import choose
from edgecxr.runtime.watcher import Watcher, WatchOptions
from tests.tools import require_module

require_module("onnxruntime")


class Recorder:
    def __init__(self, out: Path):
        self.out = out
        self.seen: list[tuple[str, bool, bool, bool]] = []
        self.closed = 0

    def accept(self, record, item, source):
        on_disk = {r["path"] for r in read_results(self.out)}
        self.seen.append((record["path"], record["path"] in on_disk, source.exists(), item is not None))

    def close(self):
        self.closed += 1


class Broken:
    def accept(self, record, item, source):
        raise RuntimeError("destination unreachable")

    def close(self):
        raise RuntimeError("cannot persist")


def test_sinks_get_each_durable_record_before_the_move(tmp_path, mini_test_images):
    from edgecxr.backends import RunnerOptions

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for path in mini_test_images[:3]:
        shutil.copyfile(path, inbox / path.name)
    (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    bundle = load_bundle(resolve_bundle(None))
    classifier = Classifier(bundle, choose(bundle, "onnxruntime", "fp32"), RunnerOptions(threads=1))
    out = tmp_path / "out"
    recorder, logs = Recorder(out), []
    options = WatchOptions(inbox=inbox, out=out, once=True, settle_seconds=0, archive=tmp_path / "done",
                           quarantine=tmp_path / "refused")
    watcher = Watcher(classifier, options, log=logs.append, sinks=[Broken(), recorder])
    counters = watcher.run(threading.Event())
    classifier.close()
    assert (counters.processed, counters.refused) == (3, 1)
    assert sorted(p for p, *_ in recorder.seen) == sorted([p.name for p in mini_test_images[:3]] + ["broken.png"])
    assert all(durable and present and has_item for _, durable, present, has_item in recorder.seen)
    assert recorder.closed == 1
    assert sum("result sink Broken failed" in m for m in logs) == 5  # 4 accepts + close, each logged
    assert not any(inbox.iterdir())  # every input still archived or quarantined
