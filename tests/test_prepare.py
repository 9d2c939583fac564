"""Prepare: a cached source is reused only when the suite's input for it is the same (regression: a source
was found by its name only, so another data root's folder was silently ignored)."""

from __future__ import annotations

import re
import shutil
import textwrap

import pytest

import bench.importers
from bench.importer import SourceSpec
from bench.prepare import Preparer, survey
from bench.suite import load_suite

SUITE = """
name: identity
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  ddpm-cifar10: {importer: folder, path: ddpm-cifar10/FAKE, split: test, label: fake}
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 100}]
test: {real: cifake-real-test, fake: [ddpm-cifar10], limit: 200}
detectors: [{name: lenet}]
"""


@pytest.fixture
def roots(data_root, cifake_dir, tmp_path):
    """The suite, a copy of the CIFAKE cache, and another data root whose ddpm-cifar10 holds 40 of the 129."""
    (tmp_path / "suite.yaml").write_text(textwrap.dedent(SUITE))
    other = tmp_path / "other-root"
    (other / "ddpm-cifar10" / "FAKE").mkdir(parents=True)
    (other / "cifake.zip").symlink_to(data_root / "cifake.zip")
    for path in sorted((data_root / "ddpm-cifar10" / "FAKE").iterdir())[:40]:
        shutil.copy(path, other / "ddpm-cifar10" / "FAKE" / path.name)
    cache = tmp_path / "cache"
    shutil.copytree(cifake_dir, cache)
    return load_suite(tmp_path / "suite.yaml"), cache, other


def test_a_source_from_another_data_root_is_imported_again(roots, data_root, monkeypatch):
    suite, cache, other = roots
    first = Preparer(cache, data_root).prepare(suite)
    assert first.test["ddpm-cifar10"].count == 129
    statuses = {s.name: s for s in survey(suite, Preparer(cache, other).store, other)}
    assert statuses["ddpm-cifar10"].action == "import" and "other input" in statuses["ddpm-cifar10"].reason
    assert statuses["cifake-real-train"].action == "cached"  # the same zip, reached through a link
    second = Preparer(cache, other).prepare(suite)
    assert second.test["ddpm-cifar10"].count == 40
    origin = Preparer(cache, other).store.manifest("ddpm-cifar10").origin
    assert origin["path"] == str((other / "ddpm-cifar10" / "FAKE").resolve())
    # and back: the replaced copy was kept, so it is swapped in without importing the folder again
    back = {s.name: s for s in survey(suite, Preparer(cache, data_root).store, data_root)}["ddpm-cifar10"]
    assert (back.action, back.count) == ("cached", 129) and "kept" in back.reason
    monkeypatch.setattr(bench.importers, "import_folder", _no_import)
    assert Preparer(cache, data_root).prepare(suite).test["ddpm-cifar10"].count == 129
    assert Preparer(cache, other).store.previous("ddpm-cifar10").count == 40  # the other one is kept in turn
    assert Preparer(cache, other).prepare(suite).test["ddpm-cifar10"].count == 40
    assert Preparer(cache, data_root).store.names().count("ddpm-cifar10") == 1


def test_a_damaged_previous_copy_is_imported_again(roots, data_root):
    suite, cache, other = roots
    Preparer(cache, data_root).prepare(suite)
    Preparer(cache, other).prepare(suite)
    (cache / "sources" / "_previous" / "ddpm-cifar10" / "images.npy").write_bytes(b"garbage")
    assert Preparer(cache, data_root).prepare(suite).test["ddpm-cifar10"].count == 129


def _no_import(*args, **kwargs):
    raise AssertionError("the kept copy should have been used")


def test_importing_a_source_says_what_it_does_and_how_long_it_took(data_root, tmp_path):
    lines: list[str] = []
    specs = {"ddpm": SourceSpec(importer="folder", label="fake", path="ddpm-cifar10/FAKE")}
    Preparer(tmp_path / "cache", data_root, report=lines.append).source("ddpm", specs)
    assert lines[0] == "source ddpm: import (folder, 129 images)"
    assert re.fullmatch(r"source ddpm: 129 images in \d+ s", lines[1])
    Preparer(tmp_path / "cache", data_root, report=lines.append).source("ddpm", specs)  # cached: nothing to say
    assert len(lines) == 2
