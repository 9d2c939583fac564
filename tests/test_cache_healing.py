"""A damaged cache heals or says what to do: damaged sources and checkpoints are set aside and count as missing,
leftovers of killed runs are removed (a live writer's are not), and unusable folders are named before training."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.checkpoints import CheckpointStore
from bench.files import STALE_SECONDS, NotWritableError, check_writable, temp_suffix
from bench.sources import SourceError, SourceStore

IMAGES = np.random.default_rng(0).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
FILES = ["a.png", "two\nlines.png", "carriage\rreturn.png", "tab\there.png", "d.png", "e.png"]  # a line list splits


def stored(data_dir: Path) -> SourceStore:
    store = SourceStore(data_dir)
    store.save("noise", IMAGES, "fake", "test", {"importer": "test"}, {}, FILES)
    return store


def test_file_names_are_stored_as_a_json_list_and_round_trip(tmp_path):
    store = stored(tmp_path)
    assert json.loads((store.path("noise") / "files.json").read_text()) == FILES
    assert store.load("noise").files == tuple(FILES)


def test_a_source_stored_with_files_txt_still_loads(tmp_path):
    store = SourceStore(tmp_path)
    names = ["a", "b\rc", "d", "e", "f", "g"]
    store.save("old", IMAGES, "real", "train", {}, {}, names)
    (store.path("old") / "files.json").unlink()
    (store.path("old") / "files.txt").write_text("".join(f"{n}\n" for n in names))  # as bench wrote it before
    assert store.exists("old") and store.load("old").files == tuple(names)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


DAMAGE = {
    "truncated images.npy": ("images.npy", _truncate, "is unreadable (mmap length is greater than file size)"),
    "empty images.npy": ("images.npy", lambda p: p.write_bytes(b""), "is unreadable (No data left in file)"),
    "garbage manifest": ("manifest.json", lambda p: p.write_text("{garbage"), "is unreadable (Expecting property"),
    "manifest not an object": ("manifest.json", lambda p: p.write_text("[1, 2]"), "is unreadable (not a JSON object)"),
    "deleted images.npy": ("images.npy", Path.unlink, "is missing"),
    "deleted manifest": ("manifest.json", Path.unlink, "is missing"),
    "deleted file list": ("files.json", Path.unlink, "is missing"),
    "garbage file list": ("files.json", lambda p: p.write_text('{"a": 1}'), "is not a list of 6 file names"),
    "other pixels": ("images.npy", lambda p: np.save(p, IMAGES[::-1]), "no longer matches the sha256 in manifest.json"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_source_is_set_aside_with_a_one_line_message_and_reimported(tmp_path, damage):
    file, make, problem = DAMAGE[damage]
    store = stored(tmp_path)
    make(store.path("noise") / file)
    with pytest.raises(SourceError) as error:
        store.load("noise")
    aside = store.root / ".noise.corrupt"
    assert str(error.value).startswith(f"source 'noise' is damaged: {store.path('noise') / file} {problem}")
    assert str(error.value).endswith(f"it was set aside as {aside} and the next `bench run` (or `bench data import`) "
                                     "imports it again")
    assert "\n" not in str(error.value)
    assert aside.is_dir() and not store.exists("noise") and store.names() == []
    with pytest.raises(SourceError, match="'noise' is not in"):
        store.manifest("noise")
    stored(tmp_path)  # what the runner does for an absent source: import it again
    assert store.load("noise").files == tuple(FILES)


def test_exists_sets_a_damaged_source_aside_so_the_runner_reimports_it(tmp_path, caplog):
    store = stored(tmp_path)
    _truncate(store.path("noise") / "images.npy")
    with caplog.at_level(logging.WARNING, logger="bench.sources"):
        assert not store.exists("noise")
    assert "source 'noise' is damaged" in caplog.text and (store.root / ".noise.corrupt").is_dir()
    assert not store.exists("never-stored")
    stored(tmp_path)
    _truncate(store.path("noise") / "images.npy")  # a second damage replaces the first set-aside copy
    assert not store.exists("noise") and (store.root / ".noise.corrupt").is_dir()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leftover(folder: Path, name: str, age: float = 0, directory: bool = True) -> Path:
    path = folder / name
    if directory:
        path.mkdir(parents=True)
        (path / "images.npy").write_bytes(b"partial")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    stamp = time.time() - age
    for entry in [*path.glob("*"), path]:
        os.utime(entry, (stamp, stamp))
    return path


def test_leftovers_of_killed_imports_are_removed_but_not_a_live_writers(tmp_path):
    root, mine = tmp_path / "sources", temp_suffix()
    dead = re.sub(r"\.\d+@", f".{_dead_pid()}@", mine)
    killed = _leftover(root, f".noise.ab12cd34{dead}")
    old_unnamed = _leftover(root, ".noise.x1y2z3w4", age=STALE_SECONDS + 60)  # from before temp names had a pid
    stale_live_pid = _leftover(root, f".other.ab12cd34{mine}", age=STALE_SECONDS + 60)  # a reused pid
    live = _leftover(root, f".other.ef56gh78{mine}")
    recent_unnamed = _leftover(root, ".recent.x1y2z3w4")
    aside = _leftover(root, ".broken.corrupt", age=STALE_SECONDS + 60)
    SourceStore(tmp_path)
    assert sorted(root.iterdir()) == sorted([live, recent_unnamed, aside])
    assert not killed.exists() and not old_unnamed.exists() and not stale_live_pid.exists()


def test_a_garbled_checkpoint_sidecar_is_set_aside_and_retrained(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    for garbage in (b"{not json", b"[1, 2]", b"\xff\xfe\x00"):
        store.put("k1", {"w": torch.ones(2)}, {"val": {"loss": 1.0}})
        (store.root / "k1.json").write_bytes(garbage)
        with caplog.at_level(logging.WARNING, logger="bench.checkpoints"):
            assert store.get("k1") is None  # missing, so the runner trains it again
        assert "checkpoint k1: its sidecar k1.json is not a JSON object: set aside" in caplog.text
        assert (store.root / "k1.json.corrupt").read_bytes() == garbage
        assert (store.root / "k1.safetensors.corrupt").is_file() and not (store.root / "k1.json").exists()
        caplog.clear()
    store.put("k1", {"w": torch.ones(2)}, {"val": {"loss": 1.0}})
    assert store.get("k1").info["val"] == {"loss": 1.0}


def test_a_checkpoint_that_does_not_fit_its_model_is_not_returned_and_is_retrained(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.put("k1", {"conv.weight": torch.ones(8, 3, 3, 3), "fc.bias": torch.ones(1)}, {"val": {}})
    fits = {"conv.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(1)}
    assert store.get("k1", fits=fits) is not None  # same names and shapes: used
    changed = {"conv.weight": torch.zeros(16, 3, 3, 3), "head.bias": torch.zeros(1)}
    with caplog.at_level(logging.WARNING, logger="bench.checkpoints"):
        assert store.get("k1", fits=changed) is None  # missing, so the runner trains it again
    [line] = caplog.messages
    assert line == ("checkpoint k1 does not fit the model it is for (1 missing key (head.bias); 1 unexpected key "
                    "(fc.bias); 1 shape differs: conv.weight (file (8, 3, 3, 3), model (16, 3, 3, 3))), which changed "
                    "since it was trained: retraining it")
    store.put("k1", {name: t.clone() for name, t in changed.items()}, {"val": {}})  # the retrained one replaces it
    assert store.get("k1", fits=changed) is not None and not list(store.root.glob("*.corrupt"))
    store.discard("k1")  # --retrain
    assert not store.has("k1") and store.get("k1") is None


def test_temporary_checkpoint_files_of_killed_runs_are_removed(tmp_path):
    root, mine = tmp_path / "checkpoints", temp_suffix()
    dead = re.sub(r"\.\d+@", f".{_dead_pid()}@", mine)
    killed = [_leftover(root, f".k1.ab12cd34{dead}", directory=False),
              _leftover(root, ".k2.json.x1y2z3w4", age=STALE_SECONDS + 60, directory=False),
              _leftover(root, ".k3.x1y2z3w4.safetensors", age=STALE_SECONDS + 60, directory=False)]
    kept = [_leftover(root, f".k4.ab12cd34{mine}", directory=False),
            _leftover(root, "k5.json.corrupt", age=STALE_SECONDS + 60, directory=False)]
    CheckpointStore(tmp_path)
    assert sorted(root.iterdir()) == sorted(kept) and not any(p.exists() for p in killed)


def test_check_writable_names_a_folder_that_cannot_be_written(tmp_path, monkeypatch):
    check_writable(tmp_path / "new" / "results")
    assert (tmp_path / "new" / "results").is_dir() and list((tmp_path / "new" / "results").iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(NotWritableError, match=f"^cannot write to {re.escape(str(tmp_path / 'file' / 'sub'))} "):
        check_writable(tmp_path / "file" / "sub")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 * 2**30, 10 * 2**30, 5 * 2**20))
    with pytest.raises(NotWritableError, match=f"^{re.escape(str(tmp_path))} has 5 MB free, less than the 200 MB"):
        check_writable(tmp_path)
    monkeypatch.undo()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        with pytest.raises(NotWritableError, match=rf"^cannot write to {re.escape(str(locked))} \(Permission denied"):
            check_writable(locked)
    finally:
        locked.chmod(0o700)
