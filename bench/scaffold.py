"""``bench new``: plugin packages from templates, for researchers adding their own detectors."""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from bench.detector import DETECTORS

NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")


class ScaffoldError(ValueError):
    """The package cannot be created: a bad or taken name, or the folder exists."""


def new_detector(name: str, directory: Path) -> Path:
    """Create ``directory/bench-<name>/``, a pip-installable package registering the detector ``name``.

    It holds a ``pyproject.toml`` with the ``bench.detectors`` entry point, ``<package>/detector.py`` with
    a registered factory to edit, a suite running it beside the LeNet baseline, and a README.
    """
    if not NAME.fullmatch(name):
        raise ScaffoldError(f"detector name {name!r}: use lower-case letters and digits, joined by '-' or '_'")
    if name in DETECTORS:
        raise ScaffoldError(f"a detector called {name!r} is already registered ({DETECTORS.origin(name)})")
    identifier = name.replace("-", "_")
    values = {"name": name, "distribution": f"bench-{name}", "package": f"bench_{identifier}",
              "function": identifier}
    root = Path(directory) / values["distribution"]
    if root.exists():
        raise ScaffoldError(f"{root} already exists: choose another --dir or name")
    templates = Environment(loader=PackageLoader("bench", "templates/detector"), keep_trailing_newline=True,
                            undefined=StrictUndefined)
    files = {
        "pyproject.toml": "pyproject.toml.j2",
        "README.md": "README.md.j2",
        "suite.yaml": "suite.yaml.j2",
        f"{values['package']}/__init__.py": "__init__.py.j2",
        f"{values['package']}/detector.py": "detector.py.j2",
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(templates.get_template(template).render(values))
    return root
