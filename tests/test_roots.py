"""Data folders are recorded relative to a named data root, so reports name no machine's absolute path."""

from __future__ import annotations

from edgecxr.core.data.roots import portable_path, resolve_recorded


def test_named_data_root_round_trips(tmp_path, monkeypatch):
    (tmp_path / "kermany" / "test").mkdir(parents=True)
    monkeypatch.setenv("EDGECXR_DATA", str(tmp_path))
    recorded = portable_path(tmp_path / "kermany" / "test")
    assert recorded == "$EDGECXR_DATA/kermany/test"
    other = tmp_path / "elsewhere"
    monkeypatch.setenv("EDGECXR_DATA", str(other))  # another machine, its own copy
    assert resolve_recorded(recorded) == other / "kermany" / "test"


def test_without_a_named_root_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGECXR_DATA", raising=False)
    (tmp_path / "work").mkdir()
    (tmp_path / "data" / "test").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    assert portable_path(tmp_path / "data" / "test") == "../data/test"
    assert resolve_recorded("../data/test").resolve() == (tmp_path / "data" / "test").resolve()
