"""Encoding control: the suite's encoding is applied to real and fake sources alike, and recorded."""

from __future__ import annotations

import numpy as np
import pytest

from bench.encoding import Encoding, apply_encoding, jpeg_roundtrip
from bench.importers import import_npz
from bench.runner import Runner
from bench.sources import SourceStore
from bench.suite import Suite


@pytest.fixture
def lossless_sources(cifake, tmp_path):
    """CIFAKE pixels saved as lossless arrays (as a generator stores them), one real and one fake per split."""
    store = SourceStore(tmp_path / "cache")
    for name, label, split, source in [("png-real-train", "real", "train", "cifake-real-train"),
                                       ("png-fake-train", "fake", "train", "cifake-sd14-train"),
                                       ("png-real-test", "real", "test", "cifake-real-test"),
                                       ("png-fake-test", "fake", "test", "cifake-sd14-test")]:
        path = tmp_path / f"{name}.npz"
        np.savez(path, images=np.asarray(cifake.load(source).images[:60]))
        import_npz(store, path, name, label, split)
    return store


def suite(tmp_path, **changes) -> Suite:
    sources = {n: {"importer": "npz", "path": str(tmp_path / f"{n}.npz"), "label": n.split("-")[1],
                   "split": n.split("-")[2]}
               for n in ("png-real-train", "png-fake-train", "png-real-test", "png-fake-test")}
    return Suite.model_validate({
        "name": "encoding", "sources": sources,
        "train": [{"name": "t", "real": ["png-real-train"], "fake": ["png-fake-train"]}],
        "test": {"real": "png-real-test", "fake": ["png-fake-test"]},
        "detectors": [{"name": "lenet"}], **changes,
    })


def test_jpeg_is_applied_to_both_classes_of_lossless_sources(lossless_sources, tmp_path):
    runner = Runner(tmp_path / "cache", tmp_path / "results", device="cpu", progress=False)
    chosen = suite(tmp_path)
    assert chosen.encoding == Encoding(format="jpeg", quality=75)  # the default, as CIFAKE was saved
    for name in ("png-real-test", "png-fake-test", "png-real-train", "png-fake-train"):
        stored = lossless_sources.load(name).images
        subset = runner.preparer.subset(chosen, [name], None)
        assert subset.sources[0]["encoded"] == "re-encoded as JPEG q75 4:2:0", name
        assert not np.array_equal(subset.images, stored), name
        assert np.array_equal(subset.images, jpeg_roundtrip(np.asarray(stored), 75)), name
    untouched = runner.preparer.subset(suite(tmp_path, encoding={"format": "none"}), ["png-fake-test"], None)
    assert np.array_equal(untouched.images, lossless_sources.load("png-fake-test").images)


def test_sources_already_in_the_target_encoding_are_used_as_stored(cifake):
    source = cifake.load("cifake-sd14-test")
    images, what = apply_encoding(source.images, source.manifest.encoding, Encoding())
    assert images is source.images and what == "as stored (already JPEG q75 4:2:0)"
    images, what = apply_encoding(source.images[:20], source.manifest.encoding, Encoding(quality=50))
    assert what == "re-encoded as JPEG q50 4:2:0" and not np.array_equal(images, source.images[:20])


def test_a_run_records_the_encoding(lossless_sources, tmp_path):
    chosen = suite(tmp_path, recipe={"epochs": 1}, bootstrap=0)
    summary = Runner(tmp_path / "cache", tmp_path / "results", device="cpu", progress=False).run(chosen)
    record = summary.records[0]
    assert record.encoding == "JPEG q75 4:2:0"
    assert record.test.real.sources[0].encoded == record.test.fake.sources[0].encoded
    assert record.train.fake.sources[0].encoded.startswith("re-encoded")
