"""Leaderboards from synthetic records (tests/synthetic.py, nothing trained): the headline, the cross-source matrix,
robustness tables, thresholds and figures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic import CLEAN, JPEG, write_results

from bench.leaderboard import write_leaderboard
from bench.leaderboard_markdown import render_markdown
from bench.leaderboard_model import build_leaderboard, interval_text, records_frame
from bench.publish import Publisher
from bench.records import Perturbation, Record, load_records

JPEG90 = Perturbation(name="jpeg", params={"quality": 90}, label="jpeg(quality=90)")
SOURCE = {"importer": "folder", "label": "fake"}
SUITE = {  # what the records' suite says: each generator's train and test splits, the perturbations in suite order
    "name": "synthetic", "description": "Synthetic records",
    "sources": {"real-train": {"importer": "folder", "path": "real", "split": "train", "label": "real"},
                "real-test": {"importer": "folder", "path": "real", "split": "test", "label": "real"},
                **{f"{name}-{split}": SOURCE | {"path": name, "split": split}
                   for name in ("sd14", "ddpm") for split in ("train", "test")}},
    "train": [{"name": name, "real": ["real-train"], "fake": [f"{name}-train"]} for name in ("sd14", "ddpm")],
    "perturbations": [{"name": p.name, "params": p.params} for p in (CLEAN, JPEG90, JPEG)],
}
T_LABEL = ("mean over 3 training seeds [95% t interval over training seeds and test images: variance across seeds / 3 "
           "(2 degrees of freedom) + bootstrap variance over the test images the seeds share]")


def with_suite(folder: Path, suite: dict = SUITE) -> list[Record]:
    """The folder's records rewritten to carry ``suite`` (as a run's records carry theirs)."""
    publisher = Publisher(folder)
    records = []
    for record in load_records(folder).values():
        record = record.model_copy(update={"suite_config": suite})
        publisher.write_cell(record, np.load(folder / record.scores.file))
        records.append(record)
    return records


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Record], Path, dict[str, Path]]:
    """Detectors a (better) and b, three seeds, trained on sd14 and on ddpm, tested on both, clean and two JPEGs."""
    folder = tmp_path_factory.mktemp("results")
    write_results(folder, {"a": 2.0, "b": 1.0}, trains=("sd14", "ddpm"), tests=("sd14-test", "ddpm-test"),
                  perturbations=(CLEAN, JPEG90, JPEG), n_boot=100)
    records = with_suite(folder)
    return records, folder, write_leaderboard(records, folder, "synthetic", "Synthetic records")


def test_levels_follow_the_suite_order(run):
    records, _, _ = run
    frame = records_frame(records)
    one = frame[(frame["trained_on"] == "sd14") & (frame["tested_on"] == "ddpm-test") & (frame["name"] == "a")
                & (frame["seed"] == 0)]
    assert one["perturbation"].tolist() == ["clean", "jpeg(quality=90)", "jpeg(quality=50)"]
    assert one["level"].tolist() == ["clean", "quality=90", "quality=50"]
    assert one["evasion_rate"].isna().tolist() == [True, False, False]


def test_markdown_has_the_matrix_and_robustness_tables(run):
    records, folder, paths = run
    markdown = paths["markdown"].read_text()
    assert markdown == render_markdown(build_leaderboard(records, folder), "synthetic", "Synthetic records")
    assert paths["markdown"].stat().st_mode & 0o777 == 0o644  # readable by others, to be published
    matrix = markdown.split("## Cross-source matrix")[1].split("## Which detector is better")[0]
    header = next(line for line in matrix.splitlines() if line.startswith("| Detector"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["Detector", "Trained on", "ddpm-test", "sd14-test"]
    assert sum(line.startswith("| a ") for line in matrix.splitlines()) == 4  # 2 training sets x AUC, Acc fake
    robustness = markdown.split("## Robustness")[1].split("## Every cell")[0]
    assert "| Detector   | clean" in robustness and "**Evasion**" in robustness and "**Bal acc**" in robustness
    assert robustness.index("jpeg(quality=90)") < robustness.index("jpeg(quality=50)")
    for name in ["cross-source-roc_auc.png", "cross-source-accuracy_fake.png", "robustness-sd14-ddpm-test-accuracy.png",
                 "robustness-sd14-ddpm-test-roc_auc.png"]:
        assert f"figures/{name}" in markdown
        assert (folder / "figures" / name).read_bytes().startswith(b"\x89PNG")


def test_tables_say_what_intervals_cover_and_show_balanced_accuracy_and_the_chance_level_of_ap(run):
    _, folder, paths = run
    markdown = paths["markdown"].read_text()
    sections = markdown.split("\n## ")
    for name in ("Cross-source matrix", "Robustness", "Every cell"):  # every table says what its interval covers
        assert T_LABEL in next(s for s in sections if s.startswith(name)), name
    every = markdown.split("## Every cell")[1]
    header = next(line for line in every.splitlines() if line.startswith("| Detector"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:6] == ["Detector", "Perturbation", "Seeds", "Acc", "Bal acc", "Bal acc sd"]
    assert columns.index("AP chance") == columns.index("AP") + 1 and columns.index("AUC sd") == columns.index("AUC") + 1
    assert "| 0.500 " in every and "then by balanced accuracy" in every
    assert (folder / "leaderboard-seeds.csv").is_file() and (folder / "leaderboard-comparisons.csv").is_file()


def test_each_row_shows_its_decision_threshold(run):
    records, _, paths = run
    every = paths["markdown"].read_text().split("## Every cell")[1]
    header = next(line for line in every.splitlines() if line.startswith("| Detector"))
    column = [c.strip() for c in header.strip("|").split("|")].index("Threshold")
    row = next(line for line in every.split("tested on sd14-test")[0].splitlines() if line.startswith("| a "))
    thresholds = sorted(r.threshold for r in records if (r.detector, r.train.name, r.test.name, r.perturbation.name)
                        == ("a", "ddpm", "ddpm-test", "clean"))
    assert row.strip("|").split("|")[column].strip() == f"{thresholds[0]:.3g}–{thresholds[-1]:.3g}"
    assert "Threshold: the decision threshold" in every


def test_the_headline_names_the_best_detector_on_seen_and_unseen_generators_with_its_paired_margin(run):
    _, folder, paths = run
    markdown = paths["markdown"].read_text()
    headline = markdown.split("**Headline.** ")[1].split("\n\nRendered from")[0]
    sd14 = next(p for p in headline.split("\n\n") if p.startswith("Trained on sd14 "))
    assert "1,000 real and 1,000 fake images from sd14-train): 2 detectors, 3 training seeds each" in sd14
    pairs = pd.read_csv(folder / "leaderboard-comparisons.csv")
    for label, source in (("seen", "sd14-test"), ("unseen", "ddpm-test")):
        pair = pairs[(pairs["trained_on"] == "sd14") & (pairs["tested_on"] == source)
                     & (pairs["perturbation"] == "clean")].iloc[0]
        margin = (f"{pair['roc_auc_difference']:+.3f} [{pair['roc_auc_ci_low']:+.3f}, {pair['roc_auc_ci_high']:+.3f}]"
                  " over b (paired; significant after Holm)")
        assert re.search(rf"Best on generators {label} in training \({source}\): a, AUC [0-9.]+ \[[^]]+\]; "
                         + re.escape(margin), sd14), label
    assert "at chance" not in headline  # every source has a detector above chance
    page = paths["html"].read_text()
    assert "<strong>Headline.</strong> Trained on ddpm" in page and "Best on generators unseen in training" in page


def test_the_headline_names_the_sources_where_every_detector_is_at_chance(tmp_path):
    write_results(tmp_path, {"coin": 0.0, "other-coin": 0.0}, perturbations=(CLEAN,), n_boot=100)
    records = list(load_records(tmp_path).values())
    board = build_leaderboard(records, tmp_path)
    clean = board.cells
    assert ((clean["roc_auc_ci_low"] < 0.5) & (clean["roc_auc_ci_high"] > 0.5)).all()
    assert "Every detector is at chance (AUC interval covers 0.5) on: sd14-test." in render_markdown(board, "coins")


def test_intervals_print_with_enough_decimals_to_tell_their_bounds_apart():
    assert interval_text(0.5, (0.4, 0.6)) == "0.500 [0.400, 0.600]"
    assert interval_text(0.99997, (0.99995, 0.99999)) == "0.99997 [0.99995, 0.99999]"  # not 1.000 [1.000, 1.000]
    assert interval_text(0.0, (0.0, 0.0)) == "0.000"  # no spread in the resamples: no interval
    assert interval_text(0.25, None) == "0.250"


def test_a_suite_names_its_headline_metrics(tmp_path):
    write_results(tmp_path, {"a": 2.0, "b": 1.0}, perturbations=(CLEAN,), seeds=(0, 1), n_boot=50)
    records = with_suite(tmp_path, SUITE | {"headline_metrics": ["average_precision"]})
    paths = write_leaderboard(records, tmp_path, "AP first")
    pairs = pd.read_csv(paths["comparisons_csv"])
    assert "average_precision_difference" in pairs and "roc_auc_difference" not in pairs
    assert pairs[["a", "b"]].values.tolist() == [["a", "b"]]
    markdown = paths["markdown"].read_text()
    assert "| AP A − B " in markdown and "AUC A − B" not in markdown and "AP sd" in markdown
    assert "A the one with the higher mean AP" in markdown and "the metric of the table" in markdown
    assert "Best on generators seen in training (sd14-test): a, AP " in markdown


def test_render_shows_the_newest_records_description_unless_given_one(tmp_path):
    from click.testing import CliRunner
    from synthetic import logits, measured

    from bench.cli import main

    publisher = Publisher(tmp_path)
    for seed, (created, description) in enumerate([("2026-01-01T00:00:00+00:00", "Older: about 15 minutes."),
                                                   ("2026-01-02T00:00:00+00:00", "Newer: about 4 minutes.")]):
        scores = logits("a", seed)
        record = measured("a", seed, scores, description=description)
        record = record.model_copy(update={"provenance": record.provenance.model_copy(update={"created": created})})
        publisher.write_cell(record, scores)
    assert CliRunner().invoke(main, ["leaderboard", "render", str(tmp_path)]).exit_code == 0
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "Newer: about 4 minutes." in markdown and "15 minutes" not in markdown
    given = CliRunner().invoke(main, ["leaderboard", "render", str(tmp_path), "--description", "Re-rendered."])
    assert given.exit_code == 0 and "Re-rendered." in (tmp_path / "leaderboard.md").read_text()
