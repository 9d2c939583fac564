"""The ``bench`` command line."""

from __future__ import annotations

import fnmatch
import functools
import json
import logging
from dataclasses import asdict
from pathlib import Path

import click

from bench import __version__
from bench.attribution import ATTRIBUTIONS
from bench.audit import audit, render_report
from bench.audit import deduplicate as deduplicate_source
from bench.detector import DETECTORS
from bench.files import write_atomic
from bench.generator import GENERATORS
from bench.importers import import_cifake, import_folder, import_npz, locate_cifake
from bench.leaderboard import write_leaderboard
from bench.perturbations import PERTURBATIONS
from bench.provenance import stamp
from bench.registry import UnknownPluginError
from bench.runner import Runner
from bench.sources import LABELS, SourceError, SourceStore
from bench.suite import SuiteError, load_suite, suite_names

DEFAULT_DATA_DIR = Path.home() / ".cache" / "bench"
EXPECTED_ERRORS = (SourceError, SuiteError, UnknownPluginError, FileNotFoundError)


def friendly_errors(command):
    """Turn the harness's expected errors into a one-line message and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EXPECTED_ERRORS as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="BENCH_DATA_DIR",
    default=DEFAULT_DATA_DIR, show_default=True, show_envvar=True,
    help="Cache of imported sources, downloads and checkpoints.",
)
data_root_option = click.option(
    "--data-root", type=click.Path(exists=True, file_okay=False, path_type=Path), envvar="BENCH_DATA_ROOT",
    show_envvar=True, help="Folder holding input data (cifake.zip or cifake/, and paths that suites name).",
)
skip_bad_option = click.option(
    "--skip-bad", is_flag=True, help="Skip unreadable, non-RGB or wrongly sized images (counted in the manifest)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench")
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done.")
def main(verbose: bool) -> None:
    """Benchmark detectors of AI-generated images across generators, attacks and re-encoding."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@main.command("list")
@click.argument(
    "kind", type=click.Choice(["detectors", "generators", "perturbations", "attributions", "suites", "sources"])
)
@click.argument("pattern", default="*")
@data_dir_option
@friendly_errors
def list_command(kind: str, pattern: str, data_dir: Path) -> None:
    """List registered plugins, shipped suites or cached sources, filtered by a wildcard PATTERN."""
    if kind == "suites":
        names = suite_names(pattern)
    elif kind == "sources":
        store = SourceStore(data_dir)
        for name in store.names():
            if fnmatch.fnmatchcase(name, pattern):
                m = store.manifest(name)
                click.echo(f"{name}\t{m.label}\t{m.split}\t{m.count}\t{m.sha256[:12]}")
        return
    else:
        registry = {"detectors": DETECTORS, "generators": GENERATORS, "perturbations": PERTURBATIONS,
                    "attributions": ATTRIBUTIONS}[kind]
        names = registry.names(pattern)
        for broken, reason in registry.broken.items():
            click.echo(f"warning: plugin {broken!r} failed to load: {reason}", err=True)
    for name in names:
        click.echo(name)


@main.group()
def data() -> None:
    """Import and inspect sources."""


@data.group("import")
def import_group() -> None:
    """Import images as named sources into the cache."""


@import_group.command("cifake")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@data_dir_option
@data_root_option
@skip_bad_option
@friendly_errors
def import_cifake_command(path: Path | None, data_dir: Path, data_root: Path | None, skip_bad: bool) -> None:
    """Import CIFAKE's four parts from PATH (the Kaggle zip or its extracted folder).

    Without PATH, looks under --data-root, then downloads the archive from Kaggle.
    """
    location = path or locate_cifake(data_root, data_dir / "downloads")
    store = SourceStore(data_dir)
    for split in ("train", "test"):
        for label in LABELS:
            manifest = import_cifake(store, location, split, label, skip_bad=skip_bad)
            click.echo(f"{manifest.name}: {manifest.count} images, sha256 {manifest.sha256[:12]}")


@import_group.command("folder")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name of the new source, e.g. ddpm-cifar10.")
@click.option("--label", required=True, type=click.Choice(LABELS))
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "test"]))
@data_dir_option
@skip_bad_option
@friendly_errors
def import_folder_command(path: Path, name: str, label: str, split: str, data_dir: Path, skip_bad: bool) -> None:
    """Import every 32x32 RGB image in the folder PATH as one source."""
    manifest = import_folder(SourceStore(data_dir), path, name, label, split, skip_bad=skip_bad)
    click.echo(f"{manifest.name}: {manifest.count} images, sha256 {manifest.sha256[:12]}")


