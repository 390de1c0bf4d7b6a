"""The status page's server and data, over real HTTP on 127.0.0.1 and real files (no browser here;
tests/test_status_page_browser.py drives Chromium)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecxr.core.errors import EdgecxrError
from edgecxr.core.provenance import utc_now
from edgecxr.web.feed import ResultsFeed, StatusView, decision_text, public_record
from edgecxr.web.server import StatusServer, parse_address

SHA = "ab" * 32
OLD_RECORD = {"schema": "edgecxr.result/1", "path": "a.jpeg", "sha256": SHA, "status": "ok", "label": "PNEUMONIA",
              "probabilities": {"NORMAL": 0.2, "PNEUMONIA": 0.8}, "backend": "onnxruntime", "precision": "int8",
              "completed_at": "2026-11-30T06:00:00+00:00",
              "dicom": {"PatientName": "DOE^JANE", "AccessionNumber": "A1", "StudyInstanceUID": "1.2.3"}}


def write_lines(path: Path, records: list[dict], tail: bytes = b"") -> None:
    with open(path, "ab") as handle:
        handle.write(b"".join(json.dumps(r).encode() + b"\n" for r in records) + tail)


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.parametrize(("text", "expected"), [
    ("8080", ("127.0.0.1", 8080, True)), ("127.0.0.1:0", ("127.0.0.1", 0, True)),
    ("localhost:9000", ("localhost", 9000, True)), ("[::1]:8080", ("::1", 8080, True)),
    ("0.0.0.0:8080", ("0.0.0.0", 8080, False)), ("10.1.2.3:80", ("10.1.2.3", 80, False)),
])
def test_address_is_loopback_unless_another_is_given(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "127.0.0.1:http", "1:70000"])
def test_bad_address_says_the_form(text):
    with pytest.raises(EdgecxrError, match="HOST:PORT"):
        parse_address(text)


def test_records_before_and_after_the_decision_fields():
    old = public_record(1, OLD_RECORD)
    assert (old["positive_class"], old["p_positive"], old["decision"]) == ("PNEUMONIA", 0.8, None)
    new = public_record(2, {**OLD_RECORD, "label": "UNCERTAIN", "positive_class": "PNEUMONIA", "p_positive": 0.55,
                            "decision": "P(PNEUMONIA) ≥ 0.700; uncertain if 0.40 ≤ P(PNEUMONIA) < 0.70"})
    assert (new["label"], new["p_positive"], new["decision"]) == ("UNCERTAIN", 0.55, new["decision"])
    refused = public_record(3, {"path": "x.png", "status": "error", "sha256": "",
                                "error": {"code": "corrupt", "message": "x.png: truncated PNG. Fix: re-send it"}})
    assert (refused["status"], refused["error_code"], refused["label"]) == ("refused", "corrupt", None)
    assert (refused["reason"], refused["fix"]) == ("truncated PNG.", "re-send it")  # the row names the file already
    for shown in (old, new, refused):  # no DICOM field, whatever the record carries
        assert "dicom" not in shown and "DOE" not in json.dumps(shown) and "1.2.3" not in json.dumps(shown)


GATE = {"stage": "learned", "code": "unlike_training", "score": 52.7, "threshold": 30.5,
        "reason": "unlike the chest radiographs the model was trained on"}


def test_out_of_scope_lines_show_the_gates_reason_and_nothing_else():
    line = {**OLD_RECORD, "status": "out_of_scope", "gate": {**GATE, "features": [0.1] * 768, "PatientAge": "058Y"}}
    shown = public_record(1, line)  # a label or probabilities on such a line (there should be none) stay hidden
    assert (shown["status"], shown["label"], shown["probabilities"], shown["p_positive"]) == ("out_of_scope", None,
                                                                                            None, None)
    assert shown["gate"] == GATE and shown["reason"] == GATE["reason"] and shown["error_code"] is None
    tags = public_record(2, {"path": "ct.dcm", "status": "out_of_scope", "gate": {
        "stage": "tags", "code": "modality", "reason": "not a chest radiograph: the image is a CT", "score": None,
        "threshold": None}})
    assert tags["gate"]["score"] is None and tags["reason"] == "not a chest radiograph: the image is a CT"
    assert public_record(3, {"path": "x", "status": "out_of_scope"})["reason"].startswith("outside the intended use")
    for record in (shown, tags):
        text = json.dumps(record)
        assert "058Y" not in text and "DOE" not in text and "features" not in text


def test_classified_lines_carry_their_gate_score_and_flags_as_words():
    line = {**OLD_RECORD, "gate": {"score": 11.25, "threshold": 30.5, "stage": 3},
            "flags": [{"code": "age_outside_population", "reason": "patient age 58 years is outside the trained "
                       "population (1-5 years)", "age": "058Y"}, "not a flag", {"code": "x", "reason": 5}]}
    shown = public_record(1, line)
    assert shown["gate"] == {"score": 11.25, "threshold": 30.5}  # a stage that is not text is not shown
    assert shown["flags"] == [{"code": "age_outside_population",
                               "reason": "patient age 58 years is outside the trained population (1-5 years)"}]
    assert public_record(2, OLD_RECORD)["gate"] is None and public_record(2, OLD_RECORD)["flags"] == []
    assert public_record(3, {**OLD_RECORD, "gate": {"score": True, "threshold": "1"}})["gate"] == {
        "score": None, "threshold": None}


@pytest.mark.parametrize(("error", "reason", "fix"), [
    ({"code": "internal_error", "message": "boom\nTraceback (most recent call last):\n  File x"}, "boom.", None),
    ({"code": "unknown"}, "the file could not be read (no reason recorded)", None),
    ({"code": "too_large", "message": "/srv/in/sub/x.png: 90000 x 90000 pixels. Fix: export it smaller"},
     "90000 x 90000 pixels.", "export it smaller"),
    ({"code": "bad", "message": "other/file.png: something"}, "other/file.png: something.", None),
])
def test_an_unreadable_files_message_becomes_cause_and_fix(error, reason, fix):
    shown = public_record(1, {"path": "sub/x.png", "status": "error", "error": error})
    assert (shown["reason"], shown["fix"]) == (reason, fix)


def test_status_view_shows_drift_warnings_only_when_the_watcher_writes_them(tmp_path):
    status = {"state": "running", "updated": utc_now(), "processed": 200, "refused": 0, "out_of_scope": 18}
    view = StatusView(tmp_path)
    (tmp_path / "status.json").write_text(json.dumps(status))
    snapshot = view.snapshot()
    assert snapshot["drift"] is None and snapshot["out_of_scope"] == 18
    drift = {"window": 200, "images": 200, "checks": [{"name": "refusal_rate", "observed": 0.09, "expected": 0.01,
                                                       "p_value": 1e-9, "per_image": [1, 0]}],
             "warnings": ["9% of the last 200 images were not analysed, against 1% on validation images", 7]}
    (tmp_path / "status.json").write_text(json.dumps({**status, "drift": drift, "updated": utc_now() + " "}))
    snapshot = view.snapshot()
    assert snapshot["drift"] == {"window": 200, "images": 200, "warnings": [drift["warnings"][0]], "checks": [
        {"name": "refusal_rate", "observed": 0.09, "expected": 0.01, "p_value": 1e-9}]}
    broken = {"warnings": "not a list", "checks": {"a": 1}}
    (tmp_path / "status.json").write_text(json.dumps({**status, "drift": broken}))
    assert view.snapshot()["drift"]["warnings"] == [] and view.snapshot()["drift"]["checks"] == []


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_text_colours_meet_wcag_aa_contrast():
    """The colours the stylesheet gives text, on the backgrounds it puts them on: at least 4.5:1."""
    import re
    from importlib import resources

    css = (resources.files("edgecxr.web") / "static" / "style.css").read_text()
    var = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", css))
    pairs = [(var[t], b) for t in ("ink", "muted", "ok", "warn", "bad", "focus") for b in ("#ffffff", var["bg"])]
    pairs += [(var[t], b) for t in ("ink", "muted", "warn") for b in ("#fffaf0", "#fff6e5", "#eef3f9")]
    pairs += [(var[t], "#fdf4f3") for t in ("ink", "muted", "bad")] + [("#ffffff", "#1f4e79"), ("#ffffff", "#000000")]
    for text, background in pairs:
        assert background in css or background in ("#ffffff", "#000000"), background
        light, dark = sorted((luminance(text), luminance(background)), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 4.5, (text, background)


def test_rule_from_this_and_older_watchers():
    assert decision_text("argmax (P(PNEUMONIA) > 0.500)") == "argmax (P(PNEUMONIA) > 0.500)"
    assert decision_text({"rule": "threshold", "class": "PNEUMONIA", "threshold": 0.3}) == "P(PNEUMONIA) ≥ 0.300"
    assert decision_text({"rule": "argmax"}) == "argmax" and decision_text(None) is None


def test_feed_reads_only_new_complete_lines_and_restarts_on_a_new_file(tmp_path):
    feed = ResultsFeed(tmp_path)
    assert feed.since(0) == ([], 0)
    results = tmp_path / "results.jsonl"
    write_lines(results, [OLD_RECORD, {**OLD_RECORD, "path": "b.jpeg"}], tail=b'{"path": "c.jp')  # torn tail
    records, last = feed.since(0)
    assert [r["path"] for r in records] == ["a.jpeg", "b.jpeg"] and last == 2
    write_lines(results, [{**OLD_RECORD, "path": "d.jpeg"}])
    records, last = feed.since(2)
    assert records == [] and last == 3  # "c.jp" + d's line make one unparsable line: counted, not shown
    write_lines(results, [{**OLD_RECORD, "path": "e.jpeg"}])
    assert [r["path"] for r in feed.since(2)[0]] == ["e.jpeg"]
    results.unlink()
    write_lines(results, [{**OLD_RECORD, "path": "f.jpeg"}])  # a new file (another inode): start over
    records, last = feed.since(4)
    assert [r["path"] for r in records] == ["f.jpeg"] and last == 1


def test_server_serves_status_results_and_only_content_named_media(tmp_path):
    write_lines(tmp_path / "results.jsonl", [OLD_RECORD])
    (tmp_path / "status.json").write_text(json.dumps({
        "state": "running", "updated": utc_now(), "processed": 1, "refused": 0, "backend": "onnxruntime", "pid": 1,
        "decision": "P(PNEUMONIA) ≥ 0.300; uncertain if 0.20 ≤ P(PNEUMONIA) < 0.45"}))
    (tmp_path / "thumbs").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "thumbs" / f"{SHA}.png")
    (tmp_path / "secret.png").write_bytes(b"not for the page")
    server = StatusServer(tmp_path, "127.0.0.1", 0).start()
    try:
        code, headers, body = get(server.url)
        assert code == 200 and b"not a medical device" in body.lower()
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        status = json.loads(get(server.url + "api/status")[2])
        assert (status["state"], status["stale"], status["processed"]) == ("running", False, 1)
        assert status["disk_free_bytes"] > 0 and "pid" not in status
        assert status["decision_rule"] == "P(PNEUMONIA) ≥ 0.300; uncertain if 0.20 ≤ P(PNEUMONIA) < 0.45"
        page = json.loads(get(server.url + "api/results?since=0")[2])
        assert page["next"] == 1 and page["results"][0]["thumb"] == f"/thumbs/{SHA}.png"
        assert page["media"] == {"1": {"thumb": f"/thumbs/{SHA}.png", "map": None}}
        code, headers, body = get(server.url + f"thumbs/{SHA}.png")
        assert code == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
        for bad in ("thumbs/../secret.png", "thumbs/%2e%2e/secret.png", "secret.png", f"maps/{SHA}.png",
                    "static/../feed.py", "api/results?since=x"):
            assert get(server.url + bad)[0] in (400, 404), bad
    finally:
        server.stop()


def test_a_busy_port_is_a_clear_error(tmp_path):
    first = StatusServer(tmp_path, "127.0.0.1", 0)
    try:
        with pytest.raises(EdgecxrError, match="cannot serve the status page"):
            StatusServer(tmp_path, "127.0.0.1", first.httpd.server_address[1])
    finally:
        first.httpd.server_close()


def test_thumbnail_is_the_model_input_kept_small_and_encoded_when_asked(tmp_path, mini_test_images):
    from edgecxr.core.bundle import load_bundle
    from edgecxr.runtime.default_bundle import resolve_bundle
    from edgecxr.runtime.prepare import InputLimits, prepare
    from edgecxr.web.thumbs import SIDE, ThumbnailSink

    spec = load_bundle(resolve_bundle(None)).spec
    item = prepare(mini_test_images[0], spec, InputLimits())
    sink = ThumbnailSink(tmp_path, spec, keep=2)
    sink.accept({"status": "ok", "sha256": item.sha256}, item, mini_test_images[0])
    sink.accept({"status": "error", "sha256": "cd" * 32}, item, mini_test_images[0])
    assert sink.has(item.sha256) and not sink.has("cd" * 32)
    assert list((tmp_path / "thumbs").iterdir()) == []  # no PNG until a page asks
    data = sink.png(item.sha256)
    assert (tmp_path / "thumbs" / f"{item.sha256}.png").read_bytes() == data
    with Image.open(tmp_path / "thumbs" / f"{item.sha256}.png") as thumb:
        assert thumb.mode == "L" and max(thumb.size) == SIDE
        seen = spec.to_image(item.tensor).convert("L").resize(thumb.size, Image.Resampling.BOX)
        difference = np.abs(np.asarray(thumb, dtype=float) - np.asarray(seen, dtype=float))
        assert difference.mean() < 2.0  # the model input, shrunk: not the original file, not a blank
    assert sink.png("ef" * 32) is None
    for sha in ("01" * 32, "02" * 32):  # only the latest `keep` copies stay in memory
        sink.accept({"status": "ok", "sha256": sha}, item, mini_test_images[0])
    assert not sink.has(item.sha256) and sink.png(item.sha256) == data  # what was shown stays on disk
    assert sink.png("01" * 32) is not None and sink.has("02" * 32)
