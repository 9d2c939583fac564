"""Suites: YAML files saying which detectors, trained on which sources, are tested on which sources.

A suite is validated against the schema below when it is loaded, so that nothing a suite says fails only
after training: perturbation parameters, detector arguments and recipe values are checked against what their
functions accept, duplicates and two names for the same images are refused. An error names the key, the bad
value and what is allowed. Suite files are untrusted input: their size and the number of YAML nodes after
alias expansion are capped before any Python object is built. Size knobs (subset limits, epochs, seeds,
bootstrap resamples) can be overridden from the command line without editing the file.

A suite file may ``include:`` others (shared declarations such as ``suites/_cifake.yaml``; see
:func:`_with_includes` for the merge rules). Sources may carry ``tags``; training and test lists select sources
by name, pattern or :class:`TagSelector`; ``partition`` declares disjoint, seeded parts of sources (the ``part``
importer, :mod:`bench.parts`).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import json
import operator
import re
from collections.abc import Callable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import yaml
from pydantic import BaseModel, Field, SerializeAsAny, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic.errors import PydanticSchemaGenerationError

from bench.attribution import ATTRIBUTIONS, AttributionSettings
from bench.config import Strict, explain
from bench.detector import DETECTORS
from bench.encoding import Encoding
from bench.importer import SourceSpec
from bench.importers import PartSource
from bench.metrics import METRICS, metric_named
from bench.perturbations import PerturbationEntry
from bench.recipe import Recipe, RecipeProfile
from bench.sources import NAME_PATTERN
from bench.weights import WEIGHT_SUFFIXES, logit_to_probability, probability_to_logit

MAX_SUITE_BYTES = 1_000_000
MAX_SUITE_NODES = 100_000  # YAML nodes after alias expansion; the shipped suites have a few hundred
MAX_INCLUDES = 50  # distinct files one suite may include, directly or through other included files
TRAIN_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@+-]*$")  # source names' rule, plus '+' for joined sets


class SuiteError(ValueError):
    """A suite file is missing or invalid; the message names the key and the allowed values."""


def _recipe_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` if they are valid recipe fields and values (checked by building a Recipe with them)."""
    unknown = sorted(set(values) - set(Recipe.model_fields))
    if unknown:
        raise ValueError(f"unknown recipe field {unknown[0]!r}; allowed: {', '.join(sorted(Recipe.model_fields))}")
    try:
        Recipe.model_validate(values)
    except ValidationError as exc:
        raise ValueError(explain(exc)) from None
    return values


Condition = str | int | list[str | int] | dict[Literal["le", "lt", "ge", "gt", "ne"], str | int]
COMPARISONS = {"le": operator.le, "lt": operator.lt, "ge": operator.ge, "gt": operator.gt, "ne": operator.ne}
WILDCARDS = frozenset("*?[")


def _holds(value: str | int, condition: Condition) -> bool:
    """Whether a tag's value meets a condition: equal to a value, one of a list, or every comparison (a value of
    another type than the bound never meets it)."""
    if isinstance(condition, dict):
        return all(type(value) is type(bound) and COMPARISONS[op](value, bound) for op, bound in condition.items())
    if isinstance(condition, list):
        return value in condition
    return value == condition


class TagSelector(Strict):
    """Sources selected by their tags, e.g. ``{tag: {kind: gan, year: {le: 2017}}}``: every condition must hold. A
    condition is a value (equal), a list (any of them) or comparisons (le, lt, ge, gt, ne); a source without the
    tag never matches."""

    tag: dict[str, Condition] = Field(min_length=1)

    @field_validator("tag")
    @classmethod
    def _comparisons(cls, tag: dict[str, Condition]) -> dict[str, Condition]:
        empty = [key for key, condition in tag.items() if isinstance(condition, dict | list) and not condition]
        if empty:
            raise ValueError(f"tag {empty[0]!r}: give a value, a list of values or comparisons (le, lt, ge, gt, ne)")
        return tag

    def matches(self, tags: dict[str, str | int]) -> bool:
        return all(key in tags and _holds(tags[key], condition) for key, condition in self.tag.items())

    def __str__(self) -> str:
        return yaml.safe_dump(self.model_dump(), default_flow_style=True, sort_keys=False).strip()


Selection = str | TagSelector


def describe_selection(selection: Selection) -> str:
    """A name, pattern or tag selector as a suite writes it, for messages."""
    return str(selection) if isinstance(selection, TagSelector) else repr(selection)


