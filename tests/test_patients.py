from pathlib import Path

import pytest

from edgecxr.core.data.folders import Sample, load_dataset, lowest_numbered_split, stratified_split
from edgecxr.core.data.patients import RULE_NAME, patient_id, patient_number, source_of
from edgecxr.core.errors import DataError


def test_patient_id_from_kermany_names():
    assert patient_id("PNEUMONIA/person78_bacteria_382.jpeg") == "person78"
    assert patient_id("person78_virus_12.jpeg") == "person78"
    assert patient_id("person447_virus_921_1.jpeg") == "person447"
    assert patient_id("NORMAL/IM-0196-0001.jpeg") == "IM-0196"
    assert patient_id("IM-0618-0001-0001.jpeg") == "IM-0618"
    assert patient_id("NORMAL2-IM-0196-0001.jpeg") == "NORMAL2-IM-0196"
    assert patient_id("scan_0001.png") is None and patient_id("IM-.jpeg") is None
    assert patient_number("PNEUMONIA/person78_bacteria_382.jpeg") == 78
    assert patient_number("NORMAL2-IM-0196-0001.jpeg") == 196 and patient_number("scan_0001.png") is None


def test_the_series_an_image_came_from_is_read_off_its_name():
    assert source_of("PNEUMONIA/person78_bacteria_382.jpeg") == "bacteria"
    assert source_of("person447_virus_921_1.jpeg") == "virus"
    assert source_of("NORMAL/IM-0196-0001.jpeg") == "IM"
    assert source_of("NORMAL/NORMAL2-IM-0196-0001.jpeg") == "NORMAL2-IM"
    assert source_of("scan_0001.png") is None and source_of("IM-.jpeg") is None and source_of("a/IMX-1-1.jpeg") is None


def _synthetic() -> list[Sample]:
    """Kermany-shaped names with many images per patient, and a few unnamed files."""
    rels: list[tuple[str, int]] = []
    for p in range(40):
        for k in range(1 + p % 4):
            rels.append((f"NORMAL/{'NORMAL2-' if p % 2 else ''}IM-{p:04d}-{k + 1:04d}.jpeg", 0))
    for p in range(60):
        for k in range(1 + p % 6):
            kind = "virus" if k % 2 else "bacteria"
            rels.append((f"PNEUMONIA/person{p}_{kind}_{1000 + 7 * p + k}.jpeg", 1))
    rels += [(f"NORMAL/other_{i}.png", 0) for i in range(5)]
    return [Sample(Path(r), r, label) for r, label in rels]


def _patients(samples) -> set[str]:
    return {patient_id(s.rel) or s.rel for s in samples}


def test_no_patient_on_both_sides_synthetic():
    samples = _synthetic()
    for seed in range(5):
        train, val = stratified_split(samples, 0.2, seed, 2)
        assert len(train) + len(val) == len(samples)
        assert not _patients(train) & _patients(val)
        for label in (0, 1):  # stratified: each class near its share, on both sides
            n = sum(s.label == label for s in samples)
            n_val = sum(s.label == label for s in val)
            assert 0 < n_val < n and abs(n_val - 0.2 * n) <= 0.05 * n
    first = stratified_split(samples, 0.2, 7, 2)[1]
    assert [s.rel for s in stratified_split(samples, 0.2, 7, 2)[1]] == [s.rel for s in first]
    assert [s.rel for s in stratified_split(samples, 0.2, 8, 2)[1]] != [s.rel for s in first]


def test_carved_split_of_real_names_is_patient_disjoint_and_recorded(mini):
    data = load_dataset(mini, val_fraction=0.25, seed=3)
    assert not _patients(data.train.samples) & _patients(data.val.samples)
    rule = data.val_rule
    assert rule["rule"] == RULE_NAME and rule["files_without_patient_id"] == 0
    assert rule["patients"] == len(_patients(data.train.samples + data.val.samples))


