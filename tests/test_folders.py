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