def select(sources: dict[str, SourceSpec], selection: Selection, label: str | None = None,
           split: str | None = None) -> list[str]:
    """The declared sources with ``label`` and ``split`` (any when None) that ``selection`` picks, in declaration
    order: a name, a wildcard pattern such as ``"*"``, or a :class:`TagSelector`."""
    def picked(name: str, spec: SourceSpec) -> bool:
        if isinstance(selection, TagSelector):
            return selection.matches(spec.tags)
        return fnmatch.fnmatchcase(name, selection)

    return [name for name, spec in sources.items() if label in (None, spec.label) and split in (None, spec.split)
            and picked(name, spec)]


class Partition(Strict):
    """Disjoint, seeded parts of the declared sources that ``of`` selects: each selected source S gets one source
    per part, named ``S.<part>`` (the ``part`` importer), with S's label and tags plus ``part: <part>``; a part's
    name is its split, e.g. ``{of: {tag: {year: {le: 2017}}}, parts: {train: 0.5, test: 0.5}, seed: 0}``."""

    of: Selection
    parts: dict[Literal["train", "test"], float] = Field(min_length=1)
    seed: int = Field(0, ge=0, description="seed of the split")


def _resolved(items: list[Any], specs: dict[str, SourceSpec], label: str, where: str) -> list[Any]:
    """A training list with its patterns and tag selectors replaced by the names of the declared training sources
    (split 'train') with ``label`` that they select; an error names a selector that selects none."""
    names: list[Any] = []
    for item in items:
        if isinstance(item, str) and not WILDCARDS & set(item):
            names.append(item)  # a name: checked with the other references
            continue
        try:
            selection = item if isinstance(item, str | TagSelector) else TagSelector.model_validate(item)
        except ValidationError as exc:
            raise ValueError(f"{where}: {item!r} is neither a source name, a pattern nor a tag selector such as "
                             f"{{tag: {{kind: gan}}}} ({explain(exc)})") from None
        chosen = select(specs, selection, label, "train")
        if not chosen:
            raise ValueError(f"{where}: {describe_selection(selection)} selects no declared {label} source with "
                             f"split 'train' (tags: {_tags_in(specs)})")
        names += chosen
    return list(dict.fromkeys(names))


def _tags_in(specs: dict[str, SourceSpec]) -> str:
    """The tags the declared sources carry and their values, for messages."""
    values: dict[str, set] = {}
    for spec in specs.values():
        for key, value in spec.tags.items():
            values.setdefault(key, set()).add(value)
    return "; ".join(f"{k}: {', '.join(sorted(map(str, v)))}" for k, v in sorted(values.items())) or "none"


