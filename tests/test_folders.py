import pytest

from edgecxr.core.data.folders import hash_and_check, load_dataset, scan_split
from edgecxr.core.errors import DataError
from tests.helpers import copy_tree


def test_classes_and_carved_validation_split(mini):
    data = load_dataset(mini, val_fraction=0.25, seed=3)
    assert data.classes == ["NORMAL", "PNEUMONIA"]
    assert data.val_source == "carved"
    assert data.val.counts() == {"NORMAL": 3, "PNEUMONIA": 3}
    assert len(data.train.samples) == 18
    assert not {s.rel for s in data.train.samples} & {s.rel for s in data.val.samples}
    again = load_dataset(mini, val_fraction=0.25, seed=3)
    assert [s.rel for s in again.val.samples] == [s.rel for s in data.val.samples]
    other = load_dataset(mini, val_fraction=0.25, seed=4)
    assert [s.rel for s in other.val.samples] != [s.rel for s in data.val.samples]


def test_small_val_folder_is_ignored_and_said(mini, tmp_path):
    root = copy_tree(mini, tmp_path / "d")
    (root / "val" / "NORMAL").mkdir(parents=True)
    (root / "val" / "PNEUMONIA").mkdir(parents=True)
    for cls in ("NORMAL", "PNEUMONIA"):
        src = next((root / "test" / cls).iterdir())
        (root / "val" / cls / src.name).write_bytes(src.read_bytes())
    data = load_dataset(root)
    assert data.val_source == "carved"
    assert "fewer than 50" in data.val_note


def test_class_mismatch_names_both_lists(mini, tmp_path):
    root = copy_tree(mini, tmp_path / "d")
    (root / "test" / "NORMAL").rename(root / "test" / "HEALTHY")
    with pytest.raises(DataError) as info:
        load_dataset(root)
    message = str(info.value)
    assert "['NORMAL', 'PNEUMONIA']" in message and "['HEALTHY', 'PNEUMONIA']" in message


def test_empty_class_folder(mini, tmp_path):
    root = copy_tree(mini, tmp_path / "d")
    for f in (root / "train" / "NORMAL").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="no PNG, JPEG or DICOM"):
        load_dataset(root)


def test_fingerprint_is_content_and_relative_path(mini, tmp_path):
    a = scan_split(mini / "test")
    hash_and_check(a.samples)
    b = scan_split(copy_tree(mini / "test", tmp_path / "elsewhere"))
    hash_and_check(b.samples)
    assert a.fingerprint() == b.fingerprint()
    victim = next((tmp_path / "elsewhere" / "NORMAL").iterdir())
    victim.write_bytes(victim.read_bytes() + b"\0")
    c = scan_split(tmp_path / "elsewhere")
    hash_and_check(c.samples)
    assert c.fingerprint() != a.fingerprint()


def test_bad_images_listed_or_skipped(mini, tmp_path):
    root = copy_tree(mini / "test", tmp_path / "t")
    (root / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8\xff garbage")
    split = scan_split(root)
    with pytest.raises(DataError, match=r"broken\.jpeg"):
        hash_and_check(split.samples)
    bad = hash_and_check(split.samples, skip_bad=True)
    assert [b["path"].endswith("broken.jpeg") for b in bad] == [True]


def _given_val(mini, tmp_path, shared: list[tuple[str, str]]):
    """mini with a val/ folder of 50 new patients per class (used as is), plus `shared` (class, name) files."""
    root = copy_tree(mini, tmp_path / "d")
    image = next((mini / "test" / "NORMAL").iterdir()).read_bytes()
    names = {"NORMAL": "IM-9{:03d}-0001.jpeg", "PNEUMONIA": "person9{:03d}_bacteria_1.jpeg"}
    for cls, pattern in names.items():
        (root / "val" / cls).mkdir(parents=True)
        for i in range(50):
            (root / "val" / cls / pattern.format(i)).write_bytes(image)
    for cls, name in shared:
        (root / "val" / cls / name).write_bytes(image)
    return root


def test_given_val_folder_sharing_patients_with_train_is_said_and_recorded(mini, tmp_path):
    """Kept as given (the user's choice), but a patient on both sides is counted, named and recorded."""
    root = _given_val(mini, tmp_path, [("NORMAL", "IM-0115-0002.jpeg"), ("PNEUMONIA", "person1000_virus_7.jpeg")])
    data = load_dataset(root)
    assert data.val_source == "folder" and len(data.val.samples) == 102
    shared = data.val_rule["shared_with_train"]
    assert shared == {"groups": 2, "val_images": 2, "train_images": 2, "examples": ["IM-0115", "person1000"]}
    assert data.val_rule["rule"] == "kermany-patient/1"
    assert "val/ shares 2 patient(s) with train/" in data.val_note and "IM-0115" in data.val_note
    assert "remove val/" in data.val_note


def test_given_val_folder_without_shared_patients_says_nothing(mini, tmp_path):
    data = load_dataset(_given_val(mini, tmp_path, []))
    assert data.val_source == "folder" and data.val_note == ""
    assert data.val_rule["shared_with_train"]["groups"] == 0
