"""One results contract (core/results.py) for every reader: the SR and the page name the same positive
class and word the same decision rule, for today's result lines and for lines written before the rule
existed; and the append-only JSONL files (results.jsonl, each PACS's sent.jsonl) share one torn-tail repair."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecxr.core.decision import DecisionRule
from edgecxr.core.jsonl import append_durably, cut_torn_tail, iter_lines
from edgecxr.core.results import RESULTS, STATUS, positive_class, read_results, rule_text
from edgecxr.dicomnet.finding import finding_from_record, plain
from edgecxr.web.feed import ResultsFeed, StatusView, decision_text, public_record
from tests.tools import require_module

MANIFEST = json.loads((Path(__file__).parents[1] / "edgecxr" / "models" / "reference" / "bundle.json").read_text())
# A line from before the decision rule: probabilities and label only. Its classes are in the order
# where the last one is not the positive class, where the SR (names[-1]) and the page used to disagree.
OLDER_LINE = {"path": "old.dcm", "status": "ok", "label": "PNEUMONIA", "sha256": "",
              "probabilities": {"PNEUMONIA": 0.8, "NORMAL": 0.2}}
OLDER_BUNDLE = {"class_names": ["PNEUMONIA", "NORMAL"], "decision": {"rule": "argmax"}}
THRESHOLD_BUNDLE = {**MANIFEST, "decision": {"rule": "threshold", "class": "PNEUMONIA", "threshold": 0.3125,
                                             "uncertain": [0.2, 0.45]}}  # exported before descriptions


def page_rule(tmp_path: Path, manifest: dict) -> str | None:
    """The rule the page shows beside a line without one: status.json's, as the watcher writes it."""
    status = {"state": "running", "updated": "2026-01-01T00:00:00+00:00",
              "decision": DecisionRule.from_manifest(manifest).describe()}
    (tmp_path / STATUS).write_text(json.dumps(status))
    return StatusView(tmp_path).snapshot()["decision_rule"]


@pytest.mark.parametrize("manifest", [OLDER_BUNDLE, MANIFEST, THRESHOLD_BUNDLE],
                         ids=["older", "reference", "threshold"])
def test_sr_and_page_agree_on_an_older_line(manifest, tmp_path):
    finding = finding_from_record(OLDER_LINE, manifest)
    shown = public_record(1, OLDER_LINE)
    assert finding.positive_class == shown["positive_class"] == "PNEUMONIA"  # names[-1] would say NORMAL
    assert finding.p_positive == shown["p_positive"] == 0.8
    assert shown["decision"] is None  # the page falls back to the bundle's rule, as the SR does
    assert finding.decision == plain(page_rule(tmp_path, manifest))


def test_sr_and_page_agree_on_a_current_line(tmp_path):
    rule = DecisionRule.from_manifest(THRESHOLD_BUNDLE)
    line = {**OLDER_LINE, "probabilities": {"NORMAL": 0.4, "PNEUMONIA": 0.6}}
    line.update(rule.result_fields(np.array([[0.4, 0.6]])))
    finding, shown = finding_from_record(line, MANIFEST), public_record(1, line)
    assert (finding.positive_class, finding.p_positive, finding.label) == ("PNEUMONIA", 0.6, "PNEUMONIA")
    assert (shown["positive_class"], shown["p_positive"], shown["label"]) == ("PNEUMONIA", 0.6, "PNEUMONIA")
    assert finding.decision == plain(shown["decision"]) == plain(page_rule(tmp_path, THRESHOLD_BUNDLE))
    assert shown["decision"] == "P(PNEUMONIA) ≥ 0.312; uncertain if 0.20 ≤ P(PNEUMONIA) < 0.45"


def test_the_rule_is_worded_once():
    """A bundle's rule, status.json's rule from an older watcher (the manifest's dict) and the rule a result
    line carries are the same words."""
    described = DecisionRule.from_manifest(THRESHOLD_BUNDLE).describe()
    assert decision_text(THRESHOLD_BUNDLE["decision"]) == described
    assert DecisionRule.from_manifest(MANIFEST).describe() == rule_text("PNEUMONIA", 2) \
        == "argmax (P(PNEUMONIA) > 0.500)"
    assert positive_class({"probabilities": {"A": 0.1, "B": 0.9}}) == "B"  # no PNEUMONIA: the last class


def test_an_older_lines_sr_codes_the_positive_class(tmp_path):
    """The SR built from an older line codes Pneumonia present with P = 0.8 (it coded NORMAL before)."""
    pydicom, hd = require_module("pydicom"), require_module("highdicom")
    from edgecxr.dicomnet.sr import Algorithm, build_sr

    samples = sorted((Path(__file__).parents[1] / "edgecxr" / "samples" / "chest-xrays").glob("*.dcm"))
    source = pydicom.dcmread(samples[0], stop_before_pixels=True)
    line = {**OLDER_LINE, "bundle": MANIFEST["name"], "bundle_checksum": MANIFEST["checksum"],
            "backend": "onnxruntime", "precision": "int8"}
    sr = build_sr(source, finding_from_record(line, OLDER_BUNDLE), Algorithm.from_record(line))
    group = hd.sr.ComprehensiveSR.from_dataset(sr).content.get_image_measurement_groups()[0]
    (evaluation,) = group.get_qualitative_evaluations()
    assert (evaluation.name.value, evaluation.value.meaning) == ("233604007", "Present")
    assert group.get_measurements()[0].value == pytest.approx(0.8)


def test_torn_tails_are_cut_alike(tmp_path):
    """An unterminated last line, a last line that is not JSON (also not UTF-8) and a torn line longer than
    the tail block are cut; whole lines stay; readers skip what is torn meanwhile."""
    good = b'{"path":"a.png","status":"ok"}\n'
    for torn in (b'{"path":"b.png","sta', b"\x00\x00\x00\n", b"\xff\xfe{]\n", b'{"path":"' + b"x" * 200_000):
        path = tmp_path / RESULTS
        path.write_bytes(good * 3 + torn)
        assert [r["path"] for r in read_results(tmp_path)] == ["a.png"] * 3
        assert cut_torn_tail(path) == len(torn)
        assert path.read_bytes() == good * 3
    assert cut_torn_tail(tmp_path / "missing.jsonl") == 0


def test_appends_after_a_cut_start_on_a_clean_line(tmp_path):
    path = tmp_path / "sent.jsonl"
    path.write_bytes(b'{"sop_instance_uid":"1.2"}\n{"sop_instance_uid":"1.')
    cut_torn_tail(path)
    append_durably(path, b'{"sop_instance_uid":"1.3"}\n')
    assert [line["sop_instance_uid"] for line in iter_lines(path)] == ["1.2", "1.3"]


def test_the_page_feed_skips_a_torn_line_until_it_is_whole(tmp_path):
    path = tmp_path / RESULTS
    path.write_bytes(json.dumps(OLDER_LINE).encode() + b"\n" + b'{"path": "half')
    feed = ResultsFeed(tmp_path)
    records, last = feed.since(0)
    assert last == 1 and records[0]["positive_class"] == "PNEUMONIA"
