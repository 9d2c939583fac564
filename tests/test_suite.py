"""Suite files: the shipped ones validate; malformed ones get errors naming key, value and what is allowed."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
import yaml

from bench.importer import IMPORTERS, SourceSpec
from bench.records import read_record
from bench.suite import Suite, SuiteError, load_suite, suite_names

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
    assert cross.test_fakes() == ["cifake-sd14-test", "dcgan-test", "ddpm-test", "ddpm-cifar10",
                                  "cifake-sd14-test-blur1"]
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
        ("importer: folder", "importer: zip", "unknown importer 'zip'. Registered: cached, cifake, folder, generator"),
        ("fake: [\"*\"]", "fake: [nothing*]", "matches no declared fake test source"),
        ("real: [cifake-real-train]", "real: [cifake-sd14-train]", "labelled 'fake', expected 'real'"),
        ("real: cifake-real-test", "real: cifake-real-train", "used for both training and testing"),
        ("grid: {lr:", "grid: {learning_rate:", "unknown recipe field 'learning_rate'; allowed: augment"),
        ("name: tiny", "name: tiny\nbootstrapp: 5", "bootstrapp: unknown key; allowed: name, description, seeds"),
        ("limit: 100}", "limit: 100, limits: 5}", "train.0.limits: unknown key; allowed: name, real, fake, limit"),
        ("path: x, ", "path: x, labels: 1, ", "sources.other-fakes.labels: unknown key; allowed: importer, label"),
        ("path: x, ", "", "sources.other-fakes.path: missing: the folder importer needs it"),
        ("importer: folder, path: x,", "importer: generator, generator: dcganz, count: 5,",
         "unknown generator 'dcganz'"),
        ("importer: folder, path: x,", "importer: generator, generator: dcgan,",
         "sources.other-fakes.count: missing: the generator importer needs it"),
        ("path: x, ", "path: x, count: 5, ", "sources.other-fakes.count: unknown key; allowed: importer, label, split, "
         "tags, path, skip_bad"),
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


DETECTORS_LINE = "detectors: [{name: lenet, grid: {lr: [0.001, 0.01]}}]"
TRAIN_LINE = "train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 100}]"
NEW_SOURCE = "  other-fakes:"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # perturbation parameters: values, not only names
        (DETECTORS_LINE, DETECTORS_LINE + "\nperturbations: [{name: fgsm, eps: eight}]",
         "perturbations.0: perturbation 'fgsm': eps: expected a number or a fraction like '8/255', got 'eight'"),
        (DETECTORS_LINE, DETECTORS_LINE + "\nperturbations: [{name: fgsm, eps: -8/255}]",
         "perturbation 'fgsm': eps: a pixel budget must lie in [0, 1] (e.g. '8/255'), got '-8/255'"),
        (DETECTORS_LINE, DETECTORS_LINE + "\nperturbations: [{name: pgd, steps: 0}]",
         "perturbation 'pgd': steps: Input should be greater than or equal to 1 (got 0)"),
        (DETECTORS_LINE, DETECTORS_LINE + "\nperturbations: [{name: jpeg, quality: 100}]",
         "perturbation 'jpeg': quality: Input should be less than or equal to 95 (got 100)"),
        (DETECTORS_LINE, DETECTORS_LINE + "\nperturbations: [{name: jpeg, quality: high}]",
         "perturbation 'jpeg': quality: Input should be a valid integer (got 'high')"),
        (DETECTORS_LINE, DETECTORS_LINE + "\nperturbations: [{name: blur, sigma: -1}]",
         "perturbation 'blur': sigma: Input should be greater than or equal to 0 (got -1)"),
        (DETECTORS_LINE, DETECTORS_LINE + "\nperturbations: [{name: resize, scale: 0}]",
         "perturbation 'resize': scale: Input should be greater than 0 (got 0)"),
        # detector arguments
        (DETECTORS_LINE, "detectors: [{name: cifake-cnn, kwargs: {filter: 16}}]",
         "detectors.0: kwargs: detector 'cifake-cnn' takes no argument(s) filter; allowed: filters, dense"),
        (DETECTORS_LINE, "detectors: [{name: lenet, kwargs: {num_classes: 2}}]", "kwargs: num_classes is set by bench"),
        # recipe values, suite-wide, per detector and per grid value
        (DETECTORS_LINE, DETECTORS_LINE + "\nrecipe: {epochs: 0}",
         "recipe: epochs: Input should be greater than or equal to 1 (got 0)"),
        (DETECTORS_LINE, DETECTORS_LINE + "\nrecipe: {lr: fast}", "recipe: lr: Input should be a valid number"),
        (DETECTORS_LINE, "detectors: [{name: lenet, recipe: {epochs: 0}}]",
         "detectors.0.recipe: epochs: Input should be greater than or equal to 1 (got 0)"),
        (DETECTORS_LINE, "detectors: [{name: lenet, grid: {lr: [0.001, fast]}}]",
         "detectors.0.grid: lr: Input should be a valid number, unable to parse string as a number (got 'fast')"),
        (DETECTORS_LINE, "detectors: [{name: lenet, grid: {batch_size: [64, 0.5]}}]",
         "detectors.0.grid: batch_size: Input should be a valid integer, got a number with a fractional part"),
        # seeds
        ("name: tiny", "name: tiny\nseeds: [0, -1]", "seeds.1: Input should be greater than or equal to 0 (got -1)"),
        ("name: tiny", "name: tiny\nseeds: [1, 2, 1]", "seeds: seed(s) 1 listed twice"),
        ("name: tiny", "name: tiny\ndata_seed: -1", "data_seed: Input should be greater than or equal to 0"),
        # duplicates
        (DETECTORS_LINE, "detectors: [{name: lenet}, {name: cifake-cnn}, {name: lenet, recipe: {lr: 0.01}}]",
         "detectors: entries 0 and 2 are both 'lenet' with kwargs {}: records could not tell them apart"),
        (DETECTORS_LINE, DETECTORS_LINE + "\nperturbations: [clean, {name: jpeg, quality: 50}, clean]",
         "perturbations: entries 0 and 2 are both 'clean'"),
        (DETECTORS_LINE, DETECTORS_LINE + "\nperturbations: [{name: jpeg}, {name: jpeg, quality: 75}]",
         "perturbations: entries 0 and 1 are both 'jpeg' with parameters {'quality': 75} (defaults included)"),
        (TRAIN_LINE, TRAIN_LINE[:-1] + ", {name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train]}]",
         "train: entries 0 and 1 are both named 'sd14'"),
        # names and paths that would lead out of their folders
        ("name: tiny", "name: ../../x", "name: the suite name names its results folder: use lower-case letters"),
        ("path: x,", "path: ../x,", "sources.other-fakes.path: leads out of the data root: give a path under it, "
                                    "or an absolute path (got '../x')"),
        ("path: x,", "path: a/../../x,", "sources.other-fakes.path: leads out of the data root"),
        # two names for the same images
        (NEW_SOURCE, "  more: {importer: folder, path: ./x/, split: test, label: fake}\n" + NEW_SOURCE,
         "test sources 'more' and 'other-fakes' are the same images (importer folder, path 'x'): declare them once"),
        (NEW_SOURCE, "  sd14-again: {importer: cifake, split: test, label: fake}\n" + NEW_SOURCE,
         "test sources 'cifake-sd14-test' and 'sd14-again' are the same images (importer cifake, label 'fake', "
         "split 'test')"),
        (TRAIN_LINE, "train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train, folder-x]}]\n"
                     "  folder-x: {importer: folder, path: x, split: train, label: fake}",
         "test source 'other-fakes' and training source 'folder-x' are the same images (importer folder, path 'x')"),
        (TRAIN_LINE, TRAIN_LINE[:-1] + ", {name: copy, real: [cifake-real-train], fake: [sd14-copy], limit: 100}]\n"
                     "  sd14-copy: {importer: cifake, split: train, label: fake}",
         "train sets 'sd14' and 'copy' draw the same real and fake images: records could not tell them apart"),
    ],
)
def test_values_are_checked_when_the_suite_loads(tmp_path, old, new, expected):
    assert old in VALID
    text = VALID.replace(old, new, 1)
    if "\n  " in new and new.startswith("train"):  # a source declared with the training set: move it under sources
        train, source = new.split("\n", 1)
        text = VALID.replace(old, train, 1).replace(NEW_SOURCE, f"{source}\n{NEW_SOURCE}", 1)
    with pytest.raises(SuiteError) as error:
        load_suite(write(tmp_path, text))
    assert expected in str(error.value)


def test_valid_values_still_load(tmp_path, monkeypatch):
    text = VALID.replace(DETECTORS_LINE, """detectors:
  - {name: cifake-cnn, kwargs: {filters: 16}, recipe: {epochs: 2, lr: '0.01'}, grid: {augment: [[flip], [flip, shift]]}}
  - {name: cifake-cnn, kwargs: {filters: 32}}
