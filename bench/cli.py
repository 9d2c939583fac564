"""The ``bench`` command line.

Each command imports what it needs when it runs, so that ``bench --help``, ``bench CMD --help`` and
``bench list`` start without torch, pandas or matplotlib (``python benchmarks/cli_speed.py`` times them).
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import logging
import math
import shutil
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bench import __version__
from bench.executors import EXECUTORS, ExecutorOptions
from bench.registry import Registry, summary
from bench.sources import LABELS

if TYPE_CHECKING:
    from bench.suite import Suite

DEFAULT_DATA_DIR = Path.home() / ".cache" / "bench"
# The harness's errors that mean bad input, not a bug. An error can only be raised once its module is
# loaded, so they are looked up in sys.modules rather than imported up front. Subclasses are caught with their
# base: bench.generator.GeneratorError and bench.importers.ImageFileError are SourceErrors.
EXPECTED_ERRORS = {"bench.sources": "SourceError", "bench.suite": "SuiteError", "bench.registry": "UnknownPluginError",
                   "bench.records": "RecordError", "bench.scaffold": "ScaffoldError", "bench.plan": "PlanError",
                   "bench.executors": "ExecutorError", "bench.files": "NotWritableError",
                   "bench.weights": "WeightsError", "bench.export": "ExportError", "bench.predict": "PredictError"}
# Every registry, by what `bench list` calls its plugins: the module that declares it and its name there (a
# mapping of name -> declaration, or a bench.registry.Registry). tests/test_cli.py checks that none is left out.
REGISTRIES = {"detectors": ("bench.detector", "DETECTORS"), "generators": ("bench.generator", "GENERATORS"),
              "importers": ("bench.importer", "IMPORTERS"), "perturbations": ("bench.perturbations", "PERTURBATIONS"),
              "attributions": ("bench.attribution", "ATTRIBUTIONS"), "metrics": ("bench.metrics", "REGISTRY"),
              "executors": ("bench.executors", "EXECUTORS")}


def expected_errors() -> tuple[type[Exception], ...]:
    """FileNotFoundError and the classes of :data:`EXPECTED_ERRORS` whose modules are loaded."""
    loaded = [getattr(sys.modules[module], name) for module, name in EXPECTED_ERRORS.items() if module in sys.modules]
    return (FileNotFoundError, *loaded)


def friendly_errors(command):
    """Turn the harness's expected errors into a one-line message and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except expected_errors() as exc:  # evaluated only once an exception is raised
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
@click.argument("kind", type=click.Choice([*REGISTRIES, "suites", "sources"]))
@click.argument("pattern", default="*")
@data_dir_option
@friendly_errors
def list_command(kind: str, pattern: str, data_dir: Path) -> None:
    """List registered plugins, shipped suites or cached sources, filtered by a wildcard PATTERN.

    Plugins come with a one-line description. Suites come with their size: jobs (training sets x
    detectors x seeds), trainings (jobs x grid points), cells (jobs x fake test sources x perturbations),
    training images per class and test images per source.
    """
    if kind == "suites":
        list_suites(pattern)
    elif kind == "sources":
        from bench.sources import SourceStore

        store = SourceStore(data_dir)
        for name in store.names():
            if fnmatch.fnmatchcase(name, pattern):
                m = store.manifest(name)
                click.echo(f"{name}\t{m.label}\t{m.split}\t{m.count}\t{m.sha256[:12]}")
    else:
        module, attribute = REGISTRIES[kind]
        for name, description in listing(getattr(importlib.import_module(module), attribute), pattern):
            click.echo(f"{name}  {description}".rstrip())