@import_group.command("npz")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name of the new source.")
@click.option("--label", required=True, type=click.Choice(LABELS))
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "test"]))
@click.option("--key", default="images", show_default=True, help="Array name inside the .npz file.")
@data_dir_option
@friendly_errors
def import_npz_command(path: Path, name: str, label: str, split: str, key: str, data_dir: Path) -> None:
    """Import a uint8 image array, (N, 3, 32, 32) or (N, 32, 32, 3), from the .npz file PATH."""
    manifest = import_npz(SourceStore(data_dir), path, name, label, split, key=key)
    click.echo(f"{manifest.name}: {manifest.count} images, sha256 {manifest.sha256[:12]}")


@data.command("show")
@click.argument("name")
@data_dir_option
@friendly_errors
def data_show(name: str, data_dir: Path) -> None:
    """Print the manifest of the cached source NAME (its pixels are checked against its sha256)."""
    click.echo(SourceStore(data_dir).load(name).manifest.to_json())


@data.command("audit")
@click.argument("names", nargs=-1, required=True)
@click.option("--tolerance", type=float, default=3.0, show_default=True,
              help="Largest mean absolute pixel difference (0-255) of a near duplicate.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Markdown report (and a .json beside it) here instead of printing it.")
@click.option("--deduplicate", is_flag=True,
              help="Also store NAME-dedup sources without duplicates (and test images found in training sources).")
@data_dir_option
@friendly_errors
def data_audit(
    names: tuple[str, ...], tolerance: float, report: Path | None, deduplicate: bool, data_dir: Path
) -> None:
    """Find exact and near duplicates within the cached sources NAMES and between their test and train splits."""
    store = SourceStore(data_dir)
    sources = [store.load(name) for name in names]
    overlaps, drop = audit(sources, tolerance)
    text = render_report(sources, overlaps, tolerance)
    if deduplicate:
        made = [deduplicate_source(store, s, drop[s.name], f"{s.name}-dedup") for s in sources]
        text += "\n## Deduplicated sources\n\n" + "\n".join(
            f"- `{m.name}`: {m.count} images (dropped {m.origin['dropped']}), sha256 `{m.sha256[:12]}`" for m in made
        ) + "\n"
    if report is None:
        click.echo(text, nl=False)
        return
    provenance = stamp(seed=0, device="cpu")
    text += f"\nProduced by `{provenance['command']}` at git commit {provenance['git']['commit']}.\n"
    write_atomic(report, text.encode())
    summary = {"tolerance": tolerance, "sources": {s.name: s.manifest.sha256 for s in sources},
               "overlaps": [asdict(o) for o in overlaps], "provenance": provenance}
    write_atomic(report.with_suffix(".json"), json.dumps(summary, indent=2).encode())


@main.command()
@click.option("--suite", "suite_name", required=True, help="Shipped suite name (`bench list suites`) or YAML path.")
@data_dir_option
@data_root_option
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for this run's records/ and leaderboard  [default: results/<suite name>]")
@click.option("--train-limit", type=int, help="Override: training images per class.")
@click.option("--test-limit", type=int, help="Override: test images per source.")
@click.option("--epochs", type=int, help="Override: epochs for every detector.")
@click.option("--seeds", help="Override: comma-separated training seeds, e.g. 0,1,2.")
@click.option("--detectors", "detector_pattern", help="Override: detectors matching comma-separated wildcards.")
@click.option("--bootstrap", type=int, help="Override: bootstrap resamples per interval.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when on a terminal).")
@friendly_errors
def run(
    suite_name: str,
    data_dir: Path,
    data_root: Path | None,
    results: Path | None,
    train_limit: int | None,
    test_limit: int | None,
    epochs: int | None,
    seeds: str | None,
    detector_pattern: str | None,
    bootstrap: int | None,
    device: str,
    progress: bool | None,
) -> None:
    """Run a suite: import sources, train detectors, score every cell, render the leaderboard.

    Cells whose record already exists are skipped, so rerunning an interrupted run resumes it.
    """
    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError:
        raise click.BadParameter(f"{seeds!r} is not a comma-separated list of integers", param_hint="--seeds") from None
    suite = load_suite(suite_name).with_overrides(
        train_limit, test_limit, epochs, seed_list, detector_pattern, bootstrap
    )
    runner = Runner(data_dir, results or Path("results") / suite.name, data_root, device, progress=progress)
    summary = runner.run(suite)
    log = logging.getLogger(__name__)
    log.info("%d cells computed, %d already recorded", len(summary.computed), len(summary.skipped))
    click.echo(summary.leaderboard["markdown"])


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--title", help="Leaderboard title (default: the suite named in the records).")
@friendly_errors
def leaderboard(directory: Path, title: str | None) -> None:
    """Re-render DIRECTORY/leaderboard.md and .csv from the records in DIRECTORY/records/."""
    paths = sorted((directory / "records").glob("*.json"))
    if not paths:
        raise click.ClickException(f"no records in {directory / 'records'}: run a suite first")
    records = [json.loads(p.read_text()) for p in paths]
    out = write_leaderboard(records, directory, title or records[0]["suite"])
    click.echo(out["markdown"])
