"""Suite files that include others: merge and override rules, the errors that name the files, and the shipped
suites, which declare CIFAKE's sources once (suites/_cifake.yaml) and load as they did when each declared them."""

from __future__ import annotations

import textwrap
from importlib import resources

import pytest
import yaml

from bench.suite import Suite, SuiteError, load_suite, suite_names

# what every shipped suite declared before it included suites/_cifake.yaml
CIFAKE = {
    "cifake-real-train": {"importer": "cifake", "split": "train", "label": "real"},
    "cifake-sd14-train": {"importer": "cifake", "split": "train", "label": "fake"},
    "cifake-real-test": {"importer": "cifake", "split": "test", "label": "real"},
    "cifake-sd14-test": {"importer": "cifake", "split": "test", "label": "fake"},
}
CIFAKE_LINES = ["sources:", *(f"  {name}: {yaml.safe_dump(spec, default_flow_style=True).strip()}"
                              for name, spec in CIFAKE.items())]
REST = """
train: [{name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 100}]
test: {real: cifake-real-test, fake: ["*"], limit: 50}
detectors: [{name: lenet}]
"""


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def without_tags(suite: Suite) -> dict:
    dump = suite.model_dump()
    for spec in dump["sources"].values():
        spec["tags"] = {}
    return dump


def shipped(name: str) -> dict:
    return yaml.safe_load((resources.files("bench.suites") / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", [n for n in suite_names() if shipped(n).get("include") == ["_cifake"]])
def test_a_shipped_suite_loads_as_its_explicit_version(name):
    """The same sources (in the same order), training and test lists, so the same plan and keys."""
    data = shipped(name)
    data.pop("include")
    data["sources"] = {**CIFAKE, **(data.get("sources") or {})}
    explicit, included = Suite.model_validate(data), load_suite(name)
    assert without_tags(included) == without_tags(explicit)
    assert list(included.sources) == list(explicit.sources)
    assert included.test_fakes() == explicit.test_fakes()
    assert included.sources["cifake-sd14-test"].tags == {"family": "sd14", "kind": "diffusion", "year": 2022}


def test_parts_of_suites_are_shipped_but_not_listed():
    shipped = {f.name for f in resources.files("bench.suites").iterdir()}
    assert {"_cifake.yaml", "_zoo.yaml"} <= shipped
    assert not [n for n in suite_names() if n.startswith("_")]
    assert {"zoo", "zoo-cpu", "zoo-temporal", "zoo-temporal-cpu", "zoo-leave-one-kind-out",
            "zoo-leave-one-kind-out-cpu"} <= set(suite_names())


def test_includes_merge_and_the_including_file_overrides(tmp_path):
    write(tmp_path, "common/base.yaml", """
        include: [_cifake]
        seeds: [0, 1]
        recipe: {epochs: 3, lr: 0.01}
        sources:
          extra: {importer: folder, path: x, label: fake}
    """)
    write(tmp_path, "common/also.yaml", """
        include: [_cifake]           # the same file twice (a diamond) is not a conflict
        bootstrap: 50
    """)
    suite = load_suite(write(tmp_path, "suite.yaml", textwrap.dedent("""
        name: merged
        include: [common/base.yaml, common/also.yaml]
        seeds: [4]
        recipe: {epochs: 1}
        sources:
          extra: {importer: folder, path: y, label: fake}
          mine: {importer: folder, path: z, label: fake}
    """) + REST))
    assert suite.seeds == [4] and suite.bootstrap == 50
    assert suite.recipe == {"epochs": 1, "lr": 0.01}  # a mapping merges key by key
    assert list(suite.sources) == [*CIFAKE, "extra", "mine"]  # included entries first, in their order
    assert suite.sources["extra"].path == "y"  # an entry is replaced whole
    assert suite.test_fakes() == ["cifake-sd14-test", "extra", "mine"]
    single = load_suite(write(tmp_path, "single.yaml", "name: single\ninclude: _cifake\n" + REST))
    assert list(single.sources) == list(CIFAKE)


@pytest.mark.parametrize(("files", "include", "expected"), [
    ({}, "[missing.yaml]", r"suite.yaml: include 'missing.yaml': .*missing.yaml not found"),
    ({}, "[_no_such_part]", r"include '_no_such_part': no such shipped file \(shipped: .*_cifake"),
    ({}, "[{a: 1}]", r"include: give file names .* got \{'a': 1\}"),
    ({"a.yaml": "include: [b.yaml]\n", "b.yaml": "include: [a.yaml]\n"}, "[a.yaml]",
     r"include cycle: .*a.yaml -> .*b.yaml -> .*a.yaml"),
    ({"a.yaml": "seeds: [1]\n", "b.yaml": "seeds: [2]\n"}, "[a.yaml, b.yaml]",
     r"a.yaml and .*b.yaml both set seeds, differently"),
    ({"a.yaml": "sources: {x: {importer: folder, path: p, label: fake}}\n",
      "b.yaml": "sources: {x: {importer: folder, path: q, label: fake}}\n"}, "[a.yaml, b.yaml]",
     r"a.yaml and .*b.yaml both set sources.x, differently: set it in one of them, or in .*suite.yaml"),
    ({"a.yaml": "- not a mapping\n"}, "[a.yaml]", r"a.yaml \(included by .*suite.yaml\) must be a YAML mapping"),
])
def test_include_errors_name_the_files(tmp_path, files, include, expected):
    for name, text in files.items():
        write(tmp_path, name, text)
    path = write(tmp_path, "suite.yaml", f"name: broken\ninclude: {include}\n" + "\n".join(CIFAKE_LINES) + REST)
    with pytest.raises(SuiteError, match=expected):
        load_suite(path)



def test_identical_settings_in_two_included_files_do_not_conflict(tmp_path):
    write(tmp_path, "a.yaml", "seeds: [1]\nsources: {x: {importer: folder, path: p, label: fake}}\n")
    write(tmp_path, "b.yaml", "seeds: [1]\nsources: {x: {importer: folder, path: p, label: fake}}\n")
    suite = load_suite(write(tmp_path, "suite.yaml", "name: same\ninclude: [a.yaml, b.yaml, _cifake]\n" + REST))
    assert suite.seeds == [1] and suite.sources["x"].path == "p"