def listing(registry: Registry | dict, pattern: str) -> list[tuple[str, str]]:
    """The names matching ``pattern`` in a registry (a :class:`Registry`, or a mapping of names to declarations,
    described by their docstrings), padded to one width, with their descriptions; plugins that failed to load are
    reported on stderr."""
    if isinstance(registry, Registry):
        named = [(name, registry.description(name)) for name in registry.names(pattern)]  # loads the plugins
        for broken, reason in registry.broken.items():
            click.echo(f"warning: plugin {broken!r} failed to load: {reason}", err=True)
    else:
        named = sorted((name, summary(item)) for name, item in registry.items() if fnmatch.fnmatchcase(name, pattern))
    width = max((len(name) for name, _ in named), default=0)
    return [(f"{name:<{width}}", description) for name, description in named]


def list_suites(pattern: str) -> None:
    """A table of the shipped suites matching ``pattern``: their size and the first sentence of their description."""
    from bench.suite import SuiteError, load_suite, suite_names

    rows = [("SUITE", "JOBS", "TRAININGS", "CELLS", "TRAIN/CLASS", "TEST/SOURCE", "DESCRIPTION")]
    for name in suite_names(pattern):
        try:
            suite = load_suite(name)
        except SuiteError as exc:
            rows.append((name, "", "", "", "", "", f"invalid: {str(exc).splitlines()[0]}"))
            continue
        rows.append((name, *suite_scale(suite), suite.description.split(". ")[0].strip()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    room = max(40, shutil.get_terminal_size().columns - sum(widths) - 2 * len(widths))
    for *columns, description in rows:  # counts right-aligned
        cells = [c.rjust(w) if 0 < i < 4 else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths, strict=True))]
        click.echo("  ".join([*cells, textwrap.shorten(description, room, placeholder=" ...")]).rstrip())


def suite_scale(suite: Suite) -> tuple[str, str, str, str, str]:
    """A suite's jobs, trainings (grid points included), cells, training images per class and test images per source."""
    jobs = len(suite.train) * len(suite.detectors) * len(suite.seeds)
    grid_points = sum(math.prod(len(values) for values in entry.grid.values()) for entry in suite.detectors)
    trainings = len(suite.train) * len(suite.seeds) * grid_points
    cells = jobs * len(suite.test_fakes()) * len(suite.perturbations)

    def images(limit: int | None) -> str:
        return "all" if limit is None else f"{limit:,}"

    per_class = "/".join(dict.fromkeys(images(train.limit) for train in suite.train))
    return f"{jobs:,}", f"{trainings:,}", f"{cells:,}", per_class, images(suite.test.limit)


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
    from bench.importers import import_cifake, locate_cifake
    from bench.sources import SourceStore

    location = path or locate_cifake(data_root, data_dir / "downloads")
    store = SourceStore(data_dir)
    for split in ("train", "test"):
        for label in LABELS:
            manifest = import_cifake(store, location, split, label, skip_bad=skip_bad, progress=None)
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
    from bench.importers import import_folder
    from bench.sources import SourceStore

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
    from bench.importers import import_npz
    from bench.sources import SourceStore

    manifest = import_npz(SourceStore(data_dir), path, name, label, split, key=key)
    click.echo(f"{manifest.name}: {manifest.count} images, sha256 {manifest.sha256[:12]}")


@data.command("show")
@click.argument("name")
@data_dir_option
@friendly_errors
def data_show(name: str, data_dir: Path) -> None:
    """Print the manifest of the cached source NAME (its pixels are checked against its sha256)."""
    from bench.sources import SourceStore

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
    import json
    from dataclasses import asdict

    from bench.audit import audit, render_report
    from bench.audit import deduplicate as deduplicate_source
    from bench.files import write_atomic
    from bench.provenance import stamp
    from bench.sources import SourceStore

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


LONG_RUN_SECONDS = 3 * 3600  # beyond this estimate, bench run asks for --yes on a terminal


@main.command()
@click.option("--suite", "suite_name", required=True, help="Shipped suite name (`bench list suites`) or YAML path.")
@data_dir_option
@data_root_option
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for this run's records/ and leaderboard  [default: runs/<suite name>]; name a folder "
              "under results/ to publish into it.")