class TrainSet(Strict):
    """Training data: real and fake sources, with an optional per-class subset size. A list may name sources,
    or select them by pattern or :class:`TagSelector` among the training sources (split 'train') of its label;
    the suite replaces those with the names they select when it loads."""

    name: str
    real: list[str] = Field(min_length=1)
    fake: list[str] = Field(min_length=1)
    limit: int | None = Field(None, ge=10, description="images per class (None: all)")
    attribute_sources: bool = Field(
        False, description="train one class per fake source besides real (source attribution); detection "
        "scores the log-odds of 'not real', and records say which class each test image was given"
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not TRAIN_NAME_PATTERN.match(name):
            raise ValueError(f"training set name {name!r}: use lower-case letters, digits, '.', '_', '-', '@', '+', "
                             "starting with a letter or digit (it names table rows and files)")
        return name

    @model_validator(mode="after")
    def _sources_to_attribute(self) -> TrainSet:
        if self.attribute_sources and len(self.fake) < 2:
            raise ValueError("attribute_sources needs at least two fake sources to tell apart")
        return self


class TestSet(Strict):
    """Test data: one real source scored against each fake source (names, wildcard patterns or tag selectors,
    among the declared fake sources with split 'test')."""

    real: str
    fake: list[Selection] = Field(min_length=1)
    limit: int | None = Field(None, ge=10, description="images per source (None: all)")


class FixedThreshold(Strict):
    """A decision threshold a suite states for weights trained elsewhere: a probability or a logit (one of them)."""

    probability: float | None = Field(None, gt=0, lt=1, description="predict fake at this probability or above")
    logit: float | None = Field(None, description="predict fake at this logit or above")

    @model_validator(mode="after")
    def _one(self) -> FixedThreshold:
        if (self.probability is None) == (self.logit is None):
            raise ValueError("give the threshold as either probability (e.g. 0.5) or logit (e.g. 0.0), one of them")
        return self

    @property
    def value(self) -> float:
        """The threshold as a logit, what detectors output."""
        return probability_to_logit(self.probability) if self.logit is None else self.logit

    def describe(self) -> str:
        """e.g. ``fixed: probability 0.5 (logit 0)``."""
        if self.logit is None:
            return f"fixed: probability {self.probability:g} (logit {self.value:.6g})"
        return f"fixed: logit {self.logit:g} (probability {logit_to_probability(self.logit):.6g})"


def _annotation_adapter(factory: Callable[..., Any], parameter: str) -> TypeAdapter | None:
    """A validator of the factory parameter's annotation; None without one, or for one that names something the
    plugin imports only for type checkers."""
    annotation = getattr(factory, "__annotations__", {}).get(parameter)
    if annotation is None:
        return None
    try:
        hints = get_type_hints(SimpleNamespace(__annotations__={parameter: annotation}),
                               globalns=getattr(factory, "__globals__", {}))
        return TypeAdapter(hints[parameter])
    except (NameError, TypeError, PydanticSchemaGenerationError):
        return None


SEED_FIELD = "{seed}"  # in an evaluate-only weights path: the training seed


class DetectorEntry(Strict):
    """One detector of a suite: its constructor arguments, recipe overrides and hyperparameter grid; or, with
    ``weights``, a detector trained elsewhere that is scored as it is (evaluate-only)."""

    name: str
    kwargs: dict[str, Any] = {}
    recipe: dict[str, Any] = {}
    grid: dict[str, list[Any]] = Field({}, description="recipe field -> values; the best is chosen on validation")
    pretrained: str | None = None
    weights: str | None = Field(None, description="evaluate-only: a .safetensors file or a PyTorch .pt/.pth state dict "
                                "(loaded with weights_only) scored as it is, never trained here; a path holding "
                                "{seed} names one file per training seed (weights released for several seeds), "
                                "each scored as that seed")
    strip_prefix: str | None = Field(None, description="evaluate-only: removed from the front of the weights' "
                                     "names, e.g. 'module.'")
    add_prefix: str | None = Field(None, description="evaluate-only: put in front of every name of the weights")
    threshold: FixedThreshold | None = Field(None, description="evaluate-only: a fixed decision threshold, "
                                             "{probability: P} or {logit: Z} (default: probability 0.5)")
    calibrate: list[str] = Field([], description="evaluate-only: training sets whose validation split chooses the "
                                 "threshold, by the rule training uses; the detector is listed beside each of them "
                                 "(without it, beside every training set, at the fixed threshold)")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return DETECTORS.validate(name)

    @field_validator("recipe")
    @classmethod
    def _recipe(cls, recipe: dict[str, Any]) -> dict[str, Any]:
        return _recipe_overrides(recipe)

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for field, values in grid.items():
            if not values:
                raise ValueError(f"grid {field!r} has no values")
            for value in values:
                _recipe_overrides({field: value})
        return grid

    @model_validator(mode="after")
    def _arguments(self) -> DetectorEntry:
        """Every kwarg is an argument of the detector's factory (any name if it takes ``**kwargs``)."""
        if "num_classes" in self.kwargs:
            raise ValueError("kwargs: num_classes is set by bench (1, or one per class with attribute_sources)")
        parameters = inspect.signature(DETECTORS.get(self.name).factory).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            return self
        accepted = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                    and p.name != "num_classes"]
        unknown = sorted(set(self.kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"kwargs: detector {self.name!r} takes no argument(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(accepted) or 'none'}")
        return self

    @model_validator(mode="after")
    def _argument_types(self) -> DetectorEntry:
        """Every kwarg's value fits its factory parameter's annotation, read as JSON reads it (a list for a tuple,
        an int for a float; never a string or a float for an int); an annotation that cannot be resolved outside
        the plugin's type checking is not checked."""
        factory = DETECTORS.get(self.name).factory
        for key, value in self.kwargs.items():
            adapter = _annotation_adapter(factory, key)
            if adapter is None:
                continue
            try:
                adapter.validate_json(json.dumps(value, default=str), strict=True)
            except ValidationError as exc:
                raise ValueError(f"kwargs: {key}: {value!r} is not what detector {self.name!r} takes there "
                                 f"({exc.errors()[0]['msg']})") from None
        return self

    @model_validator(mode="after")
    def _evaluate_only(self) -> DetectorEntry:
        """``weights`` excludes training settings; the threshold and key options need ``weights``."""
        if self.weights is None:
            stray = [k for k in ("strip_prefix", "add_prefix", "threshold", "calibrate") if getattr(self, k)]
            if stray:
                raise ValueError(f"{', '.join(stray)}: only for a detector trained elsewhere; add weights: FILE")
            return self
        trained = [k for k in ("recipe", "grid", "pretrained") if getattr(self, k)]
        if trained:
            raise ValueError(f"{', '.join(trained)}: the detector's weights come from {self.weights} and it is not "
                             "trained here; leave these out")
        if Path(self.weights).suffix.lower() not in WEIGHT_SUFFIXES:
            raise ValueError(f"weights {self.weights!r}: give a {', '.join(WEIGHT_SUFFIXES)} file")
        if not DETECTORS.get(self.name).differentiable:
            raise ValueError(f"weights: detector {self.name!r} is an estimator, which takes no weights file")
        if self.threshold is not None and self.calibrate:
            raise ValueError("threshold and calibrate: give a fixed threshold or the training sets to choose it on, "
                             "not both")
        if len(set(self.calibrate)) < len(self.calibrate):
            raise ValueError(f"calibrate lists a training set twice ({self.calibrate})")
        return self

    @property
    def evaluate_only(self) -> bool:
        """Whether the detector's weights come from a file rather than from training here."""
        return self.weights is not None

    @property
    def weights_per_seed(self) -> bool:
        """Whether the weights path names one file per training seed (it holds ``{seed}``)."""
        return self.weights is not None and SEED_FIELD in self.weights

    def weights_file(self, seed: int) -> Path:
        """The weights file scored as training seed ``seed``."""
        return Path(self.weights.replace(SEED_FIELD, str(seed)))

    def threshold_rule(self) -> str:
        """How an evaluate-only detector's threshold is set, in words."""
        if self.calibrate:
            return ("chosen on the validation split of its training set's sources, by the rule training uses: the "
                    "highest balanced accuracy (Youden's J); test images are never used")
        return (self.threshold or FixedThreshold(probability=0.5)).describe()


class Suite(Strict):
    """A benchmark definition."""

    name: str
    description: str = ""
    seeds: list[Annotated[int, Field(ge=0)]] = Field([0], min_length=1)
    data_seed: int = Field(0, ge=0, description="seed of the subset draws, shared by all training seeds")
    sources: dict[str, SerializeAsAny[SourceSpec]]
    partition: list[Partition] = Field(
        [], description="disjoint, seeded parts of declared sources, each declared as a source '<source>.<part>'"
    )
    train: list[TrainSet] = Field(min_length=1)
    test: TestSet
    detectors: list[DetectorEntry] = Field(min_length=1)
    recipe_profile: RecipeProfile = Field(
        "default", description="'gpu': every network detector trains at its GPU batch size with the learning rate "
        "scaled to it (bench.recipe.LR_SCALING); the suite's and each detector's recipe overrides apply on top"
    )
    recipe: dict[str, Any] = Field({}, description="recipe overrides applied to every detector")
    perturbations: list[PerturbationEntry] = Field([PerturbationEntry(name="clean")], min_length=1)
    deduplicate: bool = Field(
        True, description="drop exact repeats within sources and test images whose pixels occur in training sources"
    )
    encoding: Encoding = Field(
        Encoding(), description="file encoding applied to every source, real and fake alike (bench.encoding)"
    )
    input_size: Literal["resize", "center-crop"] = Field(
        "resize", description="how images of another size reach a detector's input size: resized (bilinear, "
        "antialiased) or centre-cropped (only to a smaller size); recorded in every record"
    )
    attribution: AttributionSettings | None = Field(
        None, description="explain and score the detectors on the clean test images (bench.attribution)"
    )
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples per confidence interval (0: none)")
    ci_level: float = Field(0.95, gt=0, lt=1)
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads per job, fixed so that results do not depend on the machine's "
        "core count (None: `bench run --threads`, else the cores split among the workers); keys do not cover it"
    )
    headline_metrics: list[str] | None = Field(
        None, min_length=1, description="the metrics comparisons test and headlines quote, computed per run "
        "(`bench list metrics`; None: AUC and balanced accuracy); reports only, keys do not cover them"
    )

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """Declare the sources that ``partition`` makes, and replace the patterns and tag selectors of the training
        lists with the names they select. Idempotent: a suite's dump (which holds both) validates to itself."""
        if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
            return data
        try:
            specs = {name: SourceSpec.model_validate(raw) for name, raw in data["sources"].items()}
        except ValidationError:
            return data  # the validation of 'sources' reports it first
        sources, made_specs = dict(data["sources"]), {}
        partitions = data.get("partition") or []
        for i, raw in enumerate(partitions if isinstance(partitions, list) else []):
            try:
                entry = Partition.model_validate(raw)
            except ValidationError:
                continue  # reported by the validation of 'partition'
            chosen = select(specs, entry.of)
            made = {f"{base}.{part}" for base in chosen for part in entry.parts}
            bases = [name for name in chosen if name not in made]  # a dump also declares the parts themselves
            if not bases:
                raise ValueError(f"partition.{i}.of: {describe_selection(entry.of)} selects no declared source "
                                 f"(tags: {_tags_in(specs)})")
            for base in bases:
                for part in entry.parts:
                    name, spec = f"{base}.{part}", specs[base]
                    derived = PartSource.declaration(base, spec, entry.parts, part, entry.seed)
                    try:
                        made_specs[name] = SourceSpec.model_validate(derived)
                    except ValidationError as exc:
                        raise ValueError(f"partition.{i}: {explain(exc)}") from None
                    if name in data["sources"] and specs.get(name) != made_specs[name]:
                        raise ValueError(f"source {name!r} is declared and also made by partition.{i}: rename it")
                    sources[name] = derived
        specs |= made_specs
        result = {**data, "sources": sources}
        if isinstance(data.get("train"), list):
            result["train"] = [
                {**entry, **{label: _resolved(entry[label], specs, label, f"train '{entry.get('name')}' {label}")
                             for label in ("real", "fake") if isinstance(entry.get(label), list)}}
                if isinstance(entry, dict) else entry
                for entry in data["train"]
            ]
        return result

    @field_validator("attribution")
    @classmethod
    def _attribution_methods(cls, settings: AttributionSettings | None) -> AttributionSettings | None:
        for name in settings.methods if settings else []:
            ATTRIBUTIONS.validate(name)
        return settings

    @field_validator("headline_metrics")
    @classmethod
    def _per_run_metrics(cls, names: list[str] | None) -> list[str] | None:
        for name in names or []:
            try:
                metric_named(name)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
            if name not in METRICS:
                raise ValueError(f"{name!r} is not computed per run, which comparisons need: choose from "
                                 f"{', '.join(METRICS)}")
        if names and len(set(names)) < len(names):
            raise ValueError(f"a metric is listed twice ({names}): list each once")
        return names

    @field_validator("name")
    @classmethod
    def _file_name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError("the suite name names its results folder: use lower-case letters, digits, '.', '_', "
                             "'-', '@', starting with a letter or digit")
        return name

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seed(s) {', '.join(map(str, repeated))} listed twice: list each seed once")
        return seeds

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        for name in sources:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"source name {name!r}: use lower-case letters, digits, '.', '_', '-', '@'")
        return sources

    @field_validator("train")
    @classmethod
    def _distinct_train_names(cls, train: list[TrainSet]) -> list[TrainSet]:
        names = [t.name for t in train]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"entries {names.index(name)} and {i} are both named {name!r}: give each "
                                 "training set its own name")
        return train

    @field_validator("recipe")
    @classmethod
    def _recipe(cls, recipe: dict[str, Any]) -> dict[str, Any]:
        return _recipe_overrides(recipe)

    @field_validator("detectors")
    @classmethod
    def _distinct_detectors(cls, detectors: list[DetectorEntry]) -> list[DetectorEntry]:
        seen: list[tuple[str, dict]] = []
        for i, entry in enumerate(detectors):
            if (entry.name, entry.kwargs) in seen:
                raise ValueError(f"entries {seen.index((entry.name, entry.kwargs))} and {i} are both {entry.name!r} "
                                 f"with kwargs {entry.kwargs}: records could not tell them apart; keep one")
            seen.append((entry.name, entry.kwargs))
        return detectors

    @model_validator(mode="after")
    def _calibration_sets(self) -> Suite:
        """An evaluate-only detector calibrates on training sets of this suite (never on test sources)."""
        names = [t.name for t in self.train]
        for entry in self.detectors:
            unknown = [n for n in entry.calibrate if n not in names]
            if unknown:
                raise ValueError(f"detector {entry.name!r}: calibrate names {', '.join(map(repr, unknown))}, not a "
                                 f"training set of this suite ({', '.join(names)}); name training sets, whose sources "
                                 "are never test sources")
        return self

    @field_validator("perturbations")
    @classmethod
    def _distinct_perturbations(cls, perturbations: list[PerturbationEntry]) -> list[PerturbationEntry]:
        seen: list[tuple[str, dict]] = []
        for i, entry in enumerate(perturbations):
            effective = (entry.name, entry.effective_params())
            if effective in seen:
                raise ValueError(f"entries {seen.index(effective)} and {i} are both {entry.name!r} with parameters "
                                 f"{effective[1]} (defaults included): keep one")
            seen.append(effective)
        return perturbations

    @model_validator(mode="after")
    def _references(self) -> Suite:
        declared = ", ".join(sorted(self.sources))
        for train in self.train:
            for label in ("real", "fake"):
                for name in getattr(train, label):
                    self._check_source(name, label, f"train '{train.name}' {label}", declared)
                    if self.sources[name].split != "train":
                        raise ValueError(f"train '{train.name}': source {name!r} has split "
                                         f"'{self.sources[name].split}'; training uses split 'train' only")
        for name, spec in self.sources.items():
            for key, (source, label) in spec.inputs().items():
                self._check_source(source, label, f"sources.{name}.{key}", declared)
        self._check_source(self.test.real, "real", "test real", declared)
        for selection in self.test.fake:
            if not select(self.sources, selection, "fake", "test"):
                raise ValueError(f"test fake {describe_selection(selection)} matches no declared fake test source "
                                 f"(split 'test'; declared: {declared}; tags: {_tags_in(self.sources)})")
        if any(t.attribute_sources for t in self.train):
            for entry in self.detectors:
                if not DETECTORS.get(entry.name).attributes_sources:
                    raise ValueError(f"detector {entry.name!r} cannot attribute sources (its factory takes no "
                                     "'num_classes'): leave it out or set attribute_sources: false")
        used_in_training = {n for t in self.train for n in [*t.real, *t.fake]}
        for name in [self.test.real, *self.test_fakes()]:
            if name in used_in_training:
                raise ValueError(f"source {name!r} is used for both training and testing")
        return self

    @model_validator(mode="after")
    def _no_aliases(self) -> Suite:
        """Refuse two names for the same images among the test sources, or between a test and a training source,
        and two training sets drawing on the same sources alike."""
        testing = [self.test.real, *self.test_fakes()]
        training = sorted({n for t in self.train for n in [*t.real, *t.fake]})
        for i, name in enumerate(testing):
            reads, what = self._reads(name)
            for other in testing[:i]:
                if self._reads(other)[0] == reads:
                    raise ValueError(f"test sources {other!r} and {name!r} are the same images ({what}): "
                                     "declare them once")
            for other in training:
                if self._reads(other)[0] == reads:
                    raise ValueError(f"test source {name!r} and training source {other!r} are the same images "
                                     f"({what}): test on images the detectors were not trained on")
        seen: dict[str, str] = {}
        for train in self.train:
            draws = (sorted(self._reads(n)[0] for n in train.real), sorted(self._reads(n)[0] for n in train.fake),
                     train.limit, train.attribute_sources)
            if repr(draws) in seen:
                raise ValueError(f"train sets {seen[repr(draws)]!r} and {train.name!r} draw the same real and fake "
                                 "images: records could not tell them apart; keep one")
            seen[repr(draws)] = train.name
        return self

    def _reads(self, name: str) -> tuple[tuple, str]:
        """What the declared source ``name``'s images are determined by, and that in words (its config says)."""
        return self.sources[name].reads(name)

    def _check_source(self, name: str, label: str, where: str, declared: str) -> None:
        if name not in self.sources:
            raise ValueError(f"{where}: source {name!r} is not declared under 'sources' (declared: {declared})")
        if self.sources[name].label != label:
            raise ValueError(f"{where}: source {name!r} is labelled {self.sources[name].label!r}, expected {label!r}")

    def used_sources(self) -> list[str]:
        """The declared sources a run needs, in declaration order: those the training and test lists use, and the
        sources those are made from (a generator's training data, a perturbed or split source's input)."""
        needed = {n for t in self.train for n in [*t.real, *t.fake]} | {self.test.real, *self.test_fakes()}
        pending = list(needed)
        while pending:
            spec = self.sources[pending.pop()]
            for name, _ in spec.inputs().values():
                if name not in needed:
                    needed.add(name)
                    pending.append(name)
        return [name for name in self.sources if name in needed]

    def test_fakes(self) -> list[str]:
        """The fake test sources: declared fake, split 'test' sources selected by the test list, in order."""
        return list(dict.fromkeys(name for selection in self.test.fake
                                  for name in select(self.sources, selection, "fake", "test")))

    def with_overrides(
        self,
        train_limit: int | None = None,
        test_limit: int | None = None,
        epochs: int | None = None,
        seeds: list[int] | None = None,
        detectors: str | None = None,
        bootstrap: int | None = None,
        add_detectors: list[str] | None = None,
    ) -> Suite:
        """A copy with command-line size knobs applied (and validated); ``add_detectors`` appends registered
        detectors the suite does not list (with their default recipe)."""
        data = self.model_dump()
        if train_limit is not None:
            for train in data["train"]:
                train["limit"] = train_limit
        if test_limit is not None:
            data["test"]["limit"] = test_limit
        if epochs is not None:
            data["recipe"]["epochs"] = epochs
            for entry in data["detectors"]:
                entry["recipe"].pop("epochs", None)
                entry["grid"].pop("epochs", None)
        if seeds is not None:
            data["seeds"] = seeds
        data["detectors"] += [{"name": name} for name in add_detectors or []]
        if detectors is not None:
            patterns = detectors.split(",")
            chosen = [d for d in data["detectors"] if any(fnmatch.fnmatchcase(d["name"], p) for p in patterns)]
            if not chosen:
                names = ", ".join(d["name"] for d in data["detectors"])
                elsewhere = [n for p in patterns for n in DETECTORS.names(p)]
                hint = (f"; the suite does not include {', '.join(elsewhere)}: add it with --add-detector "
                        f"{elsewhere[0]}" if elsewhere else "")
                raise SuiteError(f"--detectors {detectors!r} matches none of this suite's detectors ({names}){hint}")
            data["detectors"] = chosen
        if bootstrap is not None:
            data["bootstrap"] = bootstrap
        return _validate(data, f"suite {self.name!r} with overrides")


