"""Suite files: the shipped ones validate; malformed ones get errors naming key, value and what is allowed."""

from __future__ import annotations

import textwrap

import pytest

from bench.suite import SuiteError, load_suite, suite_names

VALID = """
name: tiny
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  cifake-sd14-test: {importer: cifake, split: test, label: fake}
  other-fakes: {importer: folder, path: x, split: test, label: fake}
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 100}]
test: {real: cifake-real-test, fake: ["*"], limit: 50}
detectors: [{name: lenet, grid: {lr: [0.001, 0.01]}}]
"""


def write(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_suites_are_valid():
    assert {"cross-generator", "smoke"} <= set(suite_names())
    for name in suite_names():
        suite = load_suite(name)
        assert suite.name == name
    cross = load_suite("cross-generator")
    assert [d.name for d in cross.detectors] == [
        "lenet", "cifake-cnn", "alexnet", "resnet50", "efficientnet-b0", "vit-tiny"
    ]
    assert cross.test_fakes() == ["cifake-sd14-test", "dcgan-test", "ddpm-test", "ddpm-cifar10"]
    assert [t.fake for t in cross.train] == [["cifake-sd14-train"]] + [["cifake-sd14-train", "dcgan-train"]] * 2
    assert [t.attribute_sources for t in cross.train] == [False, False, True]


def test_wildcard_test_sources_and_overrides(tmp_path):
    suite = load_suite(write(tmp_path, VALID))
    assert suite.test_fakes() == ["cifake-sd14-test", "other-fakes"]
    smaller = suite.with_overrides(train_limit=20, test_limit=10, epochs=1, seeds=[1, 2])
    assert smaller.train[0].limit == 20 and smaller.test.limit == 10
    assert smaller.recipe == {"epochs": 1} and smaller.seeds == [1, 2]
    with pytest.raises(SuiteError, match="matches none of this suite's detectors"):
        suite.with_overrides(detectors="vit*")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("name: lenet,", "name: lenett,", "detectors.0.name: unknown detector 'lenett'. Did you mean 'lenet'"),
        ("limit: 100}", "limit: -5}", "train.0.limit: Input should be greater than or equal to 10 (got -5)"),
        ("importer: folder", "importer: zip", "'cifake', 'folder', 'npz', 'cached' or 'generator' (got 'zip')"),
        ("fake: [\"*\"]", "fake: [nothing*]", "matches no declared fake test source"),
        ("real: [cifake-real-train]", "real: [cifake-sd14-train]", "labelled 'fake', expected 'real'"),
        ("real: cifake-real-test", "real: cifake-real-train", "used for both training and testing"),
        ("grid: {lr:", "grid: {learning_rate:", "unknown recipe field 'learning_rate'; allowed: augment"),
        ("name: tiny", "name: tiny\nbootstrapp: 5", "bootstrapp: unknown key; allowed: name, description, seeds"),
        ("limit: 100}", "limit: 100, limits: 5}", "train.0.limits: unknown key; allowed: name, real, fake, limit"),
        ("path: x, ", "path: x, labels: 1, ", "sources.other-fakes.labels: unknown key; allowed: importer, label"),
        ("path: x, ", "", "the folder importer needs 'path'"),
        ("importer: folder, path: x,", "importer: generator, generator: dcganz, count: 5,",
         "unknown generator 'dcganz'"),
        ("importer: folder, path: x,", "importer: generator, generator: dcgan,", "needs 'generator' and 'count'"),
        ("path: x, ", "path: x, count: 5, ", "count: only the generator importer takes these keys"),
        ("importer: folder, path: x,", "importer: generator, generator: dcgan, count: 5, train_source: nope,",
         "sources.other-fakes.train_source: source 'nope' is not declared"),
        ("limit: 100}", "limit: 100, attribute_sources: true}", "attribute_sources needs at least two fake sources"),
        ("importer: folder, path: x,", "importer: generator, generator: dcgan, count: 5, config: {epoch: 2},",
         "config: generator 'dcgan' has no setting epoch. Settings: latent=100"),
    ],
)
def test_malformed_suites_name_the_problem(tmp_path, old, new, expected):
    assert old in VALID
    with pytest.raises(SuiteError) as error:
        load_suite(write(tmp_path, VALID.replace(old, new, 1)))
    assert expected in str(error.value)


def test_unknown_suite_and_bad_yaml(tmp_path):
    with pytest.raises(SuiteError, match="Did you mean 'smoke'"):
        load_suite("smokee")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(write(tmp_path, "name: [unclosed"))
    with pytest.raises(SuiteError, match="must be a YAML mapping"):
        load_suite(write(tmp_path, "- a list"))