@click.option("--train-limit", type=int, help="Override: training images per class.")
@click.option("--test-limit", type=int, help="Override: test images per source.")
@click.option("--epochs", type=int, help="Override: epochs for every detector.")
@click.option("--seeds", help="Override: comma-separated training seeds, e.g. 0,1,2.")
@click.option("--detectors", "detector_pattern", help="Override: detectors matching comma-separated wildcards.")
@click.option("--bootstrap", type=int, help="Override: bootstrap resamples per interval.")
@click.option("--add-detector", "add_detectors", multiple=True, help="Also run this registered detector, which "
              "the suite does not list (repeatable).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--executor", type=click.Choice(EXECUTORS.names()), default="local", show_default=True,
              help="Where jobs run (`bench list executors`): this machine, or Ray tasks (a local Ray instance, or "
              "--address).")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True,
              help="Jobs at once: worker processes sharing the GPU or splitting the CPU cores (ray: a local "
              "instance's job slots).")
@click.option("--address", help="Ray cluster to join: auto or HOST:PORT (ray executor; default: start one here).")
@click.option("--gpus-per-job", type=click.FloatRange(min=0), help="Ray: GPUs per job, fractions allowed "
              "[default: 1/--parallel when a GPU is present, else 0].")
@click.option("--cpus-per-job", type=click.FloatRange(min=0.01), default=1, show_default=True,
              help="Ray: CPUs per job.")
@click.option("--shared-cache", is_flag=True, help="Ray: workers read prepared data from --data-dir (a shared "
              "file system) instead of Ray's object store.")
@click.option("--threads", type=click.IntRange(min=1), help="Torch CPU threads per job [default: the suite's "
              "threads, else the cores split among --parallel workers]; 1 is often fastest on a busy machine.")
@click.option("--retrain", is_flag=True, help="Train every job again, replacing its cached checkpoints, and rescore "
              "every cell (edits to a plugin detector's code are picked up without it).")
@click.option("--dry-run", is_flag=True, help="Print the sources, jobs and cells with an estimated time; train "
              "and write nothing.")
@click.option("--yes", is_flag=True, help="Go on without asking when the estimate is longer than a few hours.")
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
    add_detectors: tuple[str, ...],
    device: str,
    executor: str,
    parallel: int,
    address: str | None,
    gpus_per_job: float | None,
    cpus_per_job: float,
    shared_cache: bool,
    threads: int | None,
    retrain: bool,
    dry_run: bool,
    yes: bool,
    progress: bool | None,
) -> None:
    """Run a suite: import sources, train detectors, score every cell, render the leaderboard.

    Cells whose record already exists are skipped, so rerunning an interrupted run resumes it. Without a
    terminal, one line per finished job is printed.
    """
    from bench.estimate import duration
    from bench.executors import make_executor
    from bench.runner import Runner
    from bench.suite import load_suite
    from bench.training import pick_device

    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds is not None else None  # '' is no list: refused
    except ValueError:
        raise click.BadParameter(f"{seeds!r} is not a comma-separated list of integers", param_hint="--seeds") from None
    suite = load_suite(suite_name).with_overrides(
        train_limit, test_limit, epochs, seed_list, detector_pattern, bootstrap, list(add_detectors)
    )
    chosen = pick_device(device)
    if gpus_per_job is None:
        gpus_per_job = 1 / parallel if chosen.type == "cuda" else 0.0
    terminal = sys.stderr.isatty()

    def report(line: str) -> None:
        if not terminal:
            click.echo(line, err=True)

    runner = Runner(
        data_dir, results or Path("runs") / suite.name, data_root, device, progress=progress, report=report,
        threads=threads, retrain=retrain,
        executor=make_executor(executor, ExecutorOptions(parallel, address, gpus_per_job, cpus_per_job, shared_cache)),
    )
    if dry_run:
        click.echo(runner.dry_run(suite).text())
        return

    def before(estimate) -> None:
        click.echo(f"{suite.name}: {estimate.line()}", err=True)
        if estimate.wall > LONG_RUN_SECONDS:
            click.echo(f"warning: this run is estimated at {duration(estimate.wall)} on {estimate.device}; "
                       "on a CPU, `bench run --suite quickstart` is the cross-generator matrix at CPU scale", err=True)
            if terminal and not yes:
                raise click.ClickException("not started: pass --yes to run it anyway")

    try:
        summary = runner.run(suite, before=before)
    except KeyboardInterrupt:  # workers are stopped; every record written so far is complete and kept
        click.echo("\ninterrupted: the cells recorded so far are kept; rerun the same command to resume", err=True)
        raise SystemExit(130) from None
    click.echo(f"{len(summary.computed)} cells computed, {len(summary.skipped)} reused from earlier runs; "
               f"leaderboard: {summary.leaderboard['markdown']}", err=True)
    for failure in summary.failed:
        click.echo(f"failed: {failure.label}: {failure.reason}", err=True)
    if summary.failed:
        raise click.ClickException(
            f"{len(summary.failed)} job{'s' if len(summary.failed) != 1 else ''} failed (above; kept in "
            f"{runner.results_dir / 'failures'} and shown as failed in the leaderboard), the other cells are "
            "published: fix the cause and rerun the same command, which runs only what is missing")


