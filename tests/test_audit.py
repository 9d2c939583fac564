"""Data audit: exact and near duplicates on real data, deduplicated sources, overlap in records."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from bench.audit import audit, find_duplicates
from bench.cli import main
from bench.importers import import_folder
from bench.sources import SourceStore


def test_ddpm_reals_are_found_among_cifake_training_reals(tmp_path, cifake, data_root):
    """ddpm-cifar10's REAL folder is CIFAR-10 train images 0..128, which CIFAKE's training reals contain."""
    store = SourceStore(tmp_path)
    import_folder(store, data_root / "ddpm-cifar10" / "REAL", "ddpm-real", "real")
    overlap, mask = find_duplicates(store.load("ddpm-real"), cifake.load("cifake-real-train"))
    # Measured: 16 byte-identical after decoding, 110 more within a mean absolute difference of 3 (re-encoded).
    assert overlap.exact == 16
    assert overlap.near >= 100
    assert mask.sum() == overlap.exact + overlap.near
    near = [e for e in overlap.examples if e["kind"] == "near"]
    assert near and all(0 < e["mean_abs_diff"] <= 3 for e in near)


def test_exact_duplicates_within_cifake_test_fakes(cifake):
    fakes = cifake.load("cifake-sd14-test")
    overlap, mask = find_duplicates(fakes, fakes)
    assert overlap.exact == 38  # measured; removing them leaves one copy of each
    assert overlap.near == 0
    assert len({fakes.images[i].tobytes() for i in np.flatnonzero(~mask)}) == 10000 - 38


def _source(store, name, images, split):
    store.save(name, images, "fake", split, {"importer": "test"}, {}, [f"{name}/{i}.png" for i in range(len(images))])
    return store.load(name)


def test_audit_counts_and_deduplicates_planted_copies(tmp_path):
    rng = np.random.default_rng(0)
    store = SourceStore(tmp_path)
    train = rng.integers(0, 256, (50, 3, 32, 32), dtype=np.uint8)
    test = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    test[3] = train[7]  # exact copy of a training image
    noisy = train[9].astype(int) + rng.integers(-2, 3, train[9].shape)
    test[4] = np.clip(noisy, 0, 255).astype(np.uint8)  # near copy
    test[10] = test[2]  # duplicate within the test source
    sources = [_source(store, "train", train, "train"), _source(store, "test", test, "test")]
    overlaps, drop = audit(sources)
    found = {(o.query, o.pool): (o.exact, o.near) for o in overlaps}
    assert found[("train", "train")] == (0, 0)
    assert found[("test", "test")] == (1, 0)
    assert found[("test", "train")] == (1, 1)
    assert sorted(np.flatnonzero(drop["test"])) == [3, 4, 10]
    result = CliRunner().invoke(main, ["data", "audit", "train", "test", "--deduplicate", "--data-dir", str(tmp_path),
                                       "--report", str(tmp_path / "audit.md")])
    assert result.exit_code == 0, result.output
    assert "| test | train | 1 | 1 | 10.00% |" in (tmp_path / "audit.md").read_text()
    deduplicated = store.load("test-dedup")
    assert deduplicated.manifest.count == 17 and deduplicated.manifest.origin["deduplicated_from"] == "test"
    assert (tmp_path / "audit.json").is_file()