def suite_names(pattern: str = "*") -> list[str]:
    """Names of the suites shipped with bench (not the parts they include, whose names start with '_')."""
    files = resources.files("bench.suites").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml") and not f.name.startswith("_")
                  and fnmatch.fnmatchcase(f.name[:-5], pattern))


def load_suite(name_or_path: str | Path) -> Suite:
    """Load a shipped suite by name, or a suite file by path, and validate it."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise SuiteError(f"suite file {path} not found")
        with open(path, "rb") as handle:
            content, where, folder = handle.read(MAX_SUITE_BYTES + 1), str(path), path.resolve().parent
    else:
        shipped = resources.files("bench.suites") / f"{name_or_path}.yaml"
        if not shipped.is_file():
            close = difflib.get_close_matches(str(name_or_path), suite_names(), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise SuiteError(
                f"unknown suite {str(name_or_path)!r}.{hint} Shipped suites: {', '.join(suite_names())}; "
                "or give the path of a .yaml file"
            )
        content, where, folder = shipped.read_bytes(), f"suites/{name_or_path}.yaml", resources.files("bench.suites")
    data = _parse_yaml(content, where)
    if not isinstance(data, dict):
        raise SuiteError(f"{where} must be a YAML mapping with keys {', '.join(Suite.model_fields)}")
    return _validate(_with_includes(data, where, folder, [where], {}), where)


def _include_file(reference: object, folder: Traversable, where: str) -> tuple[Traversable, str]:
    """The file an ``include:`` entry names and how messages name it: a path ending in .yaml/.yml is read relative
    to the including file, anything else is the name of a file shipped in bench's suites folder."""
    if not isinstance(reference, str) or not reference.strip():
        raise SuiteError(f"{where}: include: give file names (relative to this file) or shipped names such as "
                         f"_cifake, got {reference!r}")
    if reference.endswith((".yaml", ".yml")):
        target = Path(reference) if Path(reference).is_absolute() else folder.joinpath(*PurePosixPath(reference).parts)
        if not target.is_file():
            raise SuiteError(f"{where}: include {reference!r}: {target} not found (paths are relative to {where})")
        return target, str(target)
    target = resources.files("bench.suites") / f"{reference}.yaml"
    if not target.is_file():
        shipped = sorted(f.name[:-5] for f in resources.files("bench.suites").iterdir() if f.name.endswith(".yaml"))
        raise SuiteError(f"{where}: include {reference!r}: no such shipped file (shipped: {', '.join(shipped)}); "
                         "give a path ending in .yaml for a file of your own")
    return target, f"suites/{reference}.yaml"


