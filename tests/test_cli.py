"""The command line: listing, help, imports and error exits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from conftest import BUILTIN_DETECTORS

from bench.cli import main

COMMANDS = [[], ["list"], ["run"], ["data"], ["data", "import"], ["data", "import", "cifake"],
            ["data", "import", "folder"], ["data", "import", "npz"], ["data", "show"], ["data", "audit"],
            ["leaderboard"], ["leaderboard", "render"], ["leaderboard", "diff"], ["verify"], ["new"],
            ["new", "detector"], ["generate"], ["show"]]
HEAVY_MODULES = ["torch", "torchvision", "timm", "diffusers", "transformers", "sklearn", "scipy", "pandas",
                 "matplotlib", "captum", "torchattacks"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def first_column(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines()]


def test_list_plugins_with_a_wildcard_and_a_description_each():
    result = invoke("list", "detectors")
    assert result.exit_code == 0
    assert first_column(result.output) == BUILTIN_DETECTORS
    lenet = next(line for line in result.output.splitlines() if line.startswith("lenet "))
    assert "LeNet-5 on 3-channel 32x32 input" in lenet
    assert first_column(invoke("list", "detectors", "*cnn").output) == ["airbench-cnn", "cifake-cnn", "dct-cnn"]
    assert first_column(invoke("list", "perturbations").output) == [
        "blur", "clean", "fgsm", "jpeg", "noise", "pgd", "resize"]
    assert "DCGAN (Radford et al. 2016)" in invoke("list", "generators", "dcgan").output
    assert first_column(invoke("list", "importers").output) == [
        "cached", "cifake", "folder", "generator", "npz", "part", "perturbed"]
    assert first_column(invoke("list", "executors").output) == ["local", "ray"]
    metrics = invoke("list", "metrics", "*accuracy*").output
    assert first_column(metrics) == ["accuracy", "accuracy_fake", "accuracy_real", "balanced_accuracy"]
    assert "Share of test images classified correctly." in metrics


def test_bench_list_offers_every_registry_of_the_package():
    """A registry declared anywhere in bench (a Registry, or a module-level REGISTRY mapping) is listable."""
    import importlib
    import pkgutil

    import bench
    from bench.cli import REGISTRIES
    from bench.registry import Registry

    found = set()
    for info in pkgutil.walk_packages(bench.__path__, "bench."):
        if info.name == "bench.__main__":  # runs the command line
            continue
        module = importlib.import_module(info.name)
        found |= {(info.name, name) for name, value in vars(module).items()
                  if (isinstance(value, Registry) or name == "REGISTRY") and _declared_in(module, name)}
    assert found == set(REGISTRIES.values())
    kinds = next(p for p in main.commands["list"].params if p.name == "kind").type.choices
    assert set(REGISTRIES) <= set(kinds)


def _declared_in(module, name: str) -> bool:
    """Whether ``module`` assigns ``name`` itself (rather than importing it)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))
    return any(isinstance(node, ast.AnnAssign | ast.Assign) and name in {
        t.id for t in ([node.target] if isinstance(node, ast.AnnAssign) else node.targets) if isinstance(t, ast.Name)}
        for node in tree.body)


def test_run_offers_the_registered_executors():
    help_text = invoke("run", "--help").output
    assert "[local|ray]" in help_text


def test_list_suites_shows_their_size():
    lines = invoke("list", "suites").output.splitlines()
    assert lines[0].split() == ["SUITE", "JOBS", "TRAININGS", "CELLS", "TRAIN/CLASS", "TEST/SOURCE", "DESCRIPTION"]
    smoke = next(line.split() for line in lines if line.startswith("smoke "))
    jobs, trainings, cells = (int(n.replace(",", "")) for n in smoke[1:4])
    assert 0 < jobs <= trainings and cells % jobs == 0


def test_help_and_listing_import_no_heavy_module():
    """`bench --help`, `bench CMD --help` and `bench list` stay fast: none of them imports torch & co."""
    commands = [[*command, "--help"] for command in COMMANDS] + [
        ["list", kind] for kind in ("detectors", "generators", "importers", "perturbations", "attributions", "metrics",
                                    "executors", "suites")]
    script = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from bench.cli import main

        for command in {json.dumps(commands)}:
            result = CliRunner().invoke(main, command)
            assert result.exit_code == 0, (command, result.output)
        print(sorted(set({HEAVY_MODULES!r}) & set(sys.modules)))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_everywhere(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_import_folder_then_show(tmp_path, data_root, monkeypatch):
    imported = invoke("data", "import", "folder", data_root / "ddpm-cifar10" / "FAKE", "--name", "ddpm-cifar10",
                      "--label", "fake", "--data-dir", tmp_path)
    assert imported.exit_code == 0, imported.output
    assert imported.output.startswith("ddpm-cifar10: 129 images")
    listed = invoke("list", "sources", "--data-dir", tmp_path)
    assert listed.output.split()[:4] == ["ddpm-cifar10", "fake", "test", "129"]
    assert '"count": 129' in invoke("data", "show", "ddpm-cifar10", "--data-dir", tmp_path).output
    monkeypatch.chdir(tmp_path)
    shown = invoke("show", "ddpm-cifar10", "--data-dir", tmp_path)
    assert shown.output == "wrote ddpm-cifar10.png: 64 images of ddpm-cifar10\n"
    assert (tmp_path / "ddpm-cifar10.png").read_bytes().startswith(b"\x89PNG")


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
    elsewhere = invoke("run", "--suite", "smoke", "--detectors", "random-forest", "--data-dir", tmp_path)
    assert elsewhere.exit_code == 1 and "--add-detector random-forest" in elsewhere.output
    added = invoke("run", "--suite", "smoke", "--add-detector", "random-forest", "--detectors", "random-forest",
                   "--dry-run", "--data-dir", tmp_path)
    assert added.exit_code == 0 and "1 jobs" in added.output


def test_cifake_missing_offline_says_where_to_point(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CIFAKE_URL", "http://127.0.0.1:9/cifake.zip")
    result = invoke("data", "import", "cifake", "--data-dir", tmp_path / "cache", "--data-root", tmp_path)
    assert result.exit_code == 1
    assert "--data-root" in result.output and "could not be downloaded" in result.output
