"""The command line: listing, help, imports and error exits."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bench.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_list_detectors_with_a_wildcard():
    result = invoke("list", "detectors")
    assert result.exit_code == 0
    assert result.output.split() == ["alexnet", "cifake-cnn", "efficientnet-b0", "lenet", "resnet50", "vit-tiny"]
    assert invoke("list", "detectors", "*cnn").output.split() == ["cifake-cnn"]
    assert "smoke" in invoke("list", "suites").output.split()
    assert invoke("list", "perturbations").output.split() == ["blur", "clean", "fgsm", "jpeg", "noise", "pgd", "resize"]


@pytest.mark.parametrize(
    "command",
    [[], ["list"], ["run"], ["data"], ["data", "import"], ["data", "import", "cifake"], ["data", "import", "folder"],
     ["data", "import", "npz"], ["data", "show"], ["leaderboard"], ["leaderboard", "render"], ["leaderboard", "diff"],
     ["verify"], ["new"], ["new", "detector"]],
)
def test_help_everywhere(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_import_folder_then_show(tmp_path, data_root):
    imported = invoke("data", "import", "folder", data_root / "ddpm-cifar10" / "FAKE", "--name", "ddpm-cifar10",
                      "--label", "fake", "--data-dir", tmp_path)
    assert imported.exit_code == 0, imported.output
    assert imported.output.startswith("ddpm-cifar10: 129 images")
    listed = invoke("list", "sources", "--data-dir", tmp_path)
    assert listed.output.split()[:4] == ["ddpm-cifar10", "fake", "test", "129"]
    assert '"count": 129' in invoke("data", "show", "ddpm-cifar10", "--data-dir", tmp_path).output


def test_errors_exit_non_zero_with_a_message(tmp_path):
    unknown_suite = invoke("run", "--suite", "cross-generater", "--data-dir", tmp_path)
    assert unknown_suite.exit_code == 1
    assert "Did you mean 'cross-generator'" in unknown_suite.output
    missing_source = invoke("data", "show", "nothing", "--data-dir", tmp_path)
    assert missing_source.exit_code == 1 and "not in" in missing_source.output
    bad_seeds = invoke("run", "--suite", "smoke", "--seeds", "a,b", "--data-dir", tmp_path)
    assert bad_seeds.exit_code == 2 and "--seeds" in bad_seeds.output
    no_detector = invoke("run", "--suite", "smoke", "--detectors", "nope*", "--data-dir", tmp_path)
    assert no_detector.exit_code == 1 and "matches none" in no_detector.output


def test_cifake_missing_offline_says_where_to_point(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CIFAKE_URL", "http://127.0.0.1:9/cifake.zip")
    result = invoke("data", "import", "cifake", "--data-dir", tmp_path / "cache", "--data-root", tmp_path)
    assert result.exit_code == 1
    assert "--data-root" in result.output and "could not be downloaded" in result.output