@main.group()
def leaderboard() -> None:
    """Render leaderboards from result records, and compare two sets of records."""


@leaderboard.command("render")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--title", help="Leaderboard title (default: the suite named in the records).")
@click.option("--description", help="The paragraph under the title (default: the suite description of the newest "
              "record), e.g. to replace a figure that went stale in older records' description.")
@friendly_errors
def leaderboard_render(directory: Path, title: str | None, description: str | None) -> None:
    """Re-render DIRECTORY/leaderboard.{md,csv,json,html} from the records in DIRECTORY/records/."""
    from bench.integrity import ScoreFiles, check_records
    from bench.leaderboard import write_leaderboard
    from bench.publish import load_failures
    from bench.records import load_records

    loaded, scores = load_records(directory), ScoreFiles(directory)  # score files read and resampled once
    check_records(loaded, scores)  # a record whose numbers its score file contradicts is refused, by file and field
    records, failures = list(loaded.values()), load_failures(directory)
    if not records and not failures:
        raise click.ClickException(f"no records in {directory / 'records'}: run a suite first")
    title = title or (records[0].suite if records else failures[0]["suite"])
    newest = max(records, key=lambda r: r.provenance.created, default=None)
    if description is None:
        description = (newest.suite_config or {}).get("description", "") if newest else ""
    out = write_leaderboard(records, directory, title, description, failures=failures, scores=scores)
    click.echo(out["markdown"])


