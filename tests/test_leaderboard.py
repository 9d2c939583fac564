"""Leaderboards from real records: the cross-source matrix, robustness tables and figures."""

from __future__ import annotations

import shutil
import textwrap

import pytest

from bench.leaderboard import build_leaderboard, interval_text, records_frame, render_markdown
from bench.runner import Runner
from bench.suite import load_suite

SUITE = """
name: matrix
sources:
  cifake-real-train: {importer: cifake, split: train, label: real}
  cifake-sd14-train: {importer: cifake, split: train, label: fake}
  cifake-real-test: {importer: cifake, split: test, label: real}
  cifake-sd14-test: {importer: cifake, split: test, label: fake}
  ddpm-cifar10: {importer: folder, path: ddpm-cifar10/FAKE, split: test, label: fake}
train:
  - {name: sd14-small, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 150}
  - {name: sd14, real: [cifake-real-train], fake: [cifake-sd14-train], limit: 300}
test: {real: cifake-real-test, fake: ["*"], limit: 150}
detectors: [{name: lenet}]
recipe: {epochs: 1}
perturbations: [clean, {name: jpeg, quality: 90}, {name: jpeg, quality: 50}, {name: fgsm, eps: 2/255}]
bootstrap: 30
"""


@pytest.fixture(scope="module")
def run(cifake_dir, data_root, tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "matrix.yaml"
    path.write_text(textwrap.dedent(SUITE))
    results, cache = tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("matrix") / "cache"
    shutil.copytree(cifake_dir, cache)  # a private cache: this suite imports ddpm-cifar10 into it
    return Runner(cache, results, data_root, device="cpu", progress=False).run(load_suite(path)), results


def test_levels_follow_the_suite_order(run):
    summary, _ = run
    frame = records_frame(summary.records)
    one = frame[(frame["trained_on"] == "sd14") & (frame["tested_on"] == "ddpm-cifar10")]
    assert one["perturbation"].tolist() == ["clean", "jpeg(quality=90)", "jpeg(quality=50)", "fgsm(eps=2/255)"]
    assert one["level"].tolist() == ["clean", "quality=90", "quality=50", "eps=2/255"]
    assert one["evasion_rate"].isna().tolist() == [True, False, False, False]


def test_markdown_has_the_matrix_and_robustness_tables(run):
    summary, results = run
    markdown = summary.leaderboard["markdown"].read_text()
    assert markdown == render_markdown(build_leaderboard(summary.records, results), "matrix", root=results)
    assert "## Sources" in markdown and (results / "figures" / "source-ddpm-cifar10.png").is_file()  # source cards
    assert summary.leaderboard["markdown"].stat().st_mode & 0o777 == 0o644  # readable by others, to be published
    matrix = markdown.split("## Cross-source matrix")[1].split("## Robustness")[0]
    header = next(line for line in matrix.splitlines() if line.startswith("| Detector"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "Detector", "Trained on", "cifake-sd14-test", "ddpm-cifar10"]
    assert sum(line.startswith("| lenet") for line in matrix.splitlines()) == 4  # 2 training sets x AUC, Acc fake
    robustness = markdown.split("## Robustness")[1].split("## Every cell")[0]
    assert "| Detector   | clean" in robustness and "**Evasion**" in robustness
    assert robustness.index("jpeg(quality=90)") < robustness.index("jpeg(quality=50)")
    for name in ["cross-source-roc_auc.png", "robustness-sd14-ddpm-cifar10-accuracy.png"]:
        assert f"figures/{name}" in markdown
        assert (results / "figures" / name).read_bytes().startswith(b"\x89PNG")


def test_tables_say_what_intervals_cover_and_show_balanced_accuracy_and_the_chance_level_of_ap(run):
    summary, results = run
    markdown = summary.leaderboard["markdown"].read_text()
    one_seed = "one training seed [95% bootstrap: test images only]"
    sections = markdown.split("\n## ")
    for name in ("Cross-source matrix", "Robustness", "Every cell"):  # every table says what its interval covers
        assert one_seed in next(s for s in sections if s.startswith(name)), name
    ddpm = markdown.split("tested on ddpm-cifar10 (")[-1]
    real, fake = (int(n) for n in ddpm.split(" fake)")[0].split(" real vs "))
    assert real != fake
    header = next(line for line in ddpm.splitlines() if line.startswith("| Detector"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns.index("Bal acc") == columns.index("Acc") + 1  # beside each other
    assert columns.index("AP chance") == columns.index("AP") + 1
    assert f"| {fake / (real + fake):.3f} " in ddpm
    assert "then by balanced accuracy" in ddpm
    assert (results / "leaderboard-seeds.csv").is_file() and (results / "leaderboard-comparisons.csv").is_file()


def test_intervals_print_with_enough_decimals_to_tell_their_bounds_apart():
    assert interval_text(0.5, (0.4, 0.6)) == "0.500 [0.400, 0.600]"
    assert interval_text(0.99997, (0.99995, 0.99999)) == "0.99997 [0.99995, 0.99999]"  # not 1.000 [1.000, 1.000]
    assert interval_text(0.0, (0.0, 0.0)) == "0.000"  # no spread in the resamples: no interval
    assert interval_text(0.25, None) == "0.250"