def _with_includes(data: dict, where: str, folder: Traversable, chain: list[str], seen: dict[str, dict]) -> dict:
    """``data`` merged over the files its ``include:`` names (a name or a list, each resolved the same way).

    Included files are merged first, in order: a key that two of them set to different values is an error naming
    both (mappings such as ``sources`` merge entry by entry, so only an entry both set differently conflicts).
    Then ``data``'s own keys override theirs, mappings again entry by entry (an entry is replaced whole). An
    include cycle is an error naming the files in it; ``seen`` holds the files already merged in this load.
    """
    data = dict(data)
    references = data.pop("include", [])
    merged: dict[str, Any] = {}
    set_by: dict[tuple[str, ...], str] = {}
    for reference in references if isinstance(references, list) else [references]:
        target, name = _include_file(reference, folder, where)
        if name in chain:
            raise SuiteError(f"include cycle: {' -> '.join([*chain[chain.index(name):], name])}")
        if name not in seen:
            if len(seen) >= MAX_INCLUDES:
                raise SuiteError(f"{where}: more than {MAX_INCLUDES} included files: a suite includes a few")
            included = _parse_yaml(target.read_bytes(), name)
            if not isinstance(included, dict):
                raise SuiteError(f"{name} (included by {where}) must be a YAML mapping of suite keys")
            seen[name] = _with_includes(included, name, _parent(target), [*chain, name], seen)
        for key, value in seen[name].items():
            if isinstance(value, dict) and isinstance(merged.get(key, {}), dict):
                set_by.setdefault((key,), name)
                for entry, item in value.items():
                    _put(merged.setdefault(key, {}), (key, entry), item, name, set_by, where)
            else:
                _put(merged, (key,), value, name, set_by, where)
    for key, value in data.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def _put(mapping: dict, path: tuple[str, ...], value: Any, name: str, set_by: dict, where: str) -> None:
    """Set ``path``'s last key in ``mapping`` to a value from the included file ``name``; an error if another
    included file set it to something else."""
    if path in set_by and mapping[path[-1]] != value:
        raise SuiteError(f"{set_by[path]} and {name} both set {'.'.join(path)}, differently: set it in one of them, "
                         f"or in {where}, which overrides both")
    set_by[path] = name
    mapping[path[-1]] = value