def test_lowest_numbered_split_holds_out_each_series_lowest_patients():
    samples = _synthetic()
    train, val = lowest_numbered_split(samples, 0.2, 2)
    assert len(train) + len(val) == len(samples) and not _patients(train) & _patients(val)
    assert [s.rel for s in lowest_numbered_split(samples, 0.2, 2)[1]] == [s.rel for s in val]  # no seed
    assert not any(s.rel.startswith("NORMAL/other_") for s in val)  # no number: stays in training
    for series in ("IM", "NORMAL2-IM"):  # each series contributes, below all its training patients
        held = [patient_number(s.rel) for s in val if source_of(s.rel) == series]
        kept = [patient_number(s.rel) for s in train if source_of(s.rel) == series]
        assert held and max(held) < min(kept)
    for label in (0, 1):  # near the class's share, never more than a patient over
        n = sum(s.label == label for s in samples)
        assert 0 < sum(s.label == label for s in val) <= 0.2 * n + 6
    persons = {patient_number(s.rel) for s in val if s.label == 1}
    assert persons == set(range(min(persons), max(persons) + 1))  # pneumonia: one block from the lowest


def test_lowest_numbered_split_refuses_names_without_patient_numbers():
    samples = [Sample(Path(r), r, label) for label, cls in enumerate(("NORMAL", "PNEUMONIA"))
               for r in (f"{cls}/scan_{i}.png" for i in range(10))]
    with pytest.raises(DataError, match="class 'NORMAL' has 0 numbered patient") as caught:
        lowest_numbered_split(samples, 0.2, 2, ["NORMAL", "PNEUMONIA"])
    assert "--val-split random" in caught.value.fix


def test_lowest_numbered_split_on_real_names(mini):
    data = load_dataset(mini, val_fraction=0.25, val_split="lowest-numbered")
    numbers = {}
    for side in (data.train, data.val):
        for s in side.samples:
            numbers.setdefault((side.name, source_of(s.rel)), []).append(patient_number(s.rel))
    for series in ("IM", "NORMAL2-IM", "bacteria", "virus"):
        assert max(numbers["val", series]) < min(numbers["train", series])
    with pytest.raises(DataError, match="unknown validation split"):
        load_dataset(mini, val_split="latest")


def test_lowest_numbered_split_is_one_block_per_numbering_when_patients_span_both_series():
    """`person<N>` is one patient in both pneumonia series: the block is cut on the one numbering,
    so no training patient is numbered inside it, whichever series a patient's images are in."""
    rels: list[tuple[str, int]] = []
    for p in range(1, 11):  # low-numbered, bacteria only, many images each
        rels += [(f"PNEUMONIA/person{p}_bacteria_{100 * p + k}.jpeg", 1) for k in range(5)]
    for p in range(11, 61):  # mostly virus, with a bacteria image each
        rels += [(f"PNEUMONIA/person{p}_virus_{100 * p + k}.jpeg", 1) for k in range(3)]
        rels.append((f"PNEUMONIA/person{p}_bacteria_{100 * p + 9}.jpeg", 1))
    rels.append(("NORMAL/IM-0005-0001.jpeg", 0))  # a numbering of one patient: never all of it
    rels += [(f"NORMAL/NORMAL2-IM-{p:04d}-0001.jpeg", 0) for p in range(100, 130)]
    samples = [Sample(Path(r), r, label) for r, label in rels]
    train, val = lowest_numbered_split(samples, 0.2, 2)
    held = {patient_number(s.rel) for s in val if s.label == 1}
    kept = {patient_number(s.rel) for s in train if s.label == 1}
    assert held == set(range(1, max(held) + 1)) and max(held) < min(kept)
    assert sum(s.label == 1 for s in val) <= 0.2 * sum(s.label == 1 for s in samples)
    assert "NORMAL/IM-0005-0001.jpeg" in {s.rel for s in train}
    assert {patient_number(s.rel) for s in val if s.label == 0} == set(range(100, 106))
