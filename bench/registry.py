"""Typed plugin registries: decorator registration, fuzzy lookup and entry-point discovery.

Built-in plugins live in a package (``bench.detectors``, ``bench.generators``) or module
(``bench.perturbations``, ``bench.importers``, ``bench.executors``, ``bench.attribution``) whose submodules are
imported on first use; third-party packages add plugins through the entry-point group of the same name as the
package or module (``bench.attributions`` for attribution methods). An entry point may name a module that
registers on import, or an object that is registered under the entry point's name. Plugin modules import torch
inside their factories, so that listing plugins stays fast.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import logging
import pkgutil
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownPluginError(KeyError):
    """Raised when a name is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def summary(obj: object) -> str:
    """The first line of an object's docstring."""
    return (obj.__doc__ or "").strip().split("\n")[0]


class Registry(Generic[T]):
    """A named collection of plugins of one kind.

    With a ``spec_type`` (a dataclass with ``name`` and ``description``), an entry point must name a spec, or, with
    ``factories``, a bare factory, which is wrapped in a spec with default metadata (the spec then has ``factory``);
    ``register_with`` names the decorator that makes a spec, for the message that refuses anything else.
    """

    def __init__(self, kind: str, group: str, builtin: str, spec_type: type[T] | None = None,
                 factories: bool = True, register_with: str = "") -> None:
        self.kind = kind
        self.group = group
        self.builtin = builtin
        self.spec_type = spec_type
        self.factories = factories
        self.register_with = register_with
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self.broken: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, item: T, origin: str = "builtin") -> T:
        """Add ``item`` under ``name``; registering a different object twice is an error."""
        if name in self._items and self._items[name] is not item:
            raise ValueError(
                f"{self.kind} {name!r} is already registered (from {self._origins[name]}); "
                "pick another name for the new plugin"
            )
        self._items[name] = item
        self._origins[name] = origin
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for plugins registered for a while, e.g. in tests)."""
        self._items.pop(name, None)
        self._origins.pop(name, None)

    def get(self, name: str) -> T:
        """Return the plugin called ``name``, or raise with the closest registered names."""
        self.load()
        if name not in self._items:
            raise UnknownPluginError(self._unknown_message(name))
        return self._items[name]

    def validate(self, name: str) -> str:
        """``name`` if it is registered; else a ValueError listing close matches (for pydantic validators)."""
        try:
            self.get(name)
        except UnknownPluginError as exc:
            raise ValueError(str(exc)) from None
        return name

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard pattern."""
        self.load()
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def description(self, name: str) -> str:
        """One line saying what ``name`` is: its spec's description, or its docstring's first line."""
        item = self.get(name)
        return item.description if self.spec_type is not None else summary(item)

    def origin(self, name: str) -> str:
        """Where ``name`` came from: ``builtin`` or the entry point that provided it."""
        self.load()
        return self._origins[name]

    def __contains__(self, name: str) -> bool:
        self.load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def load(self) -> None:
        """Import the built-in plugins and every installed entry point (once)."""
        if self._loaded:
            return
        self._loaded = True
        self._import_builtin()
        for ep in entry_points(group=self.group):
            self._load_entry_point(ep)

    def _import_builtin(self) -> None:
        module = importlib.import_module(self.builtin)
        if hasattr(module, "__path__"):
            for info in pkgutil.iter_modules(module.__path__, prefix=f"{self.builtin}."):
                importlib.import_module(info.name)

    def _load_entry_point(self, ep) -> None:
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the registry
            self.broken[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("%s plugin %r (%s) failed to import: %s", self.kind, ep.name, ep.value, exc)
            return
        if ep.name in self._items:
            return  # the module registered itself on import
        if inspect.ismodule(obj):
            self.broken[ep.name] = f"module {ep.value} registered no {self.kind} called {ep.name!r}"
            log.warning("%s", self.broken[ep.name])
            return
        try:
            item = self._as_item(ep.name, obj)
        except TypeError as exc:
            self.broken[ep.name] = str(exc)
            log.warning("%s", exc)
            return
        self.register(ep.name, item, origin=f"entry point {ep.value}")

    def _as_item(self, name: str, obj: object) -> T:
        if self.spec_type is None or isinstance(obj, self.spec_type):
            return obj
        if self.factories and callable(obj):
            return self.spec_type(name=name, factory=obj, description=summary(obj))
        accepted = " or a factory" if self.factories else f" (made by {self.register_with or 'its decorator'})"
        raise TypeError(f"{self.kind} entry point {name!r} must be a {self.spec_type.__name__}{accepted}, "
                        f"got {type(obj)!r}")

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        broken = f" Plugin {name!r} is installed but failed to import: {self.broken[name]}." if (
            name in self.broken
        ) else ""
        return (
            f"unknown {self.kind} {name!r}.{hint}{broken} "
            f"Registered: {', '.join(sorted(self._items)) or 'none'}. "
            f"See `bench list {self.kind}s`."
        )
