"""Suites: YAML files saying which detectors, trained on which sources, are tested on which sources.

A suite is validated against the schema below when it is loaded; an error names the key, the bad value
and what is allowed. Size knobs (subset limits, epochs, seeds, bootstrap resamples) can be overridden
from the command line without editing the file.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.attribution import ATTRIBUTIONS, AttributionSettings
from bench.detector import DETECTORS
from bench.encoding import Encoding
from bench.generator import GENERATORS, GeneratorError, resolve_config
from bench.perturbations import PERTURBATIONS
from bench.recipe import Recipe
from bench.registry import Registry, UnknownPluginError
from bench.sources import NAME_PATTERN, Label


class SuiteError(ValueError):
    """A suite file is missing or invalid; the message names the key and the allowed values."""


def _registered(registry: Registry, name: str) -> str:
    """``name`` if ``registry`` has it; else a validation error listing close matches."""
    try:
        registry.get(name)
    except UnknownPluginError as exc:
        raise ValueError(str(exc)) from None
    return name


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(Strict):
    """How to obtain one source: which importer, from where (relative to the data root), with which label.

    The ``generator`` importer trains a registered generator on the real source ``train_source`` (unless
    its ``config`` names pretrained weights) and samples ``count`` images with ``seed``.
    """

    importer: Literal["cifake", "folder", "npz", "cached", "generator"] = Field(
        description="cached: a source already in the cache, e.g. made by `bench data audit --deduplicate`; "
        "generator: images sampled from a generator plugin"
    )
    label: Label
    split: Literal["train", "test"] = "test"
    path: str | None = Field(None, description="file or folder under the data root (folder and npz importers)")
    key: str = Field("images", description="array name inside an .npz file")
    skip_bad: bool = False
    generator: str | None = Field(None, description="generator plugin (`bench list generators`)")
    config: dict[str, Any] = Field({}, description="generator settings, e.g. {epochs: 5}")
    train_source: str | None = Field(None, description="declared real source the generator is trained on")
    count: int | None = Field(None, ge=1, description="images to sample")
    seed: int = Field(0, description="seed of the generator's training and sampling")

    @model_validator(mode="after")
    def _importer_fields(self) -> SourceSpec:
        if self.importer in ("folder", "npz") and not self.path:
            raise ValueError(f"the {self.importer} importer needs 'path' (relative to the data root)")
        generating = {"generator": self.generator, "config": self.config, "train_source": self.train_source,
                      "count": self.count}
        if self.importer == "generator":
            if self.generator is None or self.count is None:
                raise ValueError("the generator importer needs 'generator' and 'count'")
            _registered(GENERATORS, self.generator)
            try:
                resolve_config(GENERATORS.get(self.generator), self.config)
            except GeneratorError as exc:
                raise ValueError(f"config: {exc}") from None
            if self.label != "fake":
                raise ValueError("a generated source is labelled 'fake'")
        elif any(generating.values()):
            used = ", ".join(k for k, v in generating.items() if v)
            raise ValueError(f"{used}: only the generator importer takes these keys")
        return self


class TrainSet(Strict):
    """Training data: real and fake sources, with an optional per-class subset size."""

    name: str
    real: list[str] = Field(min_length=1)
    fake: list[str] = Field(min_length=1)
    limit: int | None = Field(None, ge=10, description="images per class (None: all)")
    attribute_sources: bool = Field(
        False, description="train one class per fake source besides real (source attribution); detection "
        "scores the log-odds of 'not real', and records say which class each test image was given"
    )

    @model_validator(mode="after")
    def _sources_to_attribute(self) -> TrainSet:
        if self.attribute_sources and len(self.fake) < 2:
            raise ValueError("attribute_sources needs at least two fake sources to tell apart")
        return self


class TestSet(Strict):
    """Test data: one real source scored against each fake source (names or wildcard patterns)."""

    real: str
    fake: list[str] = Field(min_length=1)
    limit: int | None = Field(None, ge=10, description="images per source (None: all)")


class DetectorEntry(Strict):
    """One detector of a suite: its constructor arguments, recipe overrides and hyperparameter grid."""

    name: str
    kwargs: dict[str, Any] = {}
    recipe: dict[str, Any] = {}
    grid: dict[str, list[Any]] = Field({}, description="recipe field -> values; the best is chosen on validation")
    pretrained: str | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return _registered(DETECTORS, name)

    @model_validator(mode="after")
    def _recipe_fields(self) -> DetectorEntry:
        allowed = set(Recipe.model_fields)
        for field in [*self.recipe, *self.grid]:
            if field not in allowed:
                raise ValueError(f"unknown recipe field {field!r}; allowed: {', '.join(sorted(allowed))}")
        for field, values in self.grid.items():
            if not values:
                raise ValueError(f"grid {field!r} has no values")
        return self


class PerturbationEntry(Strict):
    """A registered perturbation and its parameters, e.g. ``{name: jpeg, quality: 50}``."""

    name: str
    params: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "params" not in value:
            return {"name": value.get("name"), "params": {k: v for k, v in value.items() if k != "name"}}
        return value

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return _registered(PERTURBATIONS, name)

    @model_validator(mode="after")
    def _parameters(self) -> PerturbationEntry:
        accepted = list(inspect.signature(PERTURBATIONS.get(self.name)).parameters)[4:]  # after the data
        unknown = sorted(set(self.params) - set(accepted))
        if unknown:
            raise ValueError(f"perturbation {self.name!r} has no parameter(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(accepted) or 'none'}")
        return self

    @property
    def label(self) -> str:
        """e.g. ``clean`` or ``jpeg(quality=50)``."""
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in sorted(self.params.items()))})"


class Suite(Strict):
    """A benchmark definition."""

    name: str
    description: str = ""
    seeds: list[int] = Field([0], min_length=1)
    data_seed: int = Field(0, description="seed of the subset draws, shared by all training seeds")
    sources: dict[str, SourceSpec]
    train: list[TrainSet] = Field(min_length=1)
    test: TestSet
    detectors: list[DetectorEntry] = Field(min_length=1)
    recipe: dict[str, Any] = Field({}, description="recipe overrides applied to every detector")
    perturbations: list[PerturbationEntry] = Field([PerturbationEntry(name="clean")], min_length=1)
    deduplicate: bool = Field(
        True, description="drop exact repeats within sources and test images whose pixels occur in training sources"
    )
    encoding: Encoding = Field(
        Encoding(), description="file encoding applied to every source, real and fake alike (bench.encoding)"
    )
    attribution: AttributionSettings | None = Field(
        None, description="explain and score the detectors on the clean test images (bench.attribution)"
    )
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples per confidence interval (0: none)")
    ci_level: float = Field(0.95, gt=0, lt=1)

    @field_validator("attribution")
    @classmethod
    def _attribution_methods(cls, settings: AttributionSettings | None) -> AttributionSettings | None:
        for name in settings.methods if settings else []:
            _registered(ATTRIBUTIONS, name)
        return settings

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        for name in sources:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"source name {name!r}: use lower-case letters, digits, '.', '_', '-', '@'")
        return sources

    @model_validator(mode="after")
    def _references(self) -> Suite:
        unknown_recipe = set(self.recipe) - set(Recipe.model_fields)
        if unknown_recipe:
            allowed = ", ".join(sorted(Recipe.model_fields))
            raise ValueError(f"recipe: unknown field(s) {sorted(unknown_recipe)}; allowed: {allowed}")
        declared = ", ".join(sorted(self.sources))
        for train in self.train:
            for label in ("real", "fake"):
                for name in getattr(train, label):
                    self._check_source(name, label, f"train '{train.name}' {label}", declared)
                    if self.sources[name].split != "train":
                        raise ValueError(f"train '{train.name}': source {name!r} has split "
                                         f"'{self.sources[name].split}'; training uses split 'train' only")
        for name, spec in self.sources.items():
            if spec.train_source is not None:
                self._check_source(spec.train_source, "real", f"sources.{name}.train_source", declared)
        self._check_source(self.test.real, "real", "test real", declared)
        if not self.test_fakes():
            raise ValueError(f"test fake {self.test.fake} matches no declared fake test source ({declared})")
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

    def _check_source(self, name: str, label: str, where: str, declared: str) -> None:
        if name not in self.sources:
            raise ValueError(f"{where}: source {name!r} is not declared under 'sources' (declared: {declared})")
        if self.sources[name].label != label:
            raise ValueError(f"{where}: source {name!r} is labelled {self.sources[name].label!r}, expected {label!r}")

    def test_fakes(self) -> list[str]:
        """The fake test sources: declared fake, split 'test' sources matching the test patterns, in order."""
        found: list[str] = []
        for pattern in self.test.fake:
            for name, spec in self.sources.items():
                if spec.label == "fake" and spec.split == "test" and fnmatch.fnmatchcase(name, pattern):
                    if name not in found:
                        found.append(name)
        return found

    def with_overrides(
        self,
        train_limit: int | None = None,
        test_limit: int | None = None,
        epochs: int | None = None,
        seeds: list[int] | None = None,
        detectors: str | None = None,
        bootstrap: int | None = None,
    ) -> Suite:
        """A copy with command-line size knobs applied (and validated)."""
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
        if detectors is not None:
            patterns = detectors.split(",")
            chosen = [d for d in data["detectors"] if any(fnmatch.fnmatchcase(d["name"], p) for p in patterns)]
            if not chosen:
                names = ", ".join(d["name"] for d in data["detectors"])
                raise SuiteError(f"--detectors {detectors!r} matches none of this suite's detectors ({names})")
            data["detectors"] = chosen
        if bootstrap is not None:
            data["bootstrap"] = bootstrap
        return _validate(data, f"suite {self.name!r} with overrides")


def suite_names(pattern: str = "*") -> list[str]:
    """Names of the suites shipped with bench."""
    files = resources.files("suites").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml") and fnmatch.fnmatchcase(f.name[:-5], pattern))


def load_suite(name_or_path: str | Path) -> Suite:
    """Load a shipped suite by name, or a suite file by path, and validate it."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise SuiteError(f"suite file {path} not found")
        text, where = path.read_text(), str(path)
    else:
        shipped = resources.files("suites") / f"{name_or_path}.yaml"
        if not shipped.is_file():
            close = difflib.get_close_matches(str(name_or_path), suite_names(), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise SuiteError(
                f"unknown suite {str(name_or_path)!r}.{hint} Shipped suites: {', '.join(suite_names())}; "
                "or give the path of a .yaml file"
            )
        text, where = shipped.read_text(), f"suites/{name_or_path}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SuiteError(f"{where} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SuiteError(f"{where} must be a YAML mapping with keys {', '.join(Suite.model_fields)}")
    return _validate(data, where)


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys allowed beside the last element of an error location, found by walking the schema."""
    annotation: Any = Suite
    for part in loc[:-1]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            annotation = field.annotation if field else None
        else:
            annotation = (get_args(annotation) or (None,))[-1]  # list[X] / dict[str, X] -> X
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _validate(data: dict, where: str) -> Suite:
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key; allowed: {', '.join(_allowed_keys(error['loc']))}"
            value = error.get("input")
            shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
            problems.append(f"  {key}: {message}{shown}")
        raise SuiteError(f"{where} is not a valid suite:\n" + "\n".join(problems)) from None