def _parent(target: Traversable) -> Traversable:
    """The folder of an included file, where the files it includes are looked up."""
    return target.parent if isinstance(target, Path) else resources.files("bench.suites")


def _parse_yaml(content: bytes, where: str) -> Any:
    """The YAML document in ``content``, refused if it is over MAX_SUITE_BYTES or expands to more than
    MAX_SUITE_NODES nodes: nodes are counted on the composed graph, each anchored node once (so a "billion
    laughs" document is refused at once), before any Python object is built."""
    if len(content) > MAX_SUITE_BYTES:
        raise SuiteError(f"{where} is larger than {MAX_SUITE_BYTES:,} bytes: a suite file is a few kB")
    try:
        node = yaml.compose(content.decode("utf-8"), Loader=yaml.SafeLoader)
        if node is None:
            return None
        if _expanded_size(node, {}, set(), where) > MAX_SUITE_NODES:
            raise SuiteError(f"{where} expands to more than {MAX_SUITE_NODES:,} YAML nodes (aliases included): "
                             "a suite has a few hundred")
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{where} is not UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{where} is not valid YAML: {exc}") from exc
    except RecursionError:
        raise SuiteError(f"{where} is nested too deeply to be a suite") from None


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int], where: str) -> int:
    """How many nodes ``node`` stands for once aliases are expanded (memoised per shared node)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        raise SuiteError(f"{where}: an alias refers to a node that contains it (line {node.start_mark.line + 1})")
    open_nodes.add(id(node))
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes, open_nodes, where) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes, open_nodes, where) + _expanded_size(v, sizes, open_nodes, where)
                    for k, v in node.value)
    open_nodes.discard(id(node))
    sizes[id(node)] = size = min(size, MAX_SUITE_NODES + 1)
    return size


def _allowed_keys(loc: tuple, data: Any) -> list[str]:
    """The keys allowed beside the last element of an error location, found by walking the schema alongside the
    suite's ``data`` (a source's keys are those of its importer's config)."""
    annotation: Any = Suite
    for part in loc[:-1]:
        data = _entry(data, part)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            annotation = field.annotation if field else None
        else:
            annotation = (get_args(annotation) or (None,))[-1]  # list[X] / dict[str, X] -> X
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, SourceSpec):
        try:
            annotation = annotation.config_of(data)
        except ValueError:  # an importer not registered: reported on its own
            pass
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _entry(data: Any, part: str | int) -> Any:
    """``data[part]`` of a mapping or list, None where there is none."""
    if isinstance(data, dict):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return data[part]
    return None


def _validate(data: dict, where: str) -> Suite:
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key; allowed: {', '.join(_allowed_keys(error['loc'], data))}"
            elif error["type"] == "missing" and error["loc"][:1] == ("sources",):
                importer = _entry(_entry(_entry(data, "sources"), error["loc"][1]), "importer")
                message = f"missing: the {importer} importer needs it" if importer else message
            value = error.get("input")
            shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
            problems.append(f"  {key}: {message}{shown}")
        raise SuiteError(f"{where} is not a valid suite:\n" + "\n".join(problems)) from None