@leaderboard.command("diff")
@click.argument("old", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Largest real drop of a metric that is not a regression (0.01: one point of accuracy).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Markdown report here instead of printing it.")
@click.option("--seed-spread", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Results folder whose spread across seeds is the noise floor of one-seed cells "
              "(default: OLD's, else NEW's).")
@friendly_errors
def leaderboard_diff(old: Path, new: Path, tolerance: float, output: Path | None, seed_spread: Path | None) -> None:
    """Compare the records of the results folders OLD and NEW cell by cell, as Markdown.

    Cells are matched by detector, training set, test source, perturbation and seed. With several seeds on both
    sides a cell is tested as its mean over seeds; a one-seed cell gets the paired image test plus the cell's
    variance across seeds where a folder has several. Exits with status 1 when a metric got worse by more than
    --tolerance and the change is real after Holm's correction.
    """
    from bench.diff import diff_records
    from bench.files import write_atomic
    from bench.records import load_records

    reference = load_records(seed_spread) if seed_spread else None
    result = diff_records(load_records(old), load_records(new), tolerance, reference=reference)
    report = result.markdown(str(old), str(new))
    if output:
        write_atomic(output, report.encode())
    else:
        click.echo(report, nl=False)
    if result.regressions:
        raise SystemExit(1)


@main.command()
@click.argument("directories", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--limit", type=click.IntRange(min=10),
              help="Re-measure on at most N test images per source; compare with the published intervals.")
@click.option("--tolerance", type=click.FloatRange(min=0),
              help="Allowed distance of every metric and attribution score from its published value (with --limit: "
              "from its interval). Default: per number, its standard deviation across the cell's other training "
              "seeds as published (at least 0.005; 0.01 where the cell has fewer than two other seeds).")
@click.option("--detectors", "detector_pattern", help="Only records of detectors matching comma-separated wildcards.")
@data_dir_option
@data_root_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when on a terminal).")
@friendly_errors
def verify(
    directories: tuple[Path, ...],
    limit: int | None,
    tolerance: float | None,
    detector_pattern: str | None,
    data_dir: Path,
    data_root: Path | None,
    device: str,
    progress: bool | None,
) -> None:
    """Re-measure the published records in DIRECTORIES (default: every results/*/ folder) and compare.

    Each record's suite is rebuilt from the record, restricted to its detector, and run again in a
    temporary folder against --data-dir (cached checkpoints are reused). Metrics and attribution scores
    must come back within their tolerance (see --tolerance), decision thresholds to 1e-6 relative and
    source-attribution counts exactly, and not-applicable cells not applicable. Prints a report of every
    number that drifted, with the tolerance it was checked against, and exits with status 1; prints
    nothing when all agree. Thresholds of records trained on another CPU are reported, not failed.
    """
    from bench.verify import verify as verify_records

    folders = list(directories) or sorted(p.parent for p in Path("results").glob("*/records"))
    if not folders:
        raise click.ClickException("no results folders given and none with records/ under results/")
    result = verify_records(folders, data_dir, data_root, tolerance, limit, detector_pattern, device, progress)
    logging.getLogger(__name__).info("%s", result.summary())
    if not result.records:
        raise click.ClickException(f"no records of detectors matching {detector_pattern!r} in {folders}")
    if not result.ok or result.not_comparable:
        click.echo(result.markdown(), nl=False)
    if not result.ok:
        raise SystemExit(1)


@main.group()
def new() -> None:
    """Create plugin packages from templates."""


@new.command("detector")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder in which the package folder bench-NAME is created.")
@friendly_errors
def new_detector_command(name: str, directory: Path) -> None:
    """Create bench-NAME/, a pip-installable package adding the detector NAME (prints its path).

    It holds a pyproject.toml with the bench.detectors entry point, a module with the registered model
    factory to edit, a suite running it beside LeNet, and a README on installing, running and submitting.
    """
    from bench.scaffold import new_detector

    click.echo(new_detector(name, directory))


