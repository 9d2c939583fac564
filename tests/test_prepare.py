"""Prepare: a cached source is reused only when the suite's input for it is the same (regression: a source
was found by its name only, so another data root's folder was silently ignored)."""

from __future__ import annotations

import shutil
import textwrap

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


def test_a_source_from_another_data_root_is_imported_again(data_root, cifake_dir, tmp_path):
    (tmp_path / "suite.yaml").write_text(textwrap.dedent(SUITE))
    suite = load_suite(tmp_path / "suite.yaml")
    other = tmp_path / "other-root"
    (other / "ddpm-cifar10" / "FAKE").mkdir(parents=True)
    (other / "cifake.zip").symlink_to(data_root / "cifake.zip")
    for path in sorted((data_root / "ddpm-cifar10" / "FAKE").iterdir())[:40]:
        shutil.copy(path, other / "ddpm-cifar10" / "FAKE" / path.name)
    cache = tmp_path / "cache"
    shutil.copytree(cifake_dir, cache)

    first = Preparer(cache, data_root).prepare(suite)
    assert first.test["ddpm-cifar10"].count == 129
    statuses = {s.name: s for s in survey(suite, Preparer(cache, other).store, other)}
    assert statuses["ddpm-cifar10"].action == "import" and "other input" in statuses["ddpm-cifar10"].reason
    assert statuses["cifake-real-train"].action == "cached"  # the same zip, reached through a link
    second = Preparer(cache, other).prepare(suite)
    assert second.test["ddpm-cifar10"].count == 40
    origin = Preparer(cache, other).store.manifest("ddpm-cifar10").origin
    assert origin["path"] == str((other / "ddpm-cifar10" / "FAKE").resolve())
    assert Preparer(cache, data_root).prepare(suite).test["ddpm-cifar10"].count == 129  # and back