perturbations: [clean, {name: fgsm, eps: 0}, {name: fgsm, eps: 8/255}, {name: pgd, eps: 0.03, steps: 1, step: 1/255},
                {name: blur, sigma: 0}, {name: jpeg, quality: 95}]
seeds: [0, 3]""").replace("path: x,", "path: data/../x,")
    text = text.replace(TRAIN_LINE, TRAIN_LINE[:-1] + ", {name: more, real: [cifake-real-train], "
                                                      "fake: [cifake-sd14-train], limit: 200}]")
    suite = load_suite(write(tmp_path, text))
    assert suite.perturbations[2].params == {"eps": "8/255"}  # checked, not converted: labels and keys unchanged
    assert suite.detectors[0].recipe == {"epochs": 2, "lr": "0.01"}
    with pytest.raises(SuiteError, match="recipe: epochs: Input should be greater than or equal to 1"):
        suite.with_overrides(epochs=0)
    with pytest.raises(SuiteError, match="seeds: seed"):
        suite.with_overrides(seeds=[2, 2])

    from bench.detector import DETECTORS, DetectorSpec

    spec = DetectorSpec("anything", lambda **kwargs: None)  # a **kwargs factory takes any argument name
    real_get = DETECTORS.get
    monkeypatch.setattr(DETECTORS, "get", lambda name: spec if name == "anything" else real_get(name))
    loaded = load_suite(write(tmp_path, VALID.replace(DETECTORS_LINE, "detectors: [{name: anything, kwargs: {w: 1}}]")))
    assert loaded.detectors[0].kwargs == {"w": 1}


BILLION_LAUGHS = "\n".join(
    ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
)


def test_untrusted_yaml_is_refused_before_it_is_built(tmp_path):
    bomb = VALID.replace(DETECTORS_LINE, "detectors:\n  - name: lenet\n    kwargs:\n"
                         + textwrap.indent(BILLION_LAUGHS, "      "))
    started = time.perf_counter()
    with pytest.raises(SuiteError, match=r"expands to more than 100,000 YAML nodes \(aliases included\)"):
        load_suite(write(tmp_path, bomb))
    assert time.perf_counter() - started < 2  # counted on the composed graph: 10**9 nodes are never built
    with pytest.raises(SuiteError, match="an alias refers to a node that contains it"):
        load_suite(write(tmp_path, VALID + "\ndescription: &loop [*loop]\n"))
    with pytest.raises(SuiteError, match="larger than 1,000,000 bytes"):
        load_suite(write(tmp_path, VALID + "#" + "x" * 1_000_000 + "\n"))
    with pytest.raises(SuiteError, match="nested too deeply"):
        load_suite(write(tmp_path, VALID + "description: " + "[" * 100_000 + "]" * 100_000 + "\n"))
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe name: x")
    with pytest.raises(SuiteError, match="is not UTF-8 text"):
        load_suite(tmp_path / "binary.yaml")
    shared = VALID.replace(DETECTORS_LINE, "detectors: [{name: lenet, grid: {lr: &rates [0.001, 0.01]}}, "
                                           "{name: cifake-cnn, grid: {lr: *rates}}]")
    assert load_suite(write(tmp_path, shared)).detectors[1].grid == {"lr": [0.001, 0.01]}  # small aliases still work


def test_each_importer_reads_its_own_keys_into_its_own_model(tmp_path):
    suite = load_suite(write(tmp_path, VALID))
    folder = suite.sources["other-fakes"]
    assert isinstance(folder, IMPORTERS.get("folder").config) and folder.path == "x"
    assert SourceSpec(importer="folder", label="fake", path="x") == folder.model_copy(update={"split": "test"})
    assert suite.model_dump()["sources"]["other-fakes"] == {
        "importer": "folder", "label": "fake", "split": "test", "tags": {}, "path": "x", "skip_bad": False}
    assert load_suite(write(tmp_path, yaml.safe_dump(suite.model_dump()))) == suite  # a dump loads to itself


def test_suites_dumped_before_importers_owned_their_keys_still_load():
    """Records carry their suite (suite_config) as dumped then: every source with every importer's keys at their
    defaults. Those load (verify and export re-run them); a key of another importer with a value does not."""
    old = {"importer": "folder", "label": "fake", "split": "test", "path": "x", "key": "images", "skip_bad": False,
           "generator": None, "config": {}, "train_source": None, "count": None, "seed": 0, "source": None,
           "perturbation": None, "parts": None, "part": None, "tags": {}}
    assert SourceSpec.model_validate(old) == SourceSpec(importer="folder", label="fake", path="x")
    with pytest.raises(ValueError, match="count"):
        SourceSpec.model_validate(old | {"count": 5})
    published = sorted(Path(__file__).parents[1].glob("results/*/records/*.json"))
    folders = {path.parent.parent: path for path in published}
    assert folders, "no published records to read"
    for path in folders.values():
        Suite.model_validate(read_record(path).suite_config)


class _TwoSources(SourceSpec):
    """The images of two declared sources, one after the other."""

    first: str
    second: str

    def inputs(self):
        return {"first": (self.first, self.label), "second": (self.second, self.label)}


class _Concatenating:
    """Two declared sources as one (a test importer)."""

    config = _TwoSources
    makes = "imported"


def test_a_new_importer_brings_its_keys_and_inputs_without_touching_the_suite(tmp_path):
    IMPORTERS.register("concatenated", _Concatenating())
    try:
        text = VALID.replace("other-fakes: {importer: folder, path: x, split: test, label: fake}",
                             "other-fakes: {importer: folder, path: x, split: test, label: fake}\n"
                             "  both: {importer: concatenated, first: other-fakes, second: cifake-sd14-test, "
                             "label: fake}")
        suite = load_suite(write(tmp_path, text))
        assert isinstance(suite.sources["both"], _TwoSources)
        assert suite.used_sources()[-1] == "both"
        with pytest.raises(SuiteError, match="sources.both.second: source 'nope' is not declared"):
            load_suite(write(tmp_path, text.replace("second: cifake-sd14-test", "second: nope")))
        with pytest.raises(SuiteError, match="sources.both.path: unknown key; allowed: importer, label, split, tags, "
                                             "first, second"):
            load_suite(write(tmp_path, text.replace("first: other-fakes", "first: other-fakes, path: y")))
    finally:
        IMPORTERS.unregister("concatenated")


@pytest.mark.parametrize(("value", "expected"), [
    ("headline_metrics: [auc]", "unknown metric 'auc'"),
    ("headline_metrics: [evasion_rate]", "'evasion_rate' is not computed per run"),
    ("headline_metrics: []", "at least 1 item"),
    ("threads: 0", "threads: Input should be greater than or equal to 1"),
])
def test_threads_and_headline_metrics_are_checked(tmp_path, value, expected):
    with pytest.raises(SuiteError, match=expected):
        load_suite(write(tmp_path, VALID + value + "\n"))
    suite = load_suite(write(tmp_path, VALID + "threads: 1\nheadline_metrics: [average_precision, roc_auc]\n"))
    assert suite.threads == 1 and suite.headline_metrics == ["average_precision", "roc_auc"]