def parse_settings(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    """``key=value`` pairs as a dict, each value read as YAML (``8``, ``[8, 16]``, ``null``, ``ddim``)."""
    import yaml

    settings = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", ctx=ctx, param=param)
        try:
            settings[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{item!r}: the value is not valid YAML ({exc})", ctx=ctx, param=param) from None
    return settings


@main.command()
@click.argument("generator")
@click.option("--train-source", help="Cached real source to train on (not needed for pretrained weights).")
@click.option("--count", type=click.IntRange(min=1), required=True, help="Number of images to generate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for training and sampling.")
@click.option("--name", required=True, help="Name of the new fake source, e.g. dcgan-cifar10.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "test"]))
@click.option("--set", "settings", multiple=True, callback=parse_settings, metavar="KEY=VALUE",
              help="Generator setting (repeatable), value read as YAML, e.g. --set epochs=5 --set sampler=dpm.")
@data_dir_option
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when on a terminal).")
@friendly_errors
def generate(
    generator: str,
    train_source: str | None,
    count: int,
    seed: int,
    name: str,
    split: str,
    settings: dict,
    data_dir: Path,
    progress: bool | None,
) -> None:
    """Train GENERATOR (unless cached or pretrained), sample COUNT images and store them as a fake source.

    `bench list generators` names the generators. Rerunning with the same settings reuses the cached model
    and source.
    """
    from bench.generator import generate_source

    manifest = generate_source(data_dir, generator, settings, train_source, count, seed, name, split, progress)
    click.echo(f"{manifest.name}: {manifest.count} images, sha256 {manifest.sha256[:12]}")


@main.command()
@click.argument("sources", metavar="SOURCE...", nargs=-1, required=True)
@click.option("--spectrum", is_flag=True, help="Draw the mean Fourier spectra of all SOURCEs and their radial profiles "
              "in one figure, instead of a grid per source.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG file to write  [default: SOURCE.png, or spectrum-SOURCE_SOURCE.png with --spectrum, in the "
                   "current folder]")
@click.option("--count", type=click.IntRange(min=1), default=64, show_default=True,
              help="Number of images in a grid (a spectrum is the mean over all images).")
@click.option("--scale", type=click.IntRange(min=1), default=4, show_default=True, help="Enlargement factor of a grid.")
@data_dir_option
@friendly_errors
def show(sources: tuple[str, ...], spectrum: bool, out: Path | None, count: int, scale: int, data_dir: Path) -> None:
    """Write a PNG grid of the first images of each cached SOURCE, enlarged so that they can be looked at.

    With --spectrum, write one figure instead: the mean log-magnitude Fourier spectrum of each SOURCE side by
    side, and their azimuthal averages (radial profiles) in one plot, where generators' traces show.
    """
    from bench.sources import SourceStore

    store = SourceStore(data_dir)
    if spectrum:
        from bench.files import write_atomic
        from bench.spectrum import mean_log_spectrum, spectrum_figure

        spectra, counts = {}, {}
        for name in sources:
            images = store.load(name).images
            spectra[name], counts[name] = mean_log_spectrum(images), len(images)
        out = out or Path(f"spectrum-{'_'.join(sources)}.png")
        write_atomic(out, spectrum_figure(spectra))
        click.echo(f"wrote {out}: mean spectra of " + ", ".join(f"{n} ({c:,} images)" for n, c in counts.items()))
        return
    if out is not None and len(sources) > 1:
        raise click.UsageError("--out names one file: give one SOURCE, or leave --out out to write SOURCE.png each")
    from bench.preview import save_grid

    for source in sources:
        images = store.load(source).images[:count]
        path = out or Path(f"{source}.png")
        save_grid(images, path, scale)
        click.echo(f"wrote {path}: {len(images)} images of {source}")


@main.command("export")
@click.option("--record", "record_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Export the checkpoint this results record was scored with (results/X/records/Y.json).")
@click.option("--suite", "suite_name", help="Or: the suite (name or YAML path) that trained it, with --detector, "
              "--train-set and --seed.")
@click.option("--detector", help="With --suite: the detector.")
@click.option("--train-set", help="With --suite: the training set's name.")
@click.option("--seed", type=int, help="With --suite: the training seed.")
@click.option("--train-limit", type=int, help="With --suite: the override the run used, if any.")
@click.option("--epochs", type=int, help="With --suite: the override the run used, if any.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Weights file to write; the card (.json, .md) and suite (.suite.yaml) go beside it  "
              "[default: exports/DETECTOR-TRAINSET-seedN.safetensors]")
@data_dir_option
@data_root_option
@friendly_errors
def export_command(record_path: Path | None, suite_name: str | None, detector: str | None, train_set: str | None,
                   seed: int | None, train_limit: int | None, epochs: int | None, out: Path | None, data_dir: Path,
                   data_root: Path | None) -> None:
    """Write a checkpoint the harness trained as safetensors, with a model card and the suite that reproduces it.

    The card (JSON and Markdown) gives the detector and kwargs, recipe, training sources with their hashes, seed,
    threshold, validation metrics and the command that retrains the same checkpoint. Nothing is trained: the
    checkpoint must be in --data-dir's cache.
    """
    from bench.export import export_job, export_record

    by_suite = (suite_name, detector, train_set, seed)
    if (record_path is None) == all(v is None for v in by_suite):
        raise click.UsageError("give --record FILE, or --suite with --detector, --train-set and --seed")
    if record_path is not None:
        exported = export_record(record_path, data_dir, out)
    else:
        if any(v is None for v in by_suite):
            raise click.UsageError("--suite needs --detector, --train-set and --seed")
        from bench.suite import load_suite

        suite = load_suite(suite_name).with_overrides(train_limit=train_limit, epochs=epochs)
        exported = export_job(suite, detector, train_set, seed, data_dir, data_root, out)
    click.echo(f"wrote {exported.weights} (sha256 {exported.sha256[:12]}), model card {exported.card} and "
               f"{exported.markdown}, reproducing suite {exported.suite}")


@main.command("predict")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--weights", type=click.Path(path_type=Path), help="Weights: .safetensors, or a PyTorch .pt/.pth "
              "state dict (read with weights_only; a file needing full unpickling is refused).")
@click.option("--detector", help="Registered detector the weights belong to (`bench list detectors`); an export of "
              "`bench export` names its own.")
@click.option("--kwarg", "kwargs", multiple=True, callback=parse_settings, metavar="KEY=VALUE",
              help="Detector argument (repeatable), value read as YAML.")
@click.option("--strip-prefix", help="Remove this prefix from the weights' names (e.g. module.).")
@click.option("--add-prefix", help="Put this prefix in front of every name of the weights.")
@click.option("--record", "record_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Instead of --weights: the weights and threshold a results record was scored with.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Fake at this probability or above  [default: the record's or export's threshold, else 0.5]")
@click.option("--logit-threshold", type=float, help="Or: fake at this logit or above.")
@click.option("--input-size", "adapt", type=click.Choice(["resize", "center-crop"]),
              help="How square images of another side reach the detector  [default: the record's or export's, "
              "else resize]")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every image's row here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every image's row, the skipped files and the settings here.")
@click.option("--show", type=click.IntRange(min=0), default=20, show_default=True, help="Images printed in the table.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Threads decoding images.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(min=1), help="Torch CPU threads.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal; plain lines "
              "otherwise).")
@data_dir_option
@friendly_errors
def predict_command(paths: tuple[Path, ...], weights: Path | None, detector: str | None, kwargs: dict,
                    strip_prefix: str | None, add_prefix: str | None, record_path: Path | None,
                    threshold: float | None, logit_threshold: float | None, adapt: str | None,
                    csv_path: Path | None, json_path: Path | None, show: int, batch_size: int, workers: int,
                    device: str, threads: int | None, progress: bool | None, data_dir: Path) -> None:
    """Score image files and folders (any size, recursively): each image's fake probability and verdict.

    Prints a table (the first --show images) and a summary; --csv and --json get every image. A non-square image
    is centre-cropped to its largest square, then brought to the detector's input size (resized, bilinear and
    antialiased; or centre-cropped with --input-size center-crop). Files that cannot be used (unreadable, empty,
    not 8-bit RGB) are listed and skipped.
    """
    import torch

    from bench.predict import PredictError, collect, from_record, from_weights, run_predict
    from bench.training import pick_device

    if (weights is None) == (record_path is None):
        raise click.UsageError("give --weights FILE (with --detector unless it is an export) or --record FILE")
    if record_path is not None and (detector or kwargs or strip_prefix or add_prefix or adapt):
        raise click.UsageError("--record brings its detector, arguments, weights and input policy: leave out "
                               "--detector, --kwarg, --strip-prefix, --add-prefix and --input-size")
    if threshold is not None and logit_threshold is not None:
        raise PredictError("give --threshold (a probability) or --logit-threshold, not both")
    if threads:
        torch.set_num_threads(threads)
    if record_path is not None:
        predictor = from_record(record_path, data_dir, threshold, logit_threshold)
    else:
        predictor = from_weights(weights, detector, kwargs or None, strip_prefix, add_prefix, threshold,
                                 logit_threshold, adapt)
    run_predict(predictor, collect(list(paths)), pick_device(device), csv_path, json_path, batch_size, workers,
                progress, show, click.echo)
