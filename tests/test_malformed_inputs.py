"""No input can stop the watcher: a live `edgecxr watch` takes every malformed file in the corpus.

The corpus (tests/malformed.py) is made in the test from a real radiograph with pydicom and
Pillow. Each file must get exactly one line with the expected code, the process must stay up,
and a good image dropped afterwards must still be classified.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from edgecxr.core.bundle import load_bundle
from edgecxr.core.results import read_results
from edgecxr.runtime.default_bundle import resolve_bundle
from edgecxr.runtime.prepare import INTERNAL_ERROR, InputLimits, prepare
from tests.malformed import build_corpus, dicom_corpus, raster_corpus
from tests.tools import require_module, wait_for

require_module("pydicom")


@pytest.fixture(scope="module")
def spec():
    return load_bundle(resolve_bundle(None)).spec




def test_every_malformed_input_gets_its_reason_at_the_boundary(tmp_path, spec, mini_test_images):
    expected = {**dicom_corpus(tmp_path, mini_test_images[0]), **raster_corpus(tmp_path, mini_test_images[0])}
    got = {}
    for rel in expected:
        item = prepare(tmp_path / rel, spec, InputLimits())
        got[rel] = item.error.code if item.error else "ok"
        if item.error is None:
            assert item.tensor.shape == spec.input_shape and np.isfinite(item.tensor).all()
        else:
            assert str(item.error).startswith(str(tmp_path / rel)) and "Fix:" in str(item.error)
    assert got == expected


def test_an_unexpected_exception_is_refused_as_internal_error_with_its_traceback(tmp_path, mini_test_images):
    def broken_preprocessing(pixels):
        return pixels.reshape(3, 5, 7)  # a bug: fails on every real image

    item = prepare(mini_test_images[0], broken_preprocessing, InputLimits())
    assert item.error.code == INTERNAL_ERROR and item.tensor is None
    assert "ValueError" in str(item.error) and "reshape" in item.traceback


def test_pillow_limit_follows_max_pixels(tmp_path, spec):
    big = tmp_path / "96-megapixels.png"  # over Pillow's own 89.5 MP warning limit, under our 100 MP default
    Image.new("L", (12000, 8000), 40).save(big, compress_level=1)
    assert prepare(big, spec, InputLimits()).error is None
    refused = prepare(big, spec, InputLimits(max_pixels=50_000_000))
    assert refused.error.code == "too_large" and "96000000 pixels" in str(refused.error)


def test_live_watcher_survives_the_whole_corpus(tmp_path, mini_test_images):
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    inbox.mkdir()
    expected = build_corpus(staging, mini_test_images[0])
    os.mkfifo(staging / "scanner.fifo")  # a read would block forever: refused unread
    expected["scanner.fifo"] = "not_a_file"
    cmd = [sys.executable, "-m", "edgecxr", "watch", str(inbox), "--out", str(out), "--settle-seconds", "0.2",
           "--rescan-seconds", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert wait_for(lambda: (out / "status.json").exists(), 60), "the watcher did not start"
        for entry in os.listdir(os.fsencode(staging)):  # bytes: one name is not UTF-8
            os.rename(os.fsencode(staging) + b"/" + entry, os.fsencode(inbox) + b"/" + entry)
        assert wait_for(lambda: len(read_results(out)) >= len(expected), 60), read_results(out)
        assert proc.poll() is None, "the watcher stopped"
        shutil.copyfile(mini_test_images[1], inbox / "good-after.jpeg")
        assert wait_for(lambda: len(read_results(out)) == len(expected) + 1, 30)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    records = read_results(out)
    assert set(Counter(r["path"] for r in records).values()) == {1}
    got = {r["path"]: r["error"]["code"] if r["status"] == "error" else "ok" for r in records}
    assert got == {**expected, "good-after.jpeg": "ok"}
    assert all(r["error"]["message"] for r in records if r["status"] == "error")
    assert "Traceback" not in err
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"
