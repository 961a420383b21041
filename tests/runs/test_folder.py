"""The one resume rule: same settings resume or load, others are refused unless overwrite,
and a folder featlab did not make is never cleared."""

from __future__ import annotations

import json

import pytest

from featlab.errors import RunConflict
from featlab.runs.folder import RUN_FILE, RunFolder, read_run


def test_new_then_resume_then_done(tmp_path) -> None:
    folder = RunFolder(tmp_path / "run", "train-sae", {"lr": 1e-3, "k": 8})
    assert folder.claim() == "new"
    assert read_run(tmp_path / "run")["status"] == "running"
    assert RunFolder(tmp_path / "run", "train-sae", {"k": 8, "lr": 1e-3}).claim() == "resume"
    folder.finish(fvu=0.1)
    again = RunFolder(tmp_path / "run", "train-sae", {"lr": 1e-3, "k": 8})
    assert again.claim() == "done" and again.summary() == {"fvu": 0.1}


def test_other_settings_are_refused_and_name_what_changed(tmp_path) -> None:
    RunFolder(tmp_path, "train-sae", {"lr": 1e-3, "k": 8}).claim()
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(RunConflict) as err:
        RunFolder(tmp_path, "train-sae", {"lr": 1e-2, "k": 8}).claim()
    cli = err.value.render("cli")
    assert "lr: 0.001 -> 0.01" in cli and "--overwrite" in cli and "--out" in cli
    assert "overwrite=True" in str(err.value)
    assert (tmp_path / "weights.bin").exists()  # refused: nothing touched


def test_overwrite_clears_the_old_run(tmp_path) -> None:
    RunFolder(tmp_path, "train-sae", {"lr": 1e-3}).claim()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("old")
    assert RunFolder(tmp_path, "train-sae", {"lr": 1e-2}).claim(overwrite=True) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_FILE]


def test_another_command_and_foreign_folders_are_refused(tmp_path) -> None:
    RunFolder(tmp_path / "a", "train-model", {}).claim()
    with pytest.raises(RunConflict, match="train-model"):
        RunFolder(tmp_path / "a", "train-sae", {}).claim()
    foreign = tmp_path / "b"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # never cleared, even when asked to overwrite
        with pytest.raises(RunConflict, match="not a featlab run folder"):
            RunFolder(foreign, "train-sae", {}).claim(overwrite=overwrite)
    assert (foreign / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunConflict, match="is a file"):
        RunFolder(tmp_path / "file", "train-sae", {}).claim()


def test_unreadable_record_needs_overwrite(tmp_path) -> None:
    (tmp_path / RUN_FILE).write_text("{not json")
    with pytest.raises(RunConflict, match="unreadable"):
        RunFolder(tmp_path, "demo", {}).claim()
    assert RunFolder(tmp_path, "demo", {}).claim(overwrite=True) == "new"
    assert json.loads((tmp_path / RUN_FILE).read_text())["command"] == "demo"


def test_empty_folder_is_taken(tmp_path) -> None:
    assert RunFolder(tmp_path, "demo", {"seed": 0}).claim() == "new"


def test_nested_settings_differ_by_dotted_name(tmp_path) -> None:
    RunFolder(tmp_path, "demo", {"seed": 0, "size": {"d_model": 32, "steps": 600}}).claim()
    with pytest.raises(RunConflict) as err:
        RunFolder(tmp_path, "demo", {"seed": 0, "size": {"d_model": 16, "steps": 600}}).claim()
    assert "(size.d_model: 32 -> 16)" in str(err.value)
