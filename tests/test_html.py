"""The HTML leaderboard, rendered from the published smoke records (and synthetic ones) and opened in headless
Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from synthetic import CLEAN, JPEG, write_results

from bench.leaderboard import write_leaderboard
from bench.leaderboard_html import inside_link, render_html
from bench.leaderboard_model import build_leaderboard
from bench.records import load_records, read_record

PUBLISHED = Path(__file__).resolve().parent / "fixtures" / "smoke-v1" / "records"  # schema-1 records, no score files


class Tables(HTMLParser):
    """The sortable tables of a page: each header's key and aria-sort, each body row's cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None
        self._body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self.tables.append({"headers": [], "rows": [], "sortable": "sortable" in (attributes.get("class") or "")})
        elif tag == "th":
            self.tables[-1]["headers"].append((attributes.get("data-key"), attributes.get("aria-sort")))
        elif tag == "tbody":
            self._body = True
        elif tag == "tr" and self._body:
            self.tables[-1]["rows"].append([])
        elif tag == "td" and self._body:
            self._cell = []
        elif tag == "img":
            self.images.append(attributes["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.tables[-1]["rows"][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tbody":
            self._body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium (installed by `apt-get install chromium`, as .ci/run does); return its stdout.

    Without Chromium the test is skipped, except under CI (``CI=true``), where that is a failure.
    """
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        reason = "headless Chromium is needed to check the HTML leaderboard: apt-get install -y chromium"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    command = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A results folder holding the published smoke records, rendered (as `bench leaderboard render` renders)."""
    folder = tmp_path_factory.mktemp("board")
    shutil.copytree(PUBLISHED, folder / "records")
    records = list(load_records(folder).values())
    write_leaderboard(records, folder, records[0].suite, (records[0].suite_config or {}).get("description", ""))
    return folder, [json.loads(p.read_text()) for p in sorted((folder / "records").glob("*.json"))]


def test_render_writes_json_rows_and_a_page_linking_every_record(board):
    folder, records = board
    rows = json.loads((folder / "leaderboard.json").read_text())  # one row per cell over its seeds (one here)
    seeds = pd.read_csv(folder / "leaderboard-seeds.csv").to_dict("records")  # one row per record
    assert not (folder / "leaderboard-seeds.json").exists()  # the records are its JSON form
    assert len(rows) == len(seeds) == len(records)
    paths = {f"records/{r['key']}.json" for r in records}
    assert {path for row in rows for path in row["records"].split()} == {row["record"] for row in seeds} == paths
    assert all(isinstance(row["roc_auc"], float) for row in rows)
    assert {row["interval"] for row in rows} == {  # old records: no score files, the intervals they store
        "one training seed [95% interval stored in the record: test images only; no score file]"}
    page = (folder / "leaderboard.html").read_text()
    for record in records:
        assert f'href="records/{record["key"]}.json"' in page
    assert "<script src" not in page and "http" not in page.split("<script>")[1]  # no CDN, nothing to fetch
    assert "Git commit" in page and records[0]["provenance"]["command"] in page


def test_page_renders_sorts_and_shows_figures_in_headless_chromium(board, tmp_path):
    folder, records = board
    url = (folder / "leaderboard.html").as_uri()
    dom = chromium(tmp_path / "profile", "--dump-dom", f"{url}#sort=roc_auc:asc")
    parsed = Tables()
    parsed.feed(dom)

    sortable = [table for table in parsed.tables if table["sortable"]]
    rows = [row for table in sortable for row in table["rows"]]
    assert len(rows) == len(records)  # one seed per cell: one row per record
    assert {row[0] for row in rows} == {r["detector"] for r in records}
    assert any(not table["sortable"] for table in parsed.tables)  # the cross-source matrix, as tables too
    for table in sortable:
        sort_state = dict(table["headers"])
        assert sort_state.pop("roc_auc") == "ascending"  # the script ran and sorted by the column in the URL
        assert set(sort_state.values()) == {"none"}
        auc = [k for k, _ in table["headers"]].index("roc_auc")
        values = [float(row[auc].split()[0]) for row in table["rows"]]
        assert values == sorted(values)
        assert all("[" in row[auc] for row in table["rows"])  # each number with its interval
    figures = sorted(f"figures/{p.name}" for p in (folder / "figures").glob("*.png"))
    assert figures and parsed.images == figures

    picture = tmp_path / "leaderboard.png"
    chromium(tmp_path / "profile", f"--screenshot={picture}", "--window-size=1400,1800", url)
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert page_width(tmp_path, url, 1400) == (1400, 0)  # no sideways scrolling, of the page or of a table


def page_width(tmp_path: Path, url: str, width: int) -> tuple[int, int]:
    """How wide the page at ``url`` lays out in a frame ``width`` pixels wide: its scroll width (``width`` when that
    fits the frame, its vertical scroll bar aside), and by how many pixels the widest table overflows its container
    (0: no table scrolls sideways)."""
    frame = tmp_path / "frame.html"
    frame.write_text(f"""<!DOCTYPE html><title>pending</title><body style="margin:0">
<iframe id="page" src="{url}" style="width:{width}px;height:900px;border:0"></iframe>
<script>document.getElementById("page").addEventListener("load", function () {{
  var page = this.contentDocument, root = page.documentElement, overflow = 0;
  page.querySelectorAll(".scroll").forEach(function (box) {{
    overflow = Math.max(overflow, box.scrollWidth - box.clientWidth);
  }});
  document.title = "width " + (root.scrollWidth > root.clientWidth ? root.scrollWidth : {width}) + " " + overflow;
}});</script>""")
    dom = chromium(tmp_path / "profile", "--allow-file-access-from-files", "--dump-dom", frame.as_uri())
    found = re.search(r"<title>width (\d+) (\d+)</title>", dom)
    return int(found.group(1)), int(found.group(2))


def test_the_page_has_every_section_of_the_markdown_and_fits_1400_pixels(tmp_path):
    """Three seeds, a perturbation, a cross-source matrix and long detector names: the widest tables there are."""
    folder = tmp_path / "results"
    write_results(folder, {"a-detector-with-a-long-name": 2.0, "another-detector-with-a-long-name": 1.0, "c": 1.5},
                  trains=("sd14", "ddpm"), tests=("sd14-test", "ddpm-test"), perturbations=(CLEAN, JPEG), n_boot=50)
    paths = write_leaderboard(list(load_records(folder).values()), folder, "wide", "The widest tables.")
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ") and line != "## Every cell"]
    assert {"Cross-source matrix", "Which detector is better", "Robustness"} <= set(headings)
    for heading in headings:
        assert f"<h2>{heading}" in page, heading
    assert "Hyperparameter budget" in page and "<strong>Headline.</strong>" in page and "Threshold" in page
    assert page_width(tmp_path, paths["html"].as_uri(), 1400) == (1400, 0)


ATTRIBUTION_RECORDS = Path(__file__).resolve().parent / "fixtures" / "attribution-v1" / "records"


def test_paths_read_from_records_link_only_inside_the_results_folder(tmp_path):
    records = [read_record(p) for p in sorted(ATTRIBUTION_RECORDS.glob("*.json"))]
    hostile = ["javascript:alert(1)", "/etc/passwd", "../x.png"]
    records = [r.model_copy(update={"attribution": r.attribution.model_copy(update={"figure": figure})})
               for r, figure in zip(records, hostile, strict=True)]
    page = render_html(build_leaderboard(records, tmp_path), "hostile")
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert {f"records/{r.key}.json" for r in records} <= set(hrefs)  # the record links are still there
    assert all(inside_link(href) == href for href in hrefs)
    assert not any(figure in href for figure in hostile for href in hrefs)
    assert inside_link("figures/a b+c.png") == "figures/a%20b%2Bc.png"
    for bad in (*hostile, " javascript:alert(1)", "JavaScript:x", "//evil.example/x", "a/../../x", "a\\..\\x",
                "data:text/html,x", "figures/\nx.png", "", None):
        assert inside_link(bad) is None
